"""What every VQ autoencoder shares: its output (`VQAutoencoderOutput`) and its base class (`VQPreTrainedModel`),
which holds `forward`, `decode`, `encode_indices` and `decode_indices`, the interface the priors and the pipeline use.

A family model (`VQGANModel`, `VQVAEModel`) subclasses `VQPreTrainedModel` and provides `encode(pixel_values)` (the
latents before quantization), `self.quantize` (the quantizer `build_quantizer` makes of its config: `VectorQuantizer`,
`FSQ`, `LFQ`, `SimVQ` or `ResidualVectorQuantizer`) and `decode_quantized(quantized)`.

Code grids are (B, h, w) int64 indices, or (B, h, w, depth) with residual quantization (`quantizer_type="residual"`:
`depth` codes per position, stage by stage); `config.codes_per_position` says which.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from ..modules.backbone import init_conv_weights
from ..modules.quantizers import QUANTIZER_STATE_KEYS, Quantizer, ResidualVectorQuantizer, VectorQuantizer
from ..utils.errors import UsageError


@dataclass
class VQAutoencoderOutput(ModelOutput):
    """
    Args:
        reconstruction: (B, out_channels, H, W) decoded images in [-1, 1] units.
        quantized: (B, vq_embed_dim, h, w) quantized latents (straight-through gradient to the encoder).
        indices: (B, h, w) int64 code indices; (B, h, w, depth) with residual quantization.
        codebook_loss: () `||sg[z_e] - e||^2` (0 with an EMA codebook, FSQ or LFQ; summed over residual stages).
        commitment_loss: () `||z_e - sg[e]||^2`, unweighted (summed over residual stages).
        quantizer_loss: () `codebook_loss + vq_beta * commitment_loss` (for LFQ, plus its entropy penalty), the term
            to add to the reconstruction loss.
        perplexity: () exp(entropy) of this batch's code histogram (the mean over the codebooks of residual
            quantization).
        usage: () fraction of codes used in this batch (the mean over the codebooks of residual quantization).
    """

    reconstruction: torch.Tensor | None = None
    quantized: torch.Tensor | None = None
    indices: torch.Tensor | None = None
    codebook_loss: torch.Tensor | None = None
    commitment_loss: torch.Tensor | None = None
    quantizer_loss: torch.Tensor | None = None
    perplexity: torch.Tensor | None = None
    usage: torch.Tensor | None = None


class VQPreTrainedModel(PreTrainedModel):
    """Base of the VQ autoencoders: encode, quantize, decode, and the code-index interface on top.

    Subclasses set `config_class` and `base_model_prefix`, build `self.quantize` and define `encode` and
    `decode_quantized`.
    """

    main_input_name = "pixel_values"
    quantize: Quantizer

    def _init_weights(self, module):
        init_conv_weights(module)

    def encode(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Images (B, in_channels, H, W) in [-1, 1] -> unquantized latents (B, vq_embed_dim, H/f, W/f)."""
        raise NotImplementedError

    def decode_quantized(self, quantized: torch.Tensor) -> torch.Tensor:
        """Quantized latents (B, vq_embed_dim, h, w) -> images (B, out_channels, h*f, w*f)."""
        raise NotImplementedError

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
        """Images (B, C, H, W) in [-1, 1] -> code indices (B, H/f, W/f) int64, or (B, H/f, W/f, depth) with residual
        quantization (`config.codes_per_position` indices per position)."""
        return self.quantize(self.encode(pixel_values)).indices

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Code indices (B, h, w) in [0, num_vq_embeddings) -> images (B, out_channels, h*f, w*f); with residual
        quantization (B, h, w, depth), the stages' indices of each position.

        In evaluation mode, `decode_indices(encode_indices(x))` equals `forward(x).reconstruction` exactly.
        """
        # the quantizer checks the grid (shape, integer dtype, range) before it looks anything up
        return self.decode_quantized(self.quantize.embed_indices(indices))

    def load_converted_state_dict(self, state_dict: dict[str, torch.Tensor], source: str) -> None:
        """Load weights converted from another layout (diffusers', taming's), which has no quantizer training state
        (`QUANTIZER_STATE_KEYS`); the codebook then counts as trained (no k-means over it, an EMA restarts from it).

        Args:
            state_dict: the weights under this model's names.
            source: what they came from, for the error message (e.g. "VQModel").
        """
        missing, unexpected = self.load_state_dict(state_dict, strict=False)
        missing = [key for key in missing if key not in QUANTIZER_STATE_KEYS]
        if missing or unexpected:
            raise UsageError(
                f"{source} does not match {type(self).__name__}: missing {missing}, unexpected {unexpected}"
            )
        if isinstance(self.quantize, (VectorQuantizer, ResidualVectorQuantizer)):
            self.quantize.use_pretrained_codebook()


__all__ = ["VQAutoencoderOutput", "VQPreTrainedModel"]
