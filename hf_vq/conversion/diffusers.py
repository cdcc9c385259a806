"""diffusers' `VQModel` and `AutoencoderKL` <-> `VQGANModel` and `VAEModel`: config fields and state-dict keys.

The two layouts are the same network under the same names: a config converts by copying the fields both have (lists
as tuples, as diffusers keeps them), a state dict key for key. Only the quantizer differs: diffusers' `VQModel` has a
plain nearest-neighbour codebook and no training state, so a VQ-GAN converts to it only with a plain codebook, and its
training-state buffers (`QUANTIZER_STATE_KEYS`) are dropped on the way there and set from the codebook on the way back
(`VQPreTrainedModel.load_converted_state_dict`).

Every field of diffusers 0.42's configs has a field of ours (those our models do not use, such as
`lookup_from_codebook`, `force_upcast` or `scaling_factor`, are kept for the way back), so a round trip loses nothing;
a diffusers config with a field we do not know, or a value we cannot represent (MoVQ's `norm_type="spatial"`), is
refused with a `UsageError` naming the field.

A diffusers model folder or repo (`config.json` with `_class_name`, weights in `diffusion_pytorch_model.safetensors`,
often a subfolder `vqvae/` or `vae/` of a pipeline) is read by `read_diffusers_config` and `load_diffusers_model`,
through the Hub cache for a repo id; pickled weights are never read.

The model methods `VQGANModel.from_diffusers` / `to_diffusers` and `VAEModel.from_diffusers` / `to_diffusers`, and
their `from_pretrained` on a diffusers folder, call these functions. Reached by the models, this module is part of the
code exported to the Hub: at module level it imports only what the models do; diffusers' model classes are imported
where they are built.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import EntryNotFoundError
from safetensors.torch import load_file

from ..modules.quantizers import QUANTIZER_STATE_KEYS
from ..utils.errors import UsageError

if TYPE_CHECKING:
    from diffusers import AutoencoderKL, VQModel

# diffusers' `VQModel` config fields that `VQGANConfig` carries under the same name.
VQ_MODEL_CONFIG_KEYS = (
    "in_channels", "out_channels", "down_block_types", "up_block_types", "block_out_channels", "layers_per_block",
    "act_fn", "latent_channels", "sample_size", "num_vq_embeddings", "norm_num_groups", "vq_embed_dim",
    "scaling_factor", "norm_type", "mid_block_add_attention", "lookup_from_codebook", "force_upcast",
)  # fmt: skip
# diffusers' `AutoencoderKL` config fields that `VAEConfig` carries under the same name.
AUTOENCODER_KL_CONFIG_KEYS = (
    "in_channels", "out_channels", "down_block_types", "up_block_types", "block_out_channels", "layers_per_block",
    "act_fn", "latent_channels", "norm_num_groups", "sample_size", "scaling_factor", "shift_factor", "latents_mean",
    "latents_std", "force_upcast", "use_quant_conv", "use_post_quant_conv", "mid_block_add_attention",
)  # fmt: skip
CONFIG_KEYS = {"VQModel": VQ_MODEL_CONFIG_KEYS, "AutoencoderKL": AUTOENCODER_KL_CONFIG_KEYS}

DIFFUSERS_CONFIG_NAME = "config.json"
DIFFUSERS_WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
PIPELINE_INDEX_NAME = "model_index.json"
# The `from_pretrained` keyword arguments that say where the files are.
HUB_KWARGS = ("subfolder", "revision", "token", "local_files_only", "cache_dir", "force_download", "variant")


def check_diffusers_config_keys(config: Mapping[str, Any], class_name: str) -> None:
    """A `UsageError` naming each field of a diffusers `class_name` config that we do not carry (metadata such as
    `_class_name` and `_diffusers_version` starts with `_` and is not a field)."""
    unknown = sorted(key for key in config if not key.startswith("_") and key not in CONFIG_KEYS[class_name])
    if unknown:
        raise UsageError(
            f"diffusers {class_name} config field(s) {', '.join(map(repr, unknown))} are not known to hf_vq (written "
            f"by a diffusers version other than 0.42?); converting would drop them"
        )


def diffusers_config_kwargs(source: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    """The entries named by `keys` of a config (diffusers' or ours, or a dict) that it has, lists as tuples
    (diffusers')."""
    values = source if isinstance(source, Mapping) else source.to_dict()
    return {key: tuple(values[key]) if isinstance(values[key], list) else values[key] for key in keys if key in values}


# ----- VQModel <-> VQGANModel -----


def vqgan_config_from_vq_model(vq_model_config: Any) -> dict[str, Any]:
    """`VQGANConfig` keyword arguments from a diffusers `VQModel` config (or its dict).

    Raises a `ValueError` for `norm_type="spatial"` (MoVQ), which `VQGANModel` does not have.
    """
    kwargs = diffusers_config_kwargs(vq_model_config, VQ_MODEL_CONFIG_KEYS)
    if isinstance(vq_model_config, Mapping):
        check_diffusers_config_keys(vq_model_config, "VQModel")
    if kwargs.get("norm_type", "group") != "group":
        raise UsageError(
            f"VQModel config field norm_type={kwargs['norm_type']!r} (MoVQ's spatial norm) is not supported by "
            "VQGANModel, only 'group'"
        )
    return kwargs


def vq_model_config_from_vqgan(config: Any) -> dict[str, Any]:
    """diffusers `VQModel` keyword arguments from a `VQGANConfig`.

    Only a plain codebook has a diffusers equivalent: quantizer_type="vq" without cosine codes or a factorized
    codebook (an EMA codebook or the rotation trick converts: they only train it). Raises a `ValueError` for the
    others (FSQ, LFQ, SimVQ, residual quantization).
    """
    if config.quantizer_type != "vq":
        raise UsageError(
            f"diffusers' VQModel has a plain nearest-neighbour codebook: a model with quantizer_type="
            f"{config.quantizer_type!r} would quantize differently there, so it is not converted (only 'vq' converts)"
        )
    if config.vq_use_l2_norm or config.vq_codebook_dim is not None:
        raise UsageError(
            "diffusers' VQModel has a plain nearest-neighbour codebook: a model with vq_use_l2_norm=True or "
            "vq_codebook_dim set would quantize differently there, so it is not converted"
        )
    return diffusers_config_kwargs(config, VQ_MODEL_CONFIG_KEYS)


def vq_model_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`VQGANModel` weights -> `VQModel` weights: the same keys, without the quantizer's training state."""
    return {key: value for key, value in state_dict.items() if key not in QUANTIZER_STATE_KEYS}


def vq_model_from_vqgan(config: Any, state_dict: Mapping[str, torch.Tensor]) -> VQModel:
    """A diffusers `VQModel` with a `VQGANModel`'s config and weights, copied key for key."""
    from diffusers import VQModel

    vq_model = VQModel(**vq_model_config_from_vqgan(config))
    vq_model.load_state_dict(vq_model_state_dict(state_dict), strict=True)
    return vq_model


# ----- AutoencoderKL <-> VAEModel -----


def vae_config_from_autoencoder_kl(autoencoder_kl_config: Any) -> dict[str, Any]:
    """`VAEConfig` keyword arguments from a diffusers `AutoencoderKL` config (or its dict)."""
    if isinstance(autoencoder_kl_config, Mapping):
        check_diffusers_config_keys(autoencoder_kl_config, "AutoencoderKL")
    return diffusers_config_kwargs(autoencoder_kl_config, AUTOENCODER_KL_CONFIG_KEYS)


def autoencoder_kl_config_from_vae(config: Any) -> dict[str, Any]:
    """diffusers `AutoencoderKL` keyword arguments from a `VAEConfig`."""
    return diffusers_config_kwargs(config, AUTOENCODER_KL_CONFIG_KEYS)


def autoencoder_kl_from_vae(config: Any, state_dict: Mapping[str, torch.Tensor]) -> AutoencoderKL:
    """A diffusers `AutoencoderKL` with a `VAEModel`'s config and weights, copied key for key (the same keys)."""
    from diffusers import AutoencoderKL

    autoencoder_kl = AutoencoderKL(**autoencoder_kl_config_from_vae(config))
    autoencoder_kl.load_state_dict(state_dict, strict=True)  # copies values, keeps float32
    return autoencoder_kl


# ----- diffusers folders and repos -----


def _fetch(source: str | os.PathLike, filename: str, subfolder: str | None = None, **hub_kwargs) -> str | None:
    """The local path of `filename` in a local folder or (through the Hub cache) a Hub repo; `None` when it is not
    there (or the repo cannot be reached: the caller's usual loading then reports why)."""
    if Path(source).is_dir():
        path = Path(source, subfolder or "", filename)
        return str(path) if path.is_file() else None
    hub_kwargs = {key: value for key, value in hub_kwargs.items() if value is not None}
    try:
        return hf_hub_download(os.fspath(source), filename, subfolder=subfolder or None, **hub_kwargs)
    except (OSError, ValueError, EntryNotFoundError):  # missing file, repo or revision; offline without the file
        return None


def _read_json(path: str, what: str) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read {what}: {error}") from None


def read_diffusers_config(
    source: str | os.PathLike, subfolder: str | None = None, **hub_kwargs
) -> dict[str, Any] | None:
    """The config dict of the diffusers model in a local folder or Hub repo (`config.json` with `_class_name`), or
    `None` when there is none there. A diffusers pipeline (`model_index.json`, no `config.json`) is a `UsageError`
    naming its autoencoder subfolders.

    Args:
        source: a local folder or a Hub repo id.
        subfolder: the model's subfolder, e.g. "vqvae".
        hub_kwargs: `revision`, `token`, `local_files_only`, `cache_dir`, `force_download` for `hf_hub_download`.
    """
    hub_kwargs = {
        key: hub_kwargs[key] for key in HUB_KWARGS if key in hub_kwargs and key not in ("subfolder", "variant")
    }
    path = _fetch(source, DIFFUSERS_CONFIG_NAME, subfolder, **hub_kwargs)
    if path is None:
        index = _fetch(source, PIPELINE_INDEX_NAME, subfolder, **hub_kwargs)
        if index is None:
            return None
        components = _read_json(index, f"{source}/{PIPELINE_INDEX_NAME}")
        models = sorted(
            name for name, value in components.items()
            if isinstance(value, list) and len(value) == 2 and value[1] in CONFIG_KEYS
        )  # fmt: skip
        raise UsageError(
            f"{source} is a diffusers pipeline, not a model: pass `subfolder=` naming its autoencoder "
            f"({', '.join(models) or 'it has no VQModel or AutoencoderKL'})"
        )
    config = _read_json(path, f"{source} {DIFFUSERS_CONFIG_NAME}")
    return config if isinstance(config, dict) and "_class_name" in config else None


def load_diffusers_model(
    source: str | os.PathLike, class_name: str, subfolder: str | None = None, variant: str | None = None, **hub_kwargs
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The config dict and the weights of a diffusers `class_name` ("VQModel" or "AutoencoderKL") in a local folder
    or Hub repo, read from safetensors only (one file, or shards with their index).

    Raises a `UsageError` naming `_class_name` when the folder holds another class, and one naming the weights file
    when it is missing (pickled weights are never read).
    """
    hub_kwargs = {key: hub_kwargs[key] for key in HUB_KWARGS if key in hub_kwargs}
    where = f"{source}" + (f" (subfolder {subfolder!r})" if subfolder else "")
    config = read_diffusers_config(source, subfolder, **hub_kwargs)
    if config is None:
        raise UsageError(f"{where}: no diffusers {DIFFUSERS_CONFIG_NAME} (with `_class_name`) there")
    if config["_class_name"] != class_name:
        raise UsageError(f"{where}: `_class_name` is {config['_class_name']!r}; expected {class_name!r}")
    name = DIFFUSERS_WEIGHTS_NAME if variant is None else DIFFUSERS_WEIGHTS_NAME.replace(".safe", f".{variant}.safe")
    path = _fetch(source, name, subfolder, **hub_kwargs)
    if path is not None:
        return config, load_file(path)
    index = _fetch(source, f"{name}.index.json", subfolder, **hub_kwargs)
    if index is None:
        raise UsageError(
            f"{where}: no {name} (hf_vq reads diffusers weights from safetensors only, never pickled "
            "`diffusion_pytorch_model.bin`)"
        )
    state_dict: dict[str, torch.Tensor] = {}
    for shard in sorted(set(_read_json(index, f"{where} {name}.index.json")["weight_map"].values())):
        shard_path = _fetch(source, shard, subfolder, **hub_kwargs)
        if shard_path is None:
            raise UsageError(f"{where}: the weights shard {shard} named in {name}.index.json is missing")
        state_dict.update(load_file(shard_path))
    return config, state_dict


def diffusers_from_pretrained_kwargs(kwargs: dict[str, Any]) -> tuple[dict[str, Any], torch.dtype | None, dict]:
    """`from_pretrained` keyword arguments split for a diffusers folder: where the files are (`HUB_KWARGS`), the
    dtype (`dtype` or `torch_dtype`), and the rest (config fields to override). `use_safetensors` and
    `trust_remote_code` do not apply and are dropped."""
    # transformers' loading options (and the config the Auto classes pass) that do not apply to a converted model
    ignored = ("use_safetensors", "trust_remote_code", "device_map", "low_cpu_mem_usage", "attn_implementation",
               "config", "output_loading_info")  # fmt: skip
    rest = {key: value for key, value in kwargs.items() if key not in ignored}
    hub_kwargs = {key: rest.pop(key) for key in HUB_KWARGS if key in rest}
    dtype = rest.pop("dtype", None) or rest.pop("torch_dtype", None)
    rest.pop("torch_dtype", None)
    if isinstance(dtype, str) and dtype != "auto":
        dtype = getattr(torch, dtype)
    return hub_kwargs, (None if dtype == "auto" else dtype), rest


__all__ = [
    "AUTOENCODER_KL_CONFIG_KEYS",
    "CONFIG_KEYS",
    "DIFFUSERS_WEIGHTS_NAME",
    "HUB_KWARGS",
    "VQ_MODEL_CONFIG_KEYS",
    "autoencoder_kl_config_from_vae",
    "autoencoder_kl_from_vae",
    "check_diffusers_config_keys",
    "diffusers_config_kwargs",
    "diffusers_from_pretrained_kwargs",
    "load_diffusers_model",
    "read_diffusers_config",
    "vae_config_from_autoencoder_kl",
    "vq_model_config_from_vqgan",
    "vq_model_from_vqgan",
    "vq_model_state_dict",
]
