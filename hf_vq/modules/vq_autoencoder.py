"""What every VQ autoencoder shares: its output, and the index interface used by the prior.

A family model provides `encode(pixel_values)` (pre-quantization latents), `self.quantize` (a `VectorQuantizer` or
`FSQ`) and `decode_quantized(quantized)`; this mixin adds `forward`, `decode`, `encode_indices` and
`decode_indices` on top, the same for the VQ-VAE and the VQ-GAN.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput

from .quantizers import FSQ, VectorQuantizer, check_indices


@dataclass
class VQAutoencoderOutput(ModelOutput):
    """
    Args:
        reconstruction: (B, out_channels, H, W) decoded images in [-1, 1] units.
        quantized: (B, vq_embed_dim, h, w) quantized latents (straight-through gradient to the encoder).
        indices: (B, h, w) int64 code indices.
        codebook_loss: () `||sg[z_e] - e||^2` (0 with an EMA codebook or FSQ).
        commitment_loss: () `||z_e - sg[e]||^2`, unweighted.
        quantizer_loss: () `codebook_loss + vq_beta * commitment_loss`, the term to add to the reconstruction loss.
        perplexity: () exp(entropy) of this batch's code histogram.
        usage: () fraction of codes used in this batch.
    """

    reconstruction: torch.Tensor | None = None
    quantized: torch.Tensor | None = None
    indices: torch.Tensor | None = None
    codebook_loss: torch.Tensor | None = None
    commitment_loss: torch.Tensor | None = None
    quantizer_loss: torch.Tensor | None = None
    perplexity: torch.Tensor | None = None
    usage: torch.Tensor | None = None


class VQAutoencoderMixin:
    """`forward`, `decode`, `encode_indices` and `decode_indices` for a model with `encode`, `quantize` and
    `decode_quantized`."""

    quantize: VectorQuantizer | FSQ

    def forward(self, pixel_values: torch.Tensor) -> VQAutoencoderOutput:
        """Encode, quantize, decode. In training mode the quantizer also maintains its codebook (EMA, k-means,
        dead-code restarts).

        Args:
            pixel_values: (B, in_channels, H, W) images in [-1, 1]; H and W divisible by the downsampling factor.
        """
        quantizer_output = self.quantize(self.encode(pixel_values))
        return VQAutoencoderOutput(
            reconstruction=self.decode_quantized(quantizer_output.quantized),
            quantized=quantizer_output.quantized,
            indices=quantizer_output.indices,
            codebook_loss=quantizer_output.codebook_loss,
            commitment_loss=quantizer_output.commitment_loss,
            quantizer_loss=quantizer_output.loss,
            perplexity=quantizer_output.perplexity,
            usage=quantizer_output.usage,
        )

    def decode(self, latents: torch.Tensor, quantize: bool = True) -> torch.Tensor:
        """Latents (B, vq_embed_dim, h, w) -> images; quantized first unless `quantize=False` (as diffusers'
        `VQModel.decode`, so that `decode(encode(x))` reconstructs x)."""
        if quantize:
            latents = self.quantize(latents).quantized
        return self.decode_quantized(latents)

    @torch.no_grad()
    def encode_indices(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) in [-1, 1] -> code indices (B, H/f, W/f) int64."""
        return self.quantize(self.encode(pixel_values)).indices

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Code indices (B, h, w) in [0, num_vq_embeddings) -> images (B, out_channels, h*f, w*f).

        In evaluation mode, `decode_indices(encode_indices(x))` equals `forward(x).reconstruction` exactly.
        """
        check_indices(indices, self.quantize.num_embeddings)
        return self.decode_quantized(self.quantize.embed_indices(indices))
