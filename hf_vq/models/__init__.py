from .autoencoder import AutoencoderConfig, AutoencoderModel, AutoencoderOutput
from .discriminator import PatchDiscriminator, PatchDiscriminatorConfig
from .modeling_vq import VQAutoencoderOutput, VQPreTrainedModel
from .prior import VQPriorConfig, VQPriorForCausalLM
from .vae import VAEConfig, VAEModel, VAEOutput
from .vqgan import VQGANConfig, VQGANModel
from .vqvae import VQVAEConfig, VQVAEModel

# model_type -> model class, for the Auto classes (each class names its own: `auto_class_name`), run cards and
# the conversion scripts.
MODEL_CLASSES = {
    model_class.config_class.model_type: model_class
    for model_class in (AutoencoderModel, VAEModel, VQVAEModel, VQGANModel, PatchDiscriminator, VQPriorForCausalLM)
}

__all__ = [
    "MODEL_CLASSES",
    "AutoencoderConfig",
    "AutoencoderModel",
    "AutoencoderOutput",
    "PatchDiscriminator",
    "PatchDiscriminatorConfig",
    "VAEConfig",
    "VAEModel",
    "VAEOutput",
    "VQAutoencoderOutput",
    "VQGANConfig",
    "VQGANModel",
    "VQVAEConfig",
    "VQPriorConfig",
    "VQPriorForCausalLM",
    "VQPreTrainedModel",
    "VQVAEModel",
]
