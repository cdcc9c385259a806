"""taming-transformers VQ-GAN checkpoints (and the VQ first stage of latent-diffusion models) -> `VQGANModel`:
reading the checkpoint, its config fields and its state-dict keys.

Pure mappings: the functions here return `VQGANConfig` keyword arguments and state dicts under `VQGANModel`'s names;
they import no model class and build no model (`convert_taming_state_dict` checks the weights against the state dict
of a model its caller built). `VQGANModel.from_taming`, and `scripts/convert_taming_checkpoint.py` on top of it, put
them together into a model.

taming's `VQModel` and `VQGANModel` are the same network under other names (diffusers' `VQModel` layout):

    taming                                          VQGANModel
    encoder.down.{i}.block.{j}.{norm1,conv1,...}    encoder.down_blocks.{i}.resnets.{j}.{norm1,conv1,...}
    ...block.{j}.nin_shortcut (1x1 conv)            ...resnets.{j}.conv_shortcut
    encoder.down.{i}.attn.{j}.norm                  encoder.down_blocks.{i}.attentions.{j}.group_norm
    ...attn.{j}.{q,k,v,proj_out} (1x1 convs)        ...attentions.{j}.{to_q,to_k,to_v,to_out.0} (linears: squeezed)
    encoder.down.{i}.downsample.conv                encoder.down_blocks.{i}.downsamplers.0.conv
    decoder.up.{i}.{block,attn}                     decoder.up_blocks.{L-1-i}.{resnets,attentions}
    decoder.up.{i}.upsample.conv                    decoder.up_blocks.{L-1-i}.upsamplers.0.conv
    {encoder,decoder}.mid.{block_1,attn_1,block_2}  {encoder,decoder}.mid_block.{resnets.0,attentions.0,resnets.1}
    {encoder,decoder}.norm_out                      {encoder,decoder}.conv_norm_out
    conv_in, conv_out, quant_conv, post_quant_conv, quantize.embedding.weight: the same

taming's decoder numbers its `up` blocks by resolution level (`up.0` is the full-resolution one), diffusers' in the
order they run (`up_blocks.0` is the lowest resolution), hence `L-1-i` for L levels.

Only taming's plain `VectorQuantizer` (`VectorQuantizer2`) converts: `GumbelQuantize` picks codes from learned
logits, the EMA quantizer (`EMAVectorQuantizer`) is not supported, and index remapping (`remap=`) changes what the
indices mean. Those fail with a `ValueError` that says so.

`VQGANConfig.from_taming` calls `taming_config_kwargs`, so this module is part of the code exported to the Hub with the
VQ-GAN: at module level it imports only the standard library, torch and the quantizers.
"""

from __future__ import annotations

import os
import pickle
import re
import types
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..modules.quantizers import QUANTIZER_STATE_KEYS
from ..utils.errors import UsageError

# LDM keeps its autoencoder under this prefix, and taming's own transformer checkpoints keep the VQGAN there too.
FIRST_STAGE_PREFIX = "first_stage_model."
# Lightning checkpoints keep the discriminator and the perceptual loss (and LDM its `logvar`) beside the generator.
NON_GENERATOR_PREFIXES = ("loss.",)
# taming's segmentation models keep a random colour map for visualization; it is not part of the network.
NON_GENERATOR_KEYS = ("colorize",)

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
SAFETENSORS_SUFFIX = ".safetensors"

_RESNET_LAYERS = {
    "norm1": "norm1",
    "conv1": "conv1",
    "norm2": "norm2",
    "conv2": "conv2",
    "nin_shortcut": "conv_shortcut",
}
_ATTENTION_LAYERS = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
_SAME_NAME = {
    f"{module}.{param}"
    for module in ("quant_conv", "post_quant_conv", "encoder.conv_in", "encoder.conv_out", "decoder.conv_in",
                   "decoder.conv_out")
    for param in ("weight", "bias")
} | {"quantize.embedding.weight"}  # fmt: skip
# Our names of the attention projections: taming stores them as 1x1 convs (C, C, 1, 1), diffusers as linears (C, C).
_ATTENTION_PROJECTION = re.compile(r".*\.attentions\.\d+\.(to_q|to_k|to_v|to_out\.0)\.weight")
# taming's model classes whose quantizer does not convert, by the class name of the YAML's `target`.
_UNSUPPORTED_TARGETS = {
    "GumbelVQ": "GumbelQuantize",
    "EMAVQ": "EMAVectorQuantizer",
}


