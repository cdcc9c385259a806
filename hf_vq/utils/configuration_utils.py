"""Config validation helpers and the config fields shared by every convolutional autoencoder.

Every check raises a `UsageError` (a `ValueError`) that names the config field and the allowed values, so a bad
config fails at construction, never deep inside `forward`. Unknown keys fail too (`CheckedKeysMixin`), except in a
saved config being loaded, where they only warn.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import logging
import math
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from typing import Any

from transformers import PreTrainedConfig

from .errors import UsageError

# diffusers' block names, kept so that configs convert to and from diffusers' `AutoencoderKL` / `VQModel` as they are.
DOWN_BLOCK_TYPES = ("DownEncoderBlock2D", "AttnDownEncoderBlock2D")
UP_BLOCK_TYPES = ("UpDecoderBlock2D", "AttnUpDecoderBlock2D")
# diffusers' `get_activation` names.
ACTIVATIONS = ("silu", "swish", "mish", "gelu", "relu")

logger = logging.getLogger(__name__)

# Keys that transformers reads although no config field has their name: the ones `PreTrainedConfig.from_dict` folds
# into the dict it builds a config from and `PreTrainedConfig.__post_init__` consumes (`torch_dtype`, the old name of
# `dtype`, in most saved configs; `name_or_path`, `num_labels`, the attention implementations; `_commit_hash` of older
# saves), and `auto_map`, which `save_pretrained` writes for a class registered for remote code.
TRANSFORMERS_EXTRA_KEYS = frozenset(
    {
        "auto_map",
        "torch_dtype",
        "name_or_path",
        "num_labels",
        "attn_implementation",
        "experts_implementation",
        "_commit_hash",
    }
)


@functools.cache
def transformers_config_keys() -> frozenset[str]:
    """The keys transformers itself writes into every saved `config.json` or passes to a config (`model_type`,
    `transformers_version`, `architectures`, `dtype`, `_name_or_path`, `return_dict`, ...): those of a bare
    `PreTrainedConfig`'s `to_dict`, plus `TRANSFORMERS_EXTRA_KEYS`."""
    return frozenset(PreTrainedConfig().to_dict()) | TRANSFORMERS_EXTRA_KEYS


def config_keys(config_class: type[PreTrainedConfig]) -> frozenset[str]:
    """Every key `config_class` accepts: its fields, the aliases of its `attribute_map` (GPT-2's `hidden_size` for
    `n_embd`, ...) and `transformers_config_keys()`."""
    fields = {field.name for field in dataclasses.fields(config_class)}
    return frozenset(fields) | frozenset(config_class.attribute_map) | transformers_config_keys()


def unknown_config_keys(config_class: type[PreTrainedConfig], keys: Iterable[str]) -> list[str]:
    """The keys (in their order) that `config_class` does not accept."""
    known = config_keys(config_class)
    return [key for key in dict.fromkeys(keys) if key not in known]


def unknown_keys_message(config_class: type[PreTrainedConfig], unknown: Sequence[str], where: str) -> str:
    """The message naming every key of `unknown`, each with the closest key `config_class` accepts, e.g.
    `unknown key 'norm_num_group' in model: (did you mean 'norm_num_groups'?)`."""
    candidates = sorted(key for key in config_keys(config_class) if not key.startswith("_"))

    def hint(key: str) -> str:
        matches = difflib.get_close_matches(key, candidates, n=1)
        return f"(did you mean {matches[0]!r}?)" if matches else f"(no field of {config_class.__name__} is close)"

    if len(unknown) == 1:
        return f"unknown key {unknown[0]!r} in {where} {hint(unknown[0])}"
    return f"unknown keys in {where} " + ", ".join(f"{key!r} {hint(key)}" for key in unknown)


