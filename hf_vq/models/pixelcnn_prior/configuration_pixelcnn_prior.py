"""Configuration of the PixelCNN prior: a gated PixelCNN over the code grid of a VQ model, class-conditioned by a
learned bias in every gated layer."""

from __future__ import annotations

from transformers import PreTrainedConfig

from ...utils.configuration_utils import CheckedKeysMixin, check_float, check_int, check_int_list
from ...utils.errors import UsageError


class PixelCNNPriorConfig(CheckedKeysMixin, PreTrainedConfig):
    r"""
    A gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN Decoders") over the
    `(height, width)` grid of code indices of a VQ model, as the VQ-VAE paper (van den Oord et al. 2017) trains its
    prior.

    Each code is embedded (`embedding_dim`), then `num_layers` gated layers run a vertical stack (the rows above)
    and a horizontal stack (the current row, left of the current position), so that there is no blind spot; each
    layer computes `tanh(f) * sigmoid(g)` and feeds the vertical stack's features, shifted down one row, into the
    horizontal stack through a 1x1 conv. The horizontal stack is residual; every layer adds a skip connection, and
    their sum goes through ReLU, a 1x1 conv to `output_channels`, ReLU, and a 1x1 conv to the `codebook_size`
    logits. The first layer ('mask A', kernel `first_kernel_size`) does not see the current position; the others
    ('mask B', kernel `kernel_size`) see it in the features of the layer below.

    Receptive field: with `R = first_kernel_size // 2 + (num_layers - 1) * (kernel_size // 2)`, the logits at
    `(i, j)` depend on the codes at `(i, j - R) ... (i, j - 1)` and on every row `i - 1 - R ... i - 1` between
    columns `j - R` and `j + R`. A grid is covered entirely (every earlier code reaches every later position) when
    `R >= width - 1` and `R >= height - 2`; the defaults (R = 3 + 14 = 17) cover grids up to 18x18, so 16x16.

    Class labels are in `[0, num_classes)`; -1 (or `None`) means "no class": the unconditional model used for
    classifier-free guidance and for training examples whose label was dropped. It has its own learned bias.

    Args:
        codebook_size (`int`, defaults to 1024): number of codes K of the VQ model.
        token_grid_size (`tuple[int, int]`, defaults to (16, 16)): the code grid (height, width) of one image.
        num_classes (`int`, defaults to 0): classes of the conditional prior; 0 for an unconditional one.
        vq_model_name_or_path (`str`, *optional*): the VQ model the codes come from (a Hub id or a path), recorded
            so that the prior can be paired with its decoder.
        num_layers (`int`, defaults to 15): gated layers, the first being the 'mask A' layer.
        hidden_channels (`int`, defaults to 128): channels of both stacks.
        embedding_dim (`int`, *optional*): width of the code embedding; defaults to `hidden_channels`.
        first_kernel_size (`int`, defaults to 7): odd kernel size of the first ('mask A') layer.
        kernel_size (`int`, defaults to 3): odd kernel size of the other ('mask B') layers.
        output_channels (`int`, defaults to 512): hidden width of the 1x1 output head.
        dropout (`float`, defaults to 0.0): dropout on the gated features of the horizontal stack, in [0, 1).
    """

    model_type = "hf_vq_pixelcnn_prior"

    codebook_size: int = 1024
    token_grid_size: tuple[int, int] | list[int] = (16, 16)
    num_classes: int = 0
    vq_model_name_or_path: str | None = None
    num_layers: int = 15
    hidden_channels: int = 128
    embedding_dim: int | None = None
    first_kernel_size: int = 7
    kernel_size: int = 3
    output_channels: int = 512
    dropout: float = 0.0

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        check_int("codebook_size", self.codebook_size, minimum=2)
        check_int_list("token_grid_size", self.token_grid_size)
        if len(self.token_grid_size) != 2:
            raise UsageError(f"`token_grid_size` must be (height, width), got {self.token_grid_size!r}")
        # JSON gives a list; keep one type so that configs compare equal after a save/load round trip.
        self.token_grid_size = tuple(self.token_grid_size)
        check_int("num_classes", self.num_classes, minimum=0)
        if self.vq_model_name_or_path is not None and not isinstance(self.vq_model_name_or_path, str):
            raise UsageError(f"`vq_model_name_or_path` must be a string or None, got {self.vq_model_name_or_path!r}")
        check_int("num_layers", self.num_layers, minimum=1)
        check_int("hidden_channels", self.hidden_channels, minimum=1)
        if self.embedding_dim is None:
            self.embedding_dim = self.hidden_channels
        check_int("embedding_dim", self.embedding_dim, minimum=1)
        for name in ("first_kernel_size", "kernel_size"):
            value = getattr(self, name)
            check_int(name, value, minimum=3 if name == "first_kernel_size" else 1)
            if value % 2 == 0:
                raise UsageError(f"`{name}` must be odd (a centred kernel), got {value}")
        check_int("output_channels", self.output_channels, minimum=1)
        check_float("dropout", self.dropout, minimum=0.0, maximum=1.0, exclusive_maximum=True)

    @property
    def num_image_tokens(self) -> int:
        """Codes per image: height * width of the token grid."""
        return self.token_grid_size[0] * self.token_grid_size[1]

    @property
    def is_class_conditional(self) -> bool:
        return self.num_classes > 0

    @property
    def receptive_field(self) -> int:
        """R: how far the logits at a position reach left, right and up (see the class docstring)."""
        return self.first_kernel_size // 2 + (self.num_layers - 1) * (self.kernel_size // 2)