def _few(names: Iterable[str], limit: int = 5) -> str:
    """The first `limit` names and how many more, for error messages."""
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f" (and {len(names) - limit} more)" if len(names) > limit else "")


# ----- loading -----


class _MissingClass:
    """Stands in for a pickled class whose module is not installed (e.g. pytorch_lightning's callbacks, or its
    `AttributeDict` of hyper-parameters): it keeps whatever the pickle builds it with, and is never used."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state):
        self.state = state

    # Pickled dict and list subclasses are rebuilt without __init__, then filled item by item.
    def __setitem__(self, key, value):
        self.__dict__.setdefault("entries", []).append((key, value))

    def append(self, value):
        self.__dict__.setdefault("entries", []).append(value)

    def extend(self, values):
        self.__dict__.setdefault("entries", []).extend(values)


class _TolerantUnpickler(pickle.Unpickler):
    """An ordinary (unsafe) unpickler that replaces classes it cannot import by `_MissingClass` subclasses."""

    _stand_ins: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str):
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            key = (module, name)
            if key not in self._stand_ins:
                self._stand_ins[key] = type(name, (_MissingClass,), {"__module__": f"missing.{module}"})
            return self._stand_ins[key]


# torch.load takes a pickle module: it subclasses its `Unpickler` for zip checkpoints and calls `load` for legacy ones.
_tolerant_pickle = types.SimpleNamespace(
    Unpickler=_TolerantUnpickler,
    load=lambda file, **kwargs: _TolerantUnpickler(file, **kwargs).load(),
    __name__="hf_vq_tolerant_pickle",
)


def _torch_load(path: Path, allow_unsafe_pickle: bool) -> Any:
    if allow_unsafe_pickle:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_tolerant_pickle)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # PyTorch's message is long; its "WeightsUnpickler error:" line names the class that was refused.
        lines = [line for line in str(error).splitlines() if "WeightsUnpickler error:" in line]
        reason = lines[0].split("error:", 1)[1].split(". Please", 1)[0].strip() if lines else type(error).__name__
        raise UsageError(
            f"{path} pickles Python objects besides tensors (Lightning checkpoints often store hyper-parameters or "
            "callback states that way), so it cannot be loaded with torch.load(weights_only=True). If you trust the "
            "file, pass --allow_unsafe_pickle (allow_unsafe_pickle=True) to load it anyway: unpickling an untrusted "
            f"file can run arbitrary code. PyTorch reported: {reason}"
        ) from error


def taming_generator_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The generator's weights in a loaded taming / LDM checkpoint, with taming's key names.

    Unwraps a Lightning checkpoint's `state_dict`, keeps only the `first_stage_model.` part (prefix removed) when there
    is one (an LDM, or a taming transformer), and drops the discriminator and perceptual loss (`loss.*`).
    """
    if not isinstance(checkpoint, Mapping):
        raise UsageError(f"expected a checkpoint dict or a state dict, got {type(checkpoint).__name__}")
    state_dict = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state_dict, Mapping):
        raise UsageError(f"the checkpoint's `state_dict` entry is a {type(state_dict).__name__}, not a dict")
    if any(key.startswith(FIRST_STAGE_PREFIX) for key in state_dict):
        start = len(FIRST_STAGE_PREFIX)
        state_dict = {key[start:]: value for key, value in state_dict.items() if key.startswith(FIRST_STAGE_PREFIX)}
    generator = {
        key: value
        for key, value in state_dict.items()
        if not key.startswith(NON_GENERATOR_PREFIXES) and key not in NON_GENERATOR_KEYS
    }
    not_tensors = [key for key, value in generator.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise UsageError(
            "this is neither a taming checkpoint (a dict with a `state_dict`) nor a state dict: these entries are not "
            f"tensors: {_few(not_tensors)}"
        )
    return generator


def load_taming_state_dict(path: str | os.PathLike, allow_unsafe_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read a taming / LDM checkpoint (`.ckpt`, `.pt`, `.pth`, `.bin` or `.safetensors`) -> the generator's state dict.

    Pickled checkpoints are read with `torch.load(weights_only=True)`, which unpickles nothing but tensors and plain
    containers. A file that pickles other Python objects fails with a `ValueError` unless `allow_unsafe_pickle=True`,
    which unpickles it in full: only for files you trust, since unpickling can run arbitrary code. (Classes whose
    module is not installed, e.g. pytorch_lightning's, are then replaced by inert stand-ins.)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    suffix = path.suffix.lower()
    if suffix == SAFETENSORS_SUFFIX:
        from safetensors.torch import load_file

        checkpoint = load_file(path, device="cpu")
    elif suffix in PICKLE_SUFFIXES:
        checkpoint = _torch_load(path, allow_unsafe_pickle)
    else:
        raise UsageError(
            f"unknown checkpoint format {path.suffix!r} ({path.name}): expected one of "
            f"{', '.join(PICKLE_SUFFIXES + (SAFETENSORS_SUFFIX,))}"
        )
    return taming_generator_state_dict(checkpoint)


# ----- configs -----


def _check_quantizer_keys(state_dict: Mapping[str, torch.Tensor]) -> None:
    """Fail clearly for taming quantizers that do not convert (and for checkpoints that have no quantizer)."""
    keys = set(state_dict)
    if {"quantize.embed.weight", "quantize.proj.weight"} & keys:
        raise UsageError(
            "this checkpoint uses taming's GumbelQuantize (keys quantize.proj.*, quantize.embed.weight), which is not "
            "supported: it picks codes from learned logits, not by nearest-neighbour search in a codebook"
        )
    if {"quantize.embedding.cluster_size", "quantize.embedding.embed_avg"} & keys:
        raise UsageError(
            "this checkpoint uses taming's EMA quantizer (EMAVectorQuantizer, keys quantize.embedding.cluster_size / "
            "embed_avg), which is not supported"
        )
    if "quantize.used" in keys:
        raise UsageError(
            "this checkpoint's quantizer remaps its indices (taming's `remap`, key quantize.used), which is not "
            "supported: the converted model's indices would mean other codes than the original's"
        )
    if "quantize.embedding.weight" not in keys:
        raise UsageError(
            "no codebook (quantize.embedding.weight) in this checkpoint: it is not a taming VQModel (a KL autoencoder "
            f"such as LDM's AutoencoderKL has none). Its first keys: {_few(sorted(keys))}"
        )


def _check_ch_mult(ch_mult: list[int]) -> None:
    if ch_mult[0] != 1:
        raise UsageError(
            f"ch_mult {ch_mult} starts with {ch_mult[0]}: taming's encoder then has ch channels after conv_in but "
            "ch * ch_mult[0] in its first level, which the diffusers backbone of VQGANModel cannot express; only "
            "ch_mult[0] = 1 (as in all released taming and LDM models) converts"
        )


def taming_config_kwargs(
    *,
    ch: int,
    ch_mult: Sequence[int],
    num_res_blocks: int,
    attn_resolutions: Sequence[int],
    resolution: int,
    z_channels: int,
    n_embed: int,
    embed_dim: int,
    in_channels: int = 3,
    out_ch: int = 3,
) -> dict[str, Any]:
    """`VQGANConfig` keyword arguments for a taming `VQModel` of these `ddconfig` entries, `n_embed` and `embed_dim`.

    taming's level i has `ch * ch_mult[i]` channels at resolution `resolution / 2**i`, with attention after each
    residual block when that resolution is in `attn_resolutions`; the decoder mirrors it.
    """
    levels = len(ch_mult)
    if ch_mult[0] != 1:
        # taming's conv_in gives `ch` channels, diffusers' Encoder block_out_channels[0]: equal only then.
        raise UsageError(f"`ch_mult[0]` must be 1 to match the diffusers layout, got ch_mult={list(ch_mult)}")
    level_resolutions = [resolution // 2**i for i in range(levels)]
    unmatched = sorted(set(attn_resolutions) - set(level_resolutions))
    if unmatched:
        raise UsageError(
            f"`attn_resolutions` {unmatched} match no level: the levels run at resolutions {level_resolutions}"
        )
    attention = [size in attn_resolutions for size in level_resolutions]
    return {
        "in_channels": in_channels,
        "out_channels": out_ch,
        "block_out_channels": [ch * m for m in ch_mult],
        "down_block_types": ["AttnDownEncoderBlock2D" if a else "DownEncoderBlock2D" for a in attention],
        "up_block_types": ["AttnUpDecoderBlock2D" if a else "UpDecoderBlock2D" for a in reversed(attention)],
        "layers_per_block": num_res_blocks,
        "latent_channels": z_channels,
        "sample_size": resolution,
        "num_vq_embeddings": n_embed,
        "vq_embed_dim": embed_dim,
    }


def taming_config_from_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """`VQGANConfig` keyword arguments from a taming config YAML (`configs/model.yaml`, a run's `project.yaml`).

    Reads `model.params.ddconfig`, `model.params.n_embed` and `model.params.embed_dim`; for an LDM config, those of
    `model.params.first_stage_config`.
    """
    import yaml

    with open(path, encoding="utf-8") as file:
        document = yaml.safe_load(file)
    if not isinstance(document, dict):
        raise UsageError(f"{path} is not a taming config: expected a YAML mapping with a `model` section")
    model = document.get("model", document)
    params = model.get("params") or {}
    if "first_stage_config" in params:  # an LDM config: its autoencoder
        model = params["first_stage_config"]
        params = model.get("params") or {}
    target = str(model.get("target", ""))
    quantizer = _UNSUPPORTED_TARGETS.get(target.rsplit(".", 1)[-1])
    if quantizer is not None:
        raise UsageError(f"{path} describes a {target} model, whose {quantizer} is not supported")
    missing = [name for name in ("ddconfig", "n_embed", "embed_dim") if name not in params]
    if missing:
        raise UsageError(
            f"{path} has no model.params.{', model.params.'.join(missing)}: is it a taming VQModel config?"
        )
    ddconfig = params["ddconfig"]
    missing = [
        name
        for name in ("ch", "ch_mult", "num_res_blocks", "attn_resolutions", "resolution", "z_channels")
        if name not in ddconfig
    ]
    if missing:
        raise UsageError(f"{path}: model.params.ddconfig lacks {', '.join(missing)}")
    if ddconfig.get("double_z", False):
        raise UsageError(
            f"{path}: ddconfig.double_z is true, the encoder of a KL autoencoder (mean and log-variance); a "
            "taming VQModel has double_z: false"
        )
    if not ddconfig.get("resamp_with_conv", True):
        raise UsageError(f"{path}: ddconfig.resamp_with_conv false (average-pool downsampling) is not supported")
    ch_mult = list(ddconfig["ch_mult"])
    _check_ch_mult(ch_mult)
    return taming_config_kwargs(
        ch=ddconfig["ch"],
        ch_mult=ch_mult,
        num_res_blocks=ddconfig["num_res_blocks"],
        attn_resolutions=list(ddconfig["attn_resolutions"]),
        resolution=ddconfig["resolution"],
        z_channels=ddconfig["z_channels"],
        n_embed=params["n_embed"],
        embed_dim=params["embed_dim"],
        in_channels=ddconfig.get("in_channels", 3),
        out_ch=ddconfig.get("out_ch", 3),
    )


def _shape(state_dict: Mapping[str, torch.Tensor], key: str) -> tuple[int, ...]:
    if key not in state_dict:
        raise UsageError(f"the checkpoint has no {key}: it is not a taming VQModel generator")
    return tuple(state_dict[key].shape)


def _indices(state_dict: Mapping[str, torch.Tensor], pattern: str) -> list[int]:
    """The distinct values of the single `(\\d+)` group of `pattern` over the keys, sorted."""
    regex = re.compile(pattern)
    return sorted({int(match[1]) for key in state_dict if (match := regex.match(key))})


def infer_taming_config(state_dict: Mapping[str, torch.Tensor], resolution: int | None) -> dict[str, Any]:
    """`VQGANConfig` keyword arguments for a taming generator state dict, read from its key names and tensor shapes.

    Args:
        state_dict: taming's keys, as `load_taming_state_dict` returns them.
        resolution: the training resolution (`ddconfig.resolution`). The weights do not depend on it, but taming
            names attention levels by the resolution they run at, and it becomes the config's `sample_size`.
    """
    if resolution is None:
        raise UsageError(
            "without the taming config YAML, the training resolution is needed (resolution / --resolution): "
            "taming places attention by resolution"
        )
    _check_quantizer_keys(state_dict)
    ch, in_channels = _shape(state_dict, "encoder.conv_in.weight")[:2]  # (ch, in_channels, 3, 3)
    levels = _indices(state_dict, r"encoder\.down\.(\d+)\.")
    if not levels or levels != list(range(len(levels))):
        raise UsageError(f"the checkpoint's encoder levels encoder.down.{{i}} are {levels}, expected 0, 1, ..., L-1")
    num_res_blocks = len(_indices(state_dict, r"encoder\.down\.0\.block\.(\d+)\."))
    ch_mult = []
    for level in levels:
        channels = _shape(state_dict, f"encoder.down.{level}.block.0.conv1.weight")[0]  # (ch * ch_mult[i], in, 3, 3)
        if channels % ch:
            raise UsageError(f"encoder.down.{level} has {channels} channels, not a multiple of ch = {ch}")
        ch_mult.append(channels // ch)
    _check_ch_mult(ch_mult)
    encoder_attention = [level for level in levels if f"encoder.down.{level}.attn.0.q.weight" in state_dict]
    decoder_attention = [level for level in levels if f"decoder.up.{level}.attn.0.q.weight" in state_dict]
    if encoder_attention != decoder_attention:
        raise UsageError(
            f"the encoder has attention at levels {encoder_attention} but the decoder at {decoder_attention}; taming "
            "builds both from the same attn_resolutions"
        )
    embed_dim, z_channels = _shape(state_dict, "quant_conv.weight")[:2]  # (embed_dim, z_channels, 1, 1)
    if _shape(state_dict, "encoder.conv_out.weight")[0] == 2 * z_channels:  # (z_channels [x2], ch * ch_mult[-1], 3, 3)
        raise UsageError("the encoder outputs 2 * z_channels (double_z): that is a KL autoencoder, not a VQModel")
    n_embed = _shape(state_dict, "quantize.embedding.weight")[0]  # (n_embed, embed_dim)
    out_ch = _shape(state_dict, "decoder.conv_out.weight")[0]  # (out_ch, ch * ch_mult[0], 3, 3)
    return taming_config_kwargs(
        ch=ch,
        ch_mult=ch_mult,
        num_res_blocks=num_res_blocks,
        attn_resolutions=[resolution // 2**level for level in encoder_attention],
        resolution=resolution,
        z_channels=z_channels,
        n_embed=n_embed,
        embed_dim=embed_dim,
        in_channels=in_channels,
        out_ch=out_ch,
    )


def _check_taming_compatible(config: Any) -> None:
    """Fail for configs whose network computes something other than taming's with the same weights."""
    if config.quantizer_type != "vq" or config.vq_use_l2_norm or config.vq_codebook_dim is not None:
        raise UsageError(
            "taming's quantizer is a plain nearest-neighbour codebook: a config with quantizer_type="
            f"{config.quantizer_type!r} (only 'vq' converts), vq_use_l2_norm=True or vq_codebook_dim set would "
            "quantize differently"
        )
    if config.norm_num_groups != 32 or config.act_fn not in ("silu", "swish") or not config.mid_block_add_attention:
        raise UsageError(
            "taming's backbone has GroupNorm with 32 groups, SiLU activations and attention in its middle blocks; got "
            f"norm_num_groups={config.norm_num_groups}, act_fn={config.act_fn!r}, "
            f"mid_block_add_attention={config.mid_block_add_attention}"
        )


# ----- weights -----


def _layer_path(prefix: str, kind: str, index: str, layer: str) -> str | None:
    """Our path of taming's `layer` in residual block (`kind` "block") or attention block ("attn") `index`."""
    if kind == "block" and layer in _RESNET_LAYERS:
        return f"{prefix}.resnets.{index}.{_RESNET_LAYERS[layer]}"
    if kind == "attn" and layer in _ATTENTION_LAYERS:
        return f"{prefix}.attentions.{index}.{_ATTENTION_LAYERS[layer]}"
    return None


def _block_path(coder: str, path: str, num_levels: int) -> str | None:
    """Our module path inside `coder` ("encoder" / "decoder") for taming's `path`; None when taming has no such one."""
    if path in ("conv_in", "conv_out"):
        return path
    if path == "norm_out":
        return "conv_norm_out"
    if match := re.fullmatch(r"mid\.block_([12])\.(\w+)", path):  # block_1, block_2 -> resnets.0, resnets.1
        return _layer_path("mid_block", "block", str(int(match[1]) - 1), match[2])
    if match := re.fullmatch(r"mid\.attn_1\.(\w+)", path):
        return _layer_path("mid_block", "attn", "0", match[1])
    if coder == "encoder":
        stage, resample, resampler = "down", "downsample", "downsamplers.0"
    else:
        stage, resample, resampler = "up", "upsample", "upsamplers.0"
    match = re.fullmatch(rf"{stage}\.(\d+)\.(.+)", path)
    if match is None or int(match[1]) >= num_levels:
        return None
    level, rest = int(match[1]), match[2]
    # taming numbers decoder levels by resolution (up.0 is full resolution), diffusers in execution order (up_blocks.0
    # is the lowest resolution).
    prefix = f"down_blocks.{level}" if coder == "encoder" else f"up_blocks.{num_levels - 1 - level}"
    if rest == f"{resample}.conv":
        return f"{prefix}.{resampler}.conv"
    if match := re.fullmatch(r"(block|attn)\.(\d+)\.(\w+)", rest):
        return _layer_path(prefix, match[1], match[2], match[3])
    return None


def taming_key_to_ours(key: str, num_levels: int) -> str | None:
    """VQGANModel's name for the taming generator key `key` of a model with `num_levels` resolution levels, or None
    when `key` is not one of a taming VQModel generator's."""
    if key in _SAME_NAME:
        return key
    match = re.fullmatch(r"(encoder|decoder)\.(.+)\.(weight|bias)", key)
    if match is None:
        return None
    coder, path, param = match.groups()
    ours = _block_path(coder, path, num_levels)
    return None if ours is None else f"{coder}.{ours}.{param}"


def convert_taming_state_dict(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """taming generator weights -> the weights of `model`, a `VQGANModel` (diffusers' `VQModel` names), checked
    against its config and its state dict's names and shapes (a model on the meta device will do).

    Raises a `ValueError` naming the keys that taming's VQModel does not have, the weights the model needs that the
    checkpoint lacks, and those whose shapes differ.
    """
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) != "hf_vq_vqgan":  # VQGANConfig's; this module imports no model class
        raise UsageError(f"model must be a VQGANModel, got {type(model).__name__}")
    _check_quantizer_keys(state_dict)
    _check_taming_compatible(config)
    num_levels = len(config.block_out_channels)
    converted: dict[str, torch.Tensor] = {}
    source: dict[str, str] = {}  # our name -> taming's, for error messages
    unknown = []
    for key, tensor in state_dict.items():
        name = taming_key_to_ours(key, num_levels)
        if name is None:
            unknown.append(key)
            continue
        if _ATTENTION_PROJECTION.fullmatch(name) and tensor.ndim == 4 and tensor.shape[2:] == (1, 1):
            tensor = tensor[:, :, 0, 0]  # (C, C, 1, 1) -> (C, C): a 1x1 conv is a linear map over channels
        converted[name] = tensor
        source[name] = key
    if unknown:
        raise UsageError(
            f"{len(unknown)} key(s) are not part of a taming VQModel generator with {num_levels} levels: "
            f"{_few(sorted(unknown))}"
        )

    # The quantizer's training state is ours alone (set from the codebook when loading).
    expected = {
        key: tuple(value.shape) for key, value in model.state_dict().items() if key not in QUANTIZER_STATE_KEYS
    }
    problems = []
    missing = sorted(expected.keys() - converted.keys())
    if missing:
        problems.append(f"the config needs weights the checkpoint lacks (VQGANModel names): {_few(missing)}")
    unexpected = sorted(source[name] for name in converted.keys() - expected.keys())
    if unexpected:
        problems.append(f"the checkpoint has weights the config has no place for (taming names): {_few(unexpected)}")
    mismatched = [
        f"{source[name]} {tuple(converted[name].shape)} for {name} {expected[name]}"
        for name in sorted(converted.keys() & expected.keys())
        if tuple(converted[name].shape) != expected[name]
    ]
    if mismatched:
        problems.append(f"shapes differ: {_few(mismatched, limit=3)}")
    if problems:
        raise UsageError(
            "the checkpoint does not match the config (are ch, ch_mult, num_res_blocks, attn_resolutions, z_channels, "
            "n_embed and embed_dim the checkpoint's?): " + "; ".join(problems)
        )
    return converted


__all__ = [
    "convert_taming_state_dict",
    "infer_taming_config",
    "load_taming_state_dict",
    "taming_config_from_yaml",
    "taming_config_kwargs",
    "taming_generator_state_dict",
    "taming_key_to_ours",
]
