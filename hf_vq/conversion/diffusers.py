"""diffusers' `VQModel` and `AutoencoderKL` <-> `VQGANModel` and `VAEModel`: config fields and state-dict keys.

The two layouts are the same network under the same names: a config converts by copying the fields both have (lists
as tuples, as diffusers keeps them), a state dict key for key. Only the quantizer differs: diffusers' `VQModel` has a
plain nearest-neighbour codebook and no training state, so a VQ-GAN converts to it only with a plain codebook, and its
training-state buffers (`QUANTIZER_STATE_KEYS`) are dropped on the way there and set from the codebook on the way back
(`VQPreTrainedModel.load_converted_state_dict`).

The model methods `VQGANModel.from_diffusers` / `to_diffusers` and `VAEModel.from_diffusers` / `to_diffusers` call
these functions. Reached by the models, this module is part of the code exported to the Hub: at module level it
imports only what the models do; diffusers' model classes are imported where they are built.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from ..modules.quantizers import QUANTIZER_STATE_KEYS
from ..utils.errors import UsageError

if TYPE_CHECKING:
    from diffusers import AutoencoderKL, VQModel

# diffusers' `VQModel` config fields that `VQGANConfig` carries under the same name.
VQ_MODEL_CONFIG_KEYS = (
    "in_channels", "out_channels", "down_block_types", "up_block_types", "block_out_channels", "layers_per_block",
    "act_fn", "latent_channels", "sample_size", "num_vq_embeddings", "norm_num_groups", "vq_embed_dim",
    "scaling_factor", "norm_type", "mid_block_add_attention",
)  # fmt: skip
# diffusers' `AutoencoderKL` config fields that `VAEConfig` carries under the same name.
AUTOENCODER_KL_CONFIG_KEYS = (
    "in_channels", "out_channels", "down_block_types", "up_block_types", "block_out_channels", "layers_per_block",
    "act_fn", "latent_channels", "norm_num_groups", "sample_size", "scaling_factor", "shift_factor", "latents_mean",
    "latents_std", "use_quant_conv", "use_post_quant_conv", "mid_block_add_attention",
)  # fmt: skip


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
    if kwargs.get("norm_type", "group") != "group":
        raise UsageError(f"VQModel with norm_type={kwargs['norm_type']!r} (MoVQ) is not supported, only 'group'")
    return kwargs


def vq_model_config_from_vqgan(config: Any) -> dict[str, Any]:
    """diffusers `VQModel` keyword arguments from a `VQGANConfig`.

    Only a plain codebook has a diffusers equivalent: no FSQ, cosine codes or factorized codebook (an EMA codebook
    converts: the EMA only trains it). Raises a `ValueError` for the others.
    """
    if config.quantizer_type != "vq" or config.vq_use_l2_norm or config.vq_codebook_dim is not None:
        raise UsageError(
            "diffusers' VQModel has a plain nearest-neighbour codebook: a model with quantizer_type='fsq', "
            "vq_use_l2_norm=True or vq_codebook_dim set would quantize differently there, so it is not converted"
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


__all__ = [
    "AUTOENCODER_KL_CONFIG_KEYS",
    "VQ_MODEL_CONFIG_KEYS",
    "autoencoder_kl_config_from_vae",
    "autoencoder_kl_from_vae",
    "diffusers_config_kwargs",
    "vae_config_from_autoencoder_kl",
    "vq_model_config_from_vqgan",
    "vq_model_from_vqgan",
    "vq_model_state_dict",
]