def check_config_keys(config_class: type[PreTrainedConfig], keys: Iterable[str], where: str) -> None:
    """Raise a `UsageError` naming every key of `keys` that `config_class` does not accept, with the closest valid
    name: "unknown key 'norm_num_group' in model: (did you mean 'norm_num_groups'?)". `where` says where the keys come
    from (a recipe section, `"model:"`, or the class, for keyword arguments)."""
    unknown = unknown_config_keys(config_class, keys)
    if unknown:
        raise UsageError(unknown_keys_message(config_class, unknown, where))


# True while `from_dict` / `from_json_file` build a config from a saved one.
_loading_saved_config: ContextVar[bool] = ContextVar("hf_vq_loading_saved_config", default=False)
_warned_unknown_keys: set[tuple[str, tuple[str, ...]]] = set()


class CheckedKeysMixin:
    """Unknown keyword arguments of a config: a `UsageError` with the closest valid name when the config is built
    by user code (`VQGANConfig(norm_num_group=32)`), a warning, once per class and set of keys, when a saved config
    is loaded (`from_pretrained`, `from_dict`, `from_json_file`), so that a checkpoint saved by a newer version with
    fields this one does not know still loads (the keys stay attributes, as transformers keeps them).

    Put it before `PreTrainedConfig` (or its subclass) in the bases of a config class.
    """

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs):
        token = _loading_saved_config.set(True)
        try:
            return super().from_dict(config_dict, **kwargs)
        finally:
            _loading_saved_config.reset(token)

    @classmethod
    def from_json_file(cls, json_file):
        token = _loading_saved_config.set(True)
        try:
            return super().from_json_file(json_file)
        finally:
            _loading_saved_config.reset(token)

    def __post_init__(self, **kwargs):
        # `kwargs` holds the keyword arguments that are no field (the dataclass `__init__` has set the fields).
        config_class = type(self)
        if not _loading_saved_config.get():
            check_config_keys(config_class, kwargs, where=config_class.__name__)
        elif unknown := unknown_config_keys(config_class, kwargs):
            if (config_class.__name__, tuple(unknown)) not in _warned_unknown_keys:
                _warned_unknown_keys.add((config_class.__name__, tuple(unknown)))
                logger.warning(
                    "%s; a newer version probably saved this config: the keys are kept as attributes, unused here",
                    unknown_keys_message(config_class, unknown, f"the saved {config_class.__name__}"),
                )
        super().__post_init__(**kwargs)


