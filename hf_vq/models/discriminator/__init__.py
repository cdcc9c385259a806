from .configuration_discriminator import PatchDiscriminatorConfig
from .modeling_discriminator import PatchDiscriminator, PatchDiscriminatorPreTrainedModel

__all__ = ["PatchDiscriminator", "PatchDiscriminatorConfig", "PatchDiscriminatorPreTrainedModel"]
