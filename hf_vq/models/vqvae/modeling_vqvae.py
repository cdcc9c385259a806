"""VQ-VAE with the architecture of the paper (van den Oord et al. 2017, sec. 4.1).

`forward`, `encode_indices` and `decode_indices` are the VQ models' shared ones, in `VQPreTrainedModel`
(`..modeling_vq`); this file builds the network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...modules.checks import check_feature_maps, check_pixel_values
from ...modules.quantizers import build_quantizer
from ..modeling_utils import HubMixin
from ..modeling_vq import VQPreTrainedModel
from .configuration_vqvae import VQVAEConfig


class VQVAEResidualStack(nn.Module):
    """Residual blocks `x + conv1x1(relu(conv3x3(relu(x))))`, then a ReLU (the paper's residual 3x3 blocks)."""

    def __init__(self, channels: int, hidden_channels: int, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(
                nn.ReLU(),
                nn.Conv2d(channels, hidden_channels, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(hidden_channels, channels, 1),
            )
            for _ in range(num_layers)
        )

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            hidden = hidden + layer(hidden)
        return F.relu(hidden)


class VQVAEEncoder(nn.Module):
    """Images (B, in, H, W) -> features (B, hidden, H/f, W/f): stride-2 4x4 convs, a 3x3 conv, residual blocks."""

    def __init__(self, config: VQVAEConfig):
        super().__init__()
        hidden = config.hidden_channels
        channels = [config.in_channels] + [hidden // 2] * (config.num_downsamples - 1) + [hidden]
        self.downsamplers = nn.ModuleList(
            nn.Conv2d(c_in, c_out, 4, stride=2, padding=1) for c_in, c_out in zip(channels, channels[1:], strict=False)
        )
        self.conv = nn.Conv2d(hidden, hidden, 3, padding=1)
        self.residual_stack = VQVAEResidualStack(hidden, config.residual_hidden_channels, config.num_residual_layers)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        hidden = pixel_values
        for downsample in self.downsamplers:
            hidden = F.relu(downsample(hidden))  # halves H and W
        return self.residual_stack(self.conv(hidden))


class VQVAEDecoder(nn.Module):
    """Quantized latents (B, D, h, w) -> images (B, out, h*f, w*f): a 3x3 conv, residual blocks, stride-2 4x4
    transposed convs (no activation after the last: the output is the image)."""

    def __init__(self, config: VQVAEConfig):
        super().__init__()
        hidden = config.hidden_channels
        self.conv_in = nn.Conv2d(config.vq_embed_dim, hidden, 3, padding=1)
        self.residual_stack = VQVAEResidualStack(hidden, config.residual_hidden_channels, config.num_residual_layers)
        channels = [hidden] + [hidden // 2] * (config.num_downsamples - 1) + [config.out_channels]
        self.upsamplers = nn.ModuleList(
            nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)
            for c_in, c_out in zip(channels, channels[1:], strict=False)
        )

    def forward(self, quantized: torch.Tensor) -> torch.Tensor:
        hidden = self.residual_stack(self.conv_in(quantized))
        for i, upsample in enumerate(self.upsamplers):
            hidden = upsample(hidden)  # doubles H and W
            if i < len(self.upsamplers) - 1:
                hidden = F.relu(hidden)
        return hidden


class VQVAEPreTrainedModel(HubMixin, VQPreTrainedModel):
    config_class = VQVAEConfig
    base_model_prefix = "vqvae"


class VQVAEModel(VQVAEPreTrainedModel):
    """VQ-VAE: encoder, 1x1 `quant_conv` to `vq_embed_dim`, quantizer, decoder.

    `forward(pixel_values)` returns a `VQAutoencoderOutput`; `encode_indices` / `decode_indices` map images to code
    grids (B, H/f, W/f) and back.

    Args:
        config: the model's `VQVAEConfig`.
    """

    def __init__(self, config: VQVAEConfig):
        super().__init__(config)
        self.encoder = VQVAEEncoder(config)
        self.quant_conv = nn.Conv2d(config.hidden_channels, config.vq_embed_dim, 1)
        self.quantize = build_quantizer(config)
        self.decoder = VQVAEDecoder(config)
        self.post_init()

    def encode(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) in [-1, 1] -> unquantized latents (B, vq_embed_dim, H/f, W/f)."""
        check_pixel_values(pixel_values, self.config)
        return self.quant_conv(self.encoder(pixel_values))

    def decode_quantized(self, quantized: torch.Tensor) -> torch.Tensor:
        """Quantized latents (B, vq_embed_dim, h, w) -> images (B, out_channels, h*f, w*f)."""
        check_feature_maps(quantized, "latents", self.config.vq_embed_dim, "vq_embed_dim")
        return self.decoder(quantized)
