"""Configuration of the variational autoencoder (beta-VAE with free bits)."""

from __future__ import annotations

from ...utils.configuration_utils import ConvAutoencoderConfig, check_float
from ...utils.errors import UsageError


class VAEConfig(ConvAutoencoderConfig):
    r"""
    A VAE with a diagonal Gaussian posterior on the taming / LDM backbone, laid out as diffusers' `AutoencoderKL`
    (see `ConvAutoencoderConfig` for the backbone fields). The defaults are Stable Diffusion's KL-f8 autoencoder.

    Args:
        beta (`float`, defaults to 1.0): weight of the KL term (Higgins et al. 2017); >= 0.
        free_bits (`float`, defaults to 0.0): free information per latent channel, in nats (Kingma et al. 2016,
            "free bits"). The KL of each latent channel, summed over its h x w positions and averaged over the batch,
            is replaced by `max(free_bits, KL)`, so channels under the budget are not pushed further towards the
            prior. >= 0; 0 turns the hinge off.
        use_quant_conv (`bool`, defaults to `True`): a 1x1 conv on the (mean, logvar) moments, as in LDM.
        use_post_quant_conv (`bool`, defaults to `True`): a 1x1 conv on the latents before the decoder.
        scaling_factor, shift_factor, latents_mean, latents_std: carried unchanged to and from diffusers'
            `AutoencoderKL`, where latent diffusion pipelines read them; this model does not use them.
        force_upcast (`bool`, defaults to `True`): carried to and from diffusers' `AutoencoderKL` (pipelines decode
            in float32 with it); unused here.
    """

    model_type = "hf_vq_vae"

    beta: float = 1.0
    free_bits: float = 0.0
    use_quant_conv: bool = True
    use_post_quant_conv: bool = True
    scaling_factor: float = 0.18215
    shift_factor: float | None = None
    latents_mean: list[float] | None = None
    latents_std: list[float] | None = None
    force_upcast: bool = True

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        check_float("beta", self.beta, minimum=0.0)
        check_float("free_bits", self.free_bits, minimum=0.0)
        for name in ("use_quant_conv", "use_post_quant_conv", "force_upcast"):
            if not isinstance(getattr(self, name), bool):
                raise UsageError(f"`{name}` must be a bool, got {getattr(self, name)!r}")
