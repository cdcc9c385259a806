from .autoencoder import AutoencoderConfig, AutoencoderModel, AutoencoderOutput
from .discriminator import PatchDiscriminator, PatchDiscriminatorConfig
from .modeling_vq import VQAutoencoderOutput, VQPreTrainedModel
from .prior import VQPriorConfig, VQPriorForCausalLM
from .vae import VAEConfig, VAEModel, VAEOutput
from .vqgan import VQGANConfig, VQGANModel
from .vqvae import VQVAEConfig, VQVAEModel

# model_type -> model class, for the Auto classes and for the Hub (cards, code export, conversion).
MODEL_CLASSES = {
    model_class.config_class.model_type: model_class
    for model_class in (AutoencoderModel, VAEModel, VQVAEModel, VQGANModel, PatchDiscriminator, VQPriorForCausalLM)
}
# model_type -> the transformers Auto class that loads it.
AUTO_CLASSES = {
    model_type: "AutoModelForCausalLM" if model_class is VQPriorForCausalLM else "AutoModel"
    for model_type, model_class in MODEL_CLASSES.items()
}

__all__ = [
    "AUTO_CLASSES",
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
