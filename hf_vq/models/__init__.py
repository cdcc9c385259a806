from .autoencoder import AutoencoderConfig, AutoencoderModel, AutoencoderOutput
from .discriminator import PatchDiscriminator, PatchDiscriminatorConfig
from .modeling_code_prior import CodePriorMixin
from .modeling_vq import VQAutoencoderOutput, VQPreTrainedModel
from .pixelcnn_prior import PixelCNNPriorConfig, PixelCNNPriorModel, PixelCNNPriorOutput
from .prior import VQPriorConfig, VQPriorForCausalLM
from .sequence_vae import SequenceVAEConfig, SequenceVAEModel, SequenceVAEOutput
from .vae import VAEConfig, VAEModel, VAEOutput
from .vqgan import VQGANConfig, VQGANModel
from .vqvae import VQVAEConfig, VQVAEModel

# model_type -> model class, for the Auto classes (each class names its own: `auto_class_name`), run cards and
# the conversion scripts.
MODEL_CLASSES = {
    model_class.config_class.model_type: model_class
    for model_class in (
        AutoencoderModel,
        VAEModel,
        VQVAEModel,
        VQGANModel,
        PatchDiscriminator,
        VQPriorForCausalLM,
        PixelCNNPriorModel,
        SequenceVAEModel,
    )
}

__all__ = [
    "MODEL_CLASSES",
    "AutoencoderConfig",
    "AutoencoderModel",
    "AutoencoderOutput",
    "CodePriorMixin",
    "PatchDiscriminator",
    "PatchDiscriminatorConfig",
    "PixelCNNPriorConfig",
    "PixelCNNPriorModel",
    "PixelCNNPriorOutput",
    "SequenceVAEConfig",
    "SequenceVAEModel",
    "SequenceVAEOutput",
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
