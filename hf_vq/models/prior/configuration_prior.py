"""Configuration of the prior: a GPT-2 over the code indices of a VQ model, class-conditioned by a prefix token."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import GPT2Config

from ...utils.configuration_utils import CheckedKeysMixin, check_int, check_int_list
from ...utils.errors import UsageError


@strict  # re-derives the field validators: some fields here are optional where GPT-2's are not
class VQPriorConfig(CheckedKeysMixin, GPT2Config):
    r"""
    A GPT-2 causal LM over the raster-ordered code grid of a VQ model (taming's transformer is the same network).

    The vocabulary is laid out as: the `codebook_size` codes (token id = code index), then one token per class
    (`codebook_size + label`), then BOS, then a pad token that is no code. Every sequence is one prefix token, the
    class token or BOS (unconditional, and the "null class" of classifier-free guidance), followed by the
    `height * width` codes. `vocab_size`, `n_positions`, `bos_token_id` and `pad_token_id` follow from these fields;
    leave them unset (a value that disagrees raises a `ValueError`).

    The defaults are taming's FacesHQ transformer (24 layers, 16 heads, width 1024, dropout 0.1) over a 16x16 grid
    of 1024 codes. Every other `GPT2Config` field keeps its meaning.

    Args:
        codebook_size (`int`, defaults to 1024): number of codes K of the VQ model.
        token_grid_size (`tuple[int, int]`, defaults to (16, 16)): the code grid (height, width) of one image.
        num_classes (`int`, defaults to 0): classes of the conditional prior; 0 for an unconditional one.
        codes_per_position (`int`, defaults to 1): codes of each grid position: a residual quantizer's depth. The
            sequence is then the grid in raster order with the stages of each position in a row (depth fastest), and
            code grids are (B, h, w, depth).
        vq_model_name_or_path (`str`, *optional*): the VQ model the codes come from (a Hub id or a path), recorded
            so that the prior can be paired with its decoder.
    """

    model_type = "hf_vq_prior"

    codebook_size: int = 1024
    token_grid_size: tuple[int, int] | list[int] = (16, 16)
    num_classes: int = 0
    codes_per_position: int = 1
    vq_model_name_or_path: str | None = None
    # Derived from the fields above (see the class docstring).
    vocab_size: int | None = None
    n_positions: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None
    n_layer: int = 24
    n_head: int = 16
    n_embd: int = 1024

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        check_int("codebook_size", self.codebook_size, minimum=2)
        check_int("num_classes", self.num_classes, minimum=0)
        check_int("codes_per_position", self.codes_per_position, minimum=1)
        check_int_list("token_grid_size", self.token_grid_size)
        if len(self.token_grid_size) != 2:
            raise UsageError(f"`token_grid_size` must be (height, width), got {self.token_grid_size!r}")
        self.token_grid_size = tuple(self.token_grid_size)
        check_int("n_layer", self.n_layer, minimum=1)
        check_int("n_head", self.n_head, minimum=1)
        check_int("n_embd", self.n_embd, minimum=1)
        if self.n_embd % self.n_head:
            raise UsageError(f"`n_embd` ({self.n_embd}) must be divisible by `n_head` ({self.n_head})")
        derived = {
            "vocab_size": self.codebook_size + self.num_classes + 2,
            "bos_token_id": self.codebook_size + self.num_classes,
            "pad_token_id": self.codebook_size + self.num_classes + 1,
        }
        for name, value in derived.items():
            given = getattr(self, name)
            if given is not None and given != value:
                raise UsageError(
                    f"`{name}` is derived from codebook_size ({self.codebook_size}) and num_classes "
                    f"({self.num_classes}): expected {value}, got {given}; leave it unset"
                )
            setattr(self, name, value)
        if self.eos_token_id is not None:
            raise UsageError("`eos_token_id` must be None: every image has exactly height * width codes")
        if self.n_positions is None:
            self.n_positions = self.sequence_length
        check_int("n_positions", self.n_positions, minimum=self.sequence_length)

    @property
    def num_image_tokens(self) -> int:
        """Codes per image: height * width of the token grid (times `codes_per_position`)."""
        return self.token_grid_size[0] * self.token_grid_size[1] * self.codes_per_position

    @property
    def sequence_length(self) -> int:
        """The prefix token plus the codes of one image."""
        return 1 + self.num_image_tokens

    @property
    def is_class_conditional(self) -> bool:
        return self.num_classes > 0

    def class_token_id(self, label: int) -> int:
        """The prefix token of class `label`."""
        return self.codebook_size + label
