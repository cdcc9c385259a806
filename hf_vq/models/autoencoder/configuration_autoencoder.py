"""Configuration of the plain, denoising and k-sparse autoencoder."""

from __future__ import annotations

from ...utils.configuration_utils import ConvAutoencoderConfig, check_choice, check_float, check_int
from ...utils.errors import UsageError

CORRUPTIONS = (None, "gaussian", "mask")


class AutoencoderConfig(ConvAutoencoderConfig):
    r"""
    A deterministic autoencoder on the taming / LDM backbone (see `ConvAutoencoderConfig` for the backbone fields),
    optionally denoising (Vincent et al. 2008) and / or k-sparse (Makhzani & Frey 2013).

    Args:
        corruption (`str`, *optional*): input corruption applied in training mode only; the target stays the clean
            image. `None` (plain AE), `"gaussian"` (add N(0, noise_std^2) noise) or `"mask"` (set a random
            `mask_ratio` of the pixels, all channels together, to -1, the zero of [0, 1] pixel space).
        noise_std (`float`, defaults to 0.1): std of the gaussian corruption, in [-1, 1] pixel units; > 0.
        mask_ratio (`float`, defaults to 0.25): fraction of pixels masked by the `"mask"` corruption; in (0, 1).
        sparsity_k (`int`, *optional*): keep the k largest latent activations of each sample (over all channels
            and positions) and zero the rest, in training and evaluation alike. At most the latent size
            `latent_channels * latent_size ** 2`.
    """

    model_type = "hf_vq_autoencoder"

    corruption: str | None = None
    noise_std: float = 0.1
    mask_ratio: float = 0.25
    sparsity_k: int | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        check_choice("corruption", self.corruption, CORRUPTIONS)
        check_float("noise_std", self.noise_std, minimum=0.0, exclusive_minimum=True)
        check_float("mask_ratio", self.mask_ratio, 0.0, 1.0, exclusive_minimum=True, exclusive_maximum=True)
        if self.sparsity_k is not None:
            latent_numel = self.latent_channels * self.latent_size**2
            check_int("sparsity_k", self.sparsity_k, minimum=1)
            if self.sparsity_k > latent_numel:
                raise UsageError(
                    f"`sparsity_k` ({self.sparsity_k}) must be at most the latent size latent_channels * "
                    f"latent_size**2 = {self.latent_channels} * {self.latent_size}**2 = {latent_numel}"
                )