def check_int(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> None:
    """Raise a `UsageError` unless `value` is an int in `[minimum, maximum]`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"`{name}` must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise UsageError(f"`{name}` must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise UsageError(f"`{name}` must be <= {maximum}, got {value}")


def check_float(
    name: str,
    value: Any,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    exclusive_minimum: bool = False,
    exclusive_maximum: bool = False,
) -> None:
    """Raise a `UsageError` unless `value` is a finite real number in the given range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UsageError(f"`{name}` must be a finite number, got {value!r}")
    if minimum is not None and (value <= minimum if exclusive_minimum else value < minimum):
        raise UsageError(f"`{name}` must be {'>' if exclusive_minimum else '>='} {minimum}, got {value}")
    if maximum is not None and (value >= maximum if exclusive_maximum else value > maximum):
        raise UsageError(f"`{name}` must be {'<' if exclusive_maximum else '<='} {maximum}, got {value}")


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    """Raise a `UsageError` unless `value` is one of `choices`."""
    if value not in choices:
        raise UsageError(f"`{name}` must be one of {list(choices)}, got {value!r}")


def check_int_list(name: str, value: Any, minimum: int = 1) -> None:
    """Raise a `UsageError` unless `value` is a non-empty list or tuple of ints >= `minimum`."""
    if not isinstance(value, (list, tuple)) or len(value) == 0:
        raise UsageError(f"`{name}` must be a non-empty list of integers, got {value!r}")
    for i, item in enumerate(value):
        check_int(f"{name}[{i}]", item, minimum=minimum)


class ConvAutoencoderConfig(CheckedKeysMixin, PreTrainedConfig):
    r"""
    Fields of the taming / LDM convolutional backbone shared by the AE, VAE and VQ-GAN configs. The names are those
    of diffusers' `AutoencoderKL` and `VQModel`.

    Args:
        in_channels (`int`, defaults to 3): channels of the input images.
        out_channels (`int`, defaults to 3): channels of the reconstructions.
        down_block_types (`list[str]`, *optional*): one per resolution level, `"DownEncoderBlock2D"` or
            `"AttnDownEncoderBlock2D"` (with self-attention); defaults to the family's (plain blocks for the AE and
            VAE).
        up_block_types (`list[str]`, *optional*): the decoder's, `"UpDecoderBlock2D"` or `"AttnUpDecoderBlock2D"`,
            from the lowest resolution up; defaults to the family's.
        block_out_channels (`list[int]`): channels of each resolution level. The encoder downsamples by
            `2 ** (len(block_out_channels) - 1)`.
        layers_per_block (`int`): residual blocks per level in the encoder (the decoder has one more, as in taming).
        act_fn (`str`, defaults to `"silu"`): activation of the residual blocks.
        latent_channels (`int`): channels of the latent grid.
        norm_num_groups (`int`, defaults to 32): GroupNorm groups; must divide every entry of `block_out_channels`.
        sample_size (`int`): the training resolution. Inputs of any size divisible by the downsampling factor are
            accepted; the latent size reported by `latent_size` is the one at `sample_size`.
        mid_block_add_attention (`bool`, defaults to `True`): self-attention in the middle block.
    """

    in_channels: int = 3
    out_channels: int = 3
    down_block_types: list[str] | tuple[str, ...] | None = None
    up_block_types: list[str] | tuple[str, ...] | None = None
    block_out_channels: list[int] | tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    act_fn: str = "silu"
    latent_channels: int = 4
    norm_num_groups: int = 32
    sample_size: int = 256
    mid_block_add_attention: bool = True

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        check_int_list("block_out_channels", self.block_out_channels)
        # JSON gives lists; keep one type so that configs compare equal after a save/load round trip.
        self.block_out_channels = list(self.block_out_channels)
        default_down, default_up = self._default_block_types(len(self.block_out_channels))
        for name, default in (("down_block_types", default_down), ("up_block_types", default_up)):
            value = getattr(self, name)
            if value is None:
                value = default
            if not isinstance(value, (list, tuple)):
                raise UsageError(f"`{name}` must be a list of block names, got {value!r}")
            setattr(self, name, list(value))
        self._check_backbone()

    def _check_backbone(self) -> None:
        check_int("in_channels", self.in_channels, minimum=1)
        check_int("out_channels", self.out_channels, minimum=1)
        check_int("latent_channels", self.latent_channels, minimum=1)
        check_int("layers_per_block", self.layers_per_block, minimum=1)
        check_int("norm_num_groups", self.norm_num_groups, minimum=1)
        check_int("sample_size", self.sample_size, minimum=1)
        check_choice("act_fn", self.act_fn, ACTIVATIONS)
        if not isinstance(self.mid_block_add_attention, bool):
            raise UsageError(f"`mid_block_add_attention` must be a bool, got {self.mid_block_add_attention!r}")
        for i, channels in enumerate(self.block_out_channels):
            if channels % self.norm_num_groups != 0:
                raise UsageError(
                    f"`block_out_channels[{i}]` ({channels}) must be divisible by `norm_num_groups` "
                    f"({self.norm_num_groups}): GroupNorm splits the channels into equal groups"
                )
        for name, types, allowed in (
            ("down_block_types", self.down_block_types, DOWN_BLOCK_TYPES),
            ("up_block_types", self.up_block_types, UP_BLOCK_TYPES),
        ):
            if len(types) != len(self.block_out_channels):
                raise UsageError(
                    f"`{name}` must have one entry per resolution level (len(block_out_channels) = "
                    f"{len(self.block_out_channels)}), got {len(types)}"
                )
            for i, block_type in enumerate(types):
                check_choice(f"{name}[{i}]", block_type, allowed)
        factor = self.downsample_factor
        if self.sample_size % factor != 0:
            raise UsageError(
                f"`sample_size` ({self.sample_size}) must be divisible by the downsampling factor {factor} "
                f"(2 ** (len(block_out_channels) - 1) with {len(self.block_out_channels)} levels)"
            )

    @staticmethod
    def _default_block_types(num_levels: int) -> tuple[list[str], list[str]]:
        """Block types used when the config leaves them unset: plain residual blocks at every level."""
        return [DOWN_BLOCK_TYPES[0]] * num_levels, [UP_BLOCK_TYPES[0]] * num_levels

    @property
    def downsample_factor(self) -> int:
        """How many pixels one latent position covers along each side."""
        return 2 ** (len(self.block_out_channels) - 1)

    @property
    def latent_size(self) -> int:
        """Side of the latent grid for `sample_size` inputs."""
        return self.sample_size // self.downsample_factor


def latent_side(config: PreTrainedConfig, resolution: int | None = None) -> int:
    """Side of the latent (code) grid of square `resolution`-pixel images (default: the config's `sample_size`);
    a `ValueError` unless the resolution is divisible by the model's downsampling factor."""
    resolution = resolution or config.sample_size
    if resolution % config.downsample_factor:
        raise UsageError(
            f"`resolution` ({resolution}) must be divisible by the model's downsampling factor "
            f"{config.downsample_factor}"
        )
    return resolution // config.downsample_factor


QUANTIZER_TYPES = ("vq", "fsq", "lfq", "simvq", "residual")
# How a quantizer's gradient reaches the encoder: straight-through, or the rotation trick.
VQ_GRADIENTS = ("ste", "rotation")
# LFQ packs its binary codes into int64 indices and keeps a histogram of K = 2**bits counts per step (as do the
# codebook metrics): 2**24 codes (128 MiB of counts) is the largest size it takes. Its batch entropy materializes
# 2**g probabilities per latent for each group of g bits: at most 16 bits a group.
LFQ_MAX_BITS = 24
LFQ_MAX_GROUP_BITS = 16


class QuantizerConfigMixin(CheckedKeysMixin, PreTrainedConfig):
    r"""
    Quantizer fields shared by the VQ-VAE and VQ-GAN configs. A family config calls `_check_quantizer` once it has
    resolved `vq_embed_dim`.

    Args:
        quantizer_type (`str`, defaults to `"vq"`): `"vq"` (a learned codebook, `VectorQuantizer`), `"fsq"` (finite
            scalar quantization, `FSQ`, an implicit codebook of `fsq_levels`), `"lfq"` (lookup-free quantization,
            `LFQ`: the signs of log2(num_vq_embeddings) channels), `"simvq"` (a frozen random codebook through a
            learned linear map, `SimVQ`) or `"residual"` (`residual_depth` vector quantizers on successive residuals,
            `ResidualVectorQuantizer`: code grids (B, h, w, residual_depth)).
        num_vq_embeddings (`int`): codebook size K (per codebook for `"residual"`; a power of 2 for `"lfq"`). With
            FSQ it is the product of `fsq_levels`, filled in for you.
        vq_embed_dim (`int`, *optional*): channels of the quantized latents.
        vq_beta (`float`, defaults to 0.25): weight of the commitment term `||z_e - sg[e]||^2` (every quantizer
            but FSQ, which has none).
        vq_gradient (`str`, defaults to `"ste"`): how the gradient reaches the encoder through `"vq"`, `"simvq"` and
            `"residual"` quantization: `"ste"` (straight-through) or `"rotation"` (the rotation trick, Fifty et al.
            2024). The codes are the same either way.
        vq_codebook_update (`str`, defaults to `"loss"`): `"loss"` (the codebook term trains the codebook) or
            `"ema"` (exponential moving averages, all-reduced across processes).
        vq_ema_decay (`float`, defaults to 0.99), vq_ema_epsilon (`float`, defaults to 1e-5): EMA decay and Laplace
            smoothing of the cluster sizes.
        vq_use_l2_norm (`bool`, defaults to `False`): l2-normalized latents and codes (cosine similarity search).
        vq_codebook_dim (`int`, *optional*): a lower-dimensional codebook with linear projections in and out
            (LlamaGen: 8); smaller than `vq_embed_dim`.
        vq_kmeans_init (`bool`, defaults to `False`): k-means initialization from the first training batch.
        vq_dead_code_threshold (`int`, *optional*): re-seed a code unused for this many training steps; scale it with
            K over the latents per step, so that a code used at the average rate is hit several times per window.
        vq_entropy_weight (`float`, defaults to 0.0): weight of the code entropy penalty of `"vq"` (MaskGIT's and
            LlamaGen's `entropy_loss_ratio`): per-latent entropy down, batch entropy up, spreading the encoder's
            latents over every code (see `VectorQuantizer`); 0 disables it. Only for quantizer_type `"vq"`.
        vq_entropy_temperature (`float`, defaults to 0.01): its temperature, in squared distance.
        vq_entropy_decay_steps (`int`, *optional*): the penalty's weight falls linearly from vq_entropy_weight to 0
            over this many training forwards (optimizer steps times gradient_accumulation_steps), then stays 0 (the
            codes are spread early, the last steps train for reconstruction alone); unset keeps it constant.
        fsq_levels (`list[int]`, *optional*): FSQ levels per channel, e.g. `[8, 5, 5, 5]`.
        lfq_entropy_weight (`float`, defaults to 0.1): LFQ's weight on the per-sample entropy (pushed down).
        lfq_diversity_weight (`float`, defaults to 0.1): LFQ's weight on the batch code entropy (pushed up).
        lfq_temperature (`float`, defaults to 0.01): temperature of LFQ's code distribution
            `softmax(-||z - c||^2 / T)`.
        lfq_group_bits (`int`, defaults to 10): most bits per group of LFQ's batch entropy (1 to 16): exact for
            codebooks of up to 2**lfq_group_bits codes, an upper bound of it for larger ones (see `LFQ`).
        lfq_code_scale (`float`, defaults to 1.0): magnitude of LFQ's codes (-s or +s per channel).
        residual_depth (`int`, defaults to 4): stages of residual quantization, the codes per position.
        residual_shared_codebook (`bool`, defaults to `False`): one codebook for every stage (RQ-VAE) instead of one
            per stage (SoundStream).

    The fields of one quantizer are unused by the others: the lfq_* fields by every type but `"lfq"`, the residual_*
    fields by every type but `"residual"`.
    """

    quantizer_type: str = "vq"
    num_vq_embeddings: int | None = None
    vq_embed_dim: int | None = None
    vq_beta: float = 0.25
    vq_codebook_update: str = "loss"
    vq_ema_decay: float = 0.99
    vq_ema_epsilon: float = 1e-5
    vq_use_l2_norm: bool = False
    vq_codebook_dim: int | None = None
    vq_kmeans_init: bool = False
    vq_dead_code_threshold: int | None = None
    vq_entropy_weight: float = 0.0
    vq_entropy_temperature: float = 0.01
    vq_entropy_decay_steps: int | None = None
    fsq_levels: list[int] | tuple[int, ...] | None = None
    vq_gradient: str = "ste"
    lfq_entropy_weight: float = 0.1
    lfq_diversity_weight: float = 0.1
    lfq_temperature: float = 0.01
    lfq_group_bits: int = 10
    lfq_code_scale: float = 1.0
    residual_depth: int = 4
    residual_shared_codebook: bool = False

    def _check_quantizer(self) -> None:
        check_choice("quantizer_type", self.quantizer_type, QUANTIZER_TYPES)
        check_int("vq_embed_dim", self.vq_embed_dim, minimum=1)
        check_choice("vq_gradient", self.vq_gradient, VQ_GRADIENTS)
        check_float("vq_entropy_weight", self.vq_entropy_weight, minimum=0.0)
        check_float("vq_entropy_temperature", self.vq_entropy_temperature, 0.0, exclusive_minimum=True)
        if self.vq_entropy_decay_steps is not None:
            check_int("vq_entropy_decay_steps", self.vq_entropy_decay_steps, minimum=1)
            if not self.vq_entropy_weight:
                raise UsageError(
                    "`vq_entropy_decay_steps` decays the code entropy penalty, which is off (vq_entropy_weight=0); "
                    "set vq_entropy_weight or unset vq_entropy_decay_steps"
                )
        if self.vq_entropy_weight and self.quantizer_type != "vq":
            lfq = self.quantizer_type == "lfq"
            own = " (LFQ has its own: lfq_entropy_weight, lfq_diversity_weight)" if lfq else ""
            raise UsageError(
                f"`vq_entropy_weight` applies to quantizer_type='vq' only, not {self.quantizer_type!r}{own}; set "
                "vq_entropy_weight=0 or quantizer_type='vq'"
            )
        self._check_lfq_fields()
        check_int("residual_depth", self.residual_depth, minimum=1)
        if not isinstance(self.residual_shared_codebook, bool):
            raise UsageError(f"`residual_shared_codebook` must be a bool, got {self.residual_shared_codebook!r}")
        if self.quantizer_type == "fsq":
            self._check_fsq()
            return
        if self.fsq_levels is not None:
            raise UsageError("`fsq_levels` applies to quantizer_type='fsq' only; unset it or set quantizer_type='fsq'")
        check_int("num_vq_embeddings", self.num_vq_embeddings, minimum=2)
        check_float("vq_beta", self.vq_beta, minimum=0.0)
        if self.quantizer_type == "lfq":
            self._check_lfq()
            return
        if self.quantizer_type == "simvq":
            self._refuse_codebook_maintenance(
                "SimVQ's codebook is frozen; its learned linear map replaces these options"
            )
            return
        if self.quantizer_type == "residual":
            for name, is_set in (("vq_use_l2_norm", self.vq_use_l2_norm), ("vq_codebook_dim", self.vq_codebook_dim)):
                if is_set:
                    raise UsageError(
                        f"`{name}` does not apply to quantizer_type='residual': its stages subtract codes from the "
                        f"latents in vq_embed_dim, unnormalized; unset {name}"
                    )
        check_choice("vq_codebook_update", self.vq_codebook_update, ("loss", "ema"))
        check_float("vq_ema_decay", self.vq_ema_decay, 0.0, 1.0, exclusive_minimum=True, exclusive_maximum=True)
        check_float("vq_ema_epsilon", self.vq_ema_epsilon, 0.0, exclusive_minimum=True)
        for name in ("vq_use_l2_norm", "vq_kmeans_init"):
            if not isinstance(getattr(self, name), bool):
                raise UsageError(f"`{name}` must be a bool, got {getattr(self, name)!r}")
        if self.vq_codebook_dim is not None:
            check_int("vq_codebook_dim", self.vq_codebook_dim, minimum=1)
            if self.vq_codebook_dim >= self.vq_embed_dim:
                raise UsageError(
                    f"`vq_codebook_dim` ({self.vq_codebook_dim}) must be smaller than `vq_embed_dim` "
                    f"({self.vq_embed_dim}): it factorizes the codebook into fewer dimensions; leave it unset to "
                    "search in vq_embed_dim"
                )
        if self.vq_dead_code_threshold is not None:
            check_int("vq_dead_code_threshold", self.vq_dead_code_threshold, minimum=1)

    def _check_lfq_fields(self) -> None:
        for name in ("lfq_entropy_weight", "lfq_diversity_weight"):
            check_float(name, getattr(self, name), minimum=0.0)
        check_float("lfq_temperature", self.lfq_temperature, 0.0, exclusive_minimum=True)
        check_int("lfq_group_bits", self.lfq_group_bits, minimum=1, maximum=LFQ_MAX_GROUP_BITS)
        check_float("lfq_code_scale", self.lfq_code_scale, 0.0, exclusive_minimum=True)

    def _check_lfq(self) -> None:
        size = self.num_vq_embeddings
        if size & (size - 1) or size > 2**LFQ_MAX_BITS:
            lower, upper = 1 << (size.bit_length() - 1), 1 << size.bit_length()
            raise UsageError(
                f"`num_vq_embeddings` ({size}) must be a power of 2 up to 2**{LFQ_MAX_BITS} for quantizer_type='lfq': "
                f"its codes are the sign patterns of log2(num_vq_embeddings) channels (e.g. {lower} or {upper})"
            )
        self._refuse_codebook_maintenance("LFQ has no codebook: its codes are the signs of its channels")

    def _refuse_codebook_maintenance(self, reason: str) -> None:
        """A `UsageError` for any codebook-maintenance option (or the rotation trick, for LFQ) that is set."""
        options = {
            "vq_codebook_update": self.vq_codebook_update != "loss",
            "vq_use_l2_norm": self.vq_use_l2_norm,
            "vq_codebook_dim": self.vq_codebook_dim is not None,
            "vq_kmeans_init": self.vq_kmeans_init,
            "vq_dead_code_threshold": self.vq_dead_code_threshold is not None,
        }
        if self.quantizer_type == "lfq":
            options["vq_gradient"] = self.vq_gradient != "ste"
        for name, is_set in options.items():
            if is_set:
                raise UsageError(
                    f"`{name}` does not apply to quantizer_type={self.quantizer_type!r} ({reason}); unset {name} or "
                    "use quantizer_type='vq'"
                )

    def _check_fsq(self) -> None:
        if self.fsq_levels is None:
            raise UsageError("quantizer_type='fsq' needs `fsq_levels`, the levels per channel, e.g. [8, 5, 5, 5]")
        check_int_list("fsq_levels", self.fsq_levels, minimum=2)
        self.fsq_levels = list(self.fsq_levels)
        size = math.prod(self.fsq_levels)
        if self.num_vq_embeddings is None:
            self.num_vq_embeddings = size
        elif self.num_vq_embeddings != size:
            raise UsageError(
                f"`num_vq_embeddings` ({self.num_vq_embeddings}) conflicts with FSQ: its codebook is the grid of "
                f"fsq_levels {self.fsq_levels}, {size} codes; leave num_vq_embeddings unset"
            )
        learned_codebook_options = {
            "vq_codebook_update": self.vq_codebook_update != "loss",
            "vq_use_l2_norm": self.vq_use_l2_norm,
            "vq_codebook_dim": self.vq_codebook_dim is not None,
            "vq_kmeans_init": self.vq_kmeans_init,
            "vq_dead_code_threshold": self.vq_dead_code_threshold is not None,
            "vq_gradient": self.vq_gradient != "ste",
        }
        for name, is_set in learned_codebook_options.items():
            if is_set:
                raise UsageError(
                    f"`{name}` acts on a learned codebook, and FSQ has none (its codes are a fixed grid); "
                    f"unset {name} or use quantizer_type='vq'"
                )

    @property
    def codebook_size(self) -> int:
        return self.num_vq_embeddings

    @property
    def codes_per_position(self) -> int:
        """Code indices per latent position: `residual_depth` for residual quantization (code grids
        (B, h, w, depth)), else 1 (code grids (B, h, w))."""
        return self.residual_depth if self.quantizer_type == "residual" else 1

    @property
    def num_codebooks(self) -> int:
        """Codebooks of `num_vq_embeddings` codes each: one per stage of residual quantization with separate
        codebooks (code grids (B, h, w, depth), stage k indexing codebook k), else 1."""
        return self.codes_per_position if not self.residual_shared_codebook else 1
