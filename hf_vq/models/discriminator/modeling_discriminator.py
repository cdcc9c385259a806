"""PatchGAN discriminator with the state-dict layout of taming's `NLayerDiscriminator`.

The keys are taming's `loss.discriminator.main.*` without the `loss.discriminator.` prefix, so a taming VQ-GAN
checkpoint's discriminator loads as it is.

BatchNorm under multi-process training: each process normalizes with its own batch statistics. Converting to
`torch.nn.SyncBatchNorm` (`SyncBatchNorm.convert_sync_batchnorm(discriminator)`) is up to the training loop; this
module does not do it, so that it stays usable on one device and on CPU.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import init
from transformers import PreTrainedModel

from ...modules.checks import check_feature_maps
from ..modeling_utils import HubMixin
from .configuration_discriminator import PatchDiscriminatorConfig

_KERNEL_SIZE = 4
_PADDING = 1
_NEGATIVE_SLOPE = 0.2


def _norm_layer(config: PatchDiscriminatorConfig, channels: int) -> nn.Module:
    if config.norm_type == "batch":
        return nn.BatchNorm2d(channels)
    if config.norm_type == "group":
        return nn.GroupNorm(config.norm_num_groups, channels)
    if config.norm_type == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    # "none": an Identity keeps every conv at the same index of `main` whatever the norm (pix2pix does the same).
    return nn.Identity()


class PatchDiscriminatorPreTrainedModel(HubMixin, PreTrainedModel):
    config_class = PatchDiscriminatorConfig
    base_model_prefix = "discriminator"
    main_input_name = "pixel_values"

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """taming's `weights_init`: conv weights N(0, 0.02), norm scales N(1, 0.02), biases 0.

        The `torch.nn.init` functions skip parameters already loaded from a checkpoint when transformers calls this.
        """
        if isinstance(module, nn.Conv2d):
            init.normal_(module.weight, 0.0, 0.02)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)) and module.weight is not None:
            init.normal_(module.weight, 1.0, 0.02)
            init.zeros_(module.bias)
            if getattr(module, "running_mean", None) is not None:
                init.zeros_(module.running_mean)
                init.ones_(module.running_var)
                init.zeros_(module.num_batches_tracked)


class PatchDiscriminator(PatchDiscriminatorPreTrainedModel):
    """PatchGAN discriminator: images (B, C, H, W) -> one real/fake logit per patch (B, 1, h, w).

    With 3 layers the map is (H/8 - 2) x (W/8 - 2) and each logit sees a 70x70 patch. Save it next to the generator
    (`save_pretrained(output_dir / "discriminator")`) to resume adversarial training.

    Args:
        config: the model's `PatchDiscriminatorConfig`.
    """

    def __init__(self, config: PatchDiscriminatorConfig):
        super().__init__(config)
        channels = config.layer_channels
        layers: list[nn.Module] = [
            nn.Conv2d(config.in_channels, channels[0], _KERNEL_SIZE, stride=2, padding=_PADDING),
            nn.LeakyReLU(_NEGATIVE_SLOPE),
        ]
        for n in range(1, config.num_layers + 1):
            stride = 2 if n < config.num_layers else 1  # the last hidden conv keeps the resolution
            layers += [
                nn.Conv2d(
                    channels[n - 1],
                    channels[n],
                    _KERNEL_SIZE,
                    stride=stride,
                    padding=_PADDING,
                    bias=config.norm_type == "none",
                ),
                _norm_layer(config, channels[n]),
                nn.LeakyReLU(_NEGATIVE_SLOPE),
            ]
        layers.append(nn.Conv2d(channels[-1], 1, _KERNEL_SIZE, stride=1, padding=_PADDING))
        self.main = nn.Sequential(*layers)
        self.post_init()

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Images (B, in_channels, H, W) in [-1, 1] -> patch logits (B, 1, h, w); > 0 leans "real"."""
        check_feature_maps(
            pixel_values, "pixel_values", self.config.in_channels, "in_channels", min_size=self.config.min_input_size
        )
        return self.main(pixel_values)
