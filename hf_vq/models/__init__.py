from .autoencoder import AutoencoderConfig, AutoencoderModel, AutoencoderOutput
from .discriminator import PatchDiscriminator, PatchDiscriminatorConfig
from .prior import VQPriorConfig, VQPriorForCausalLM
from .vae import VAEConfig, VAEModel, VAEOutput
from .vqgan import VQGANConfig, VQGANModel
from .vqvae import VQVAEConfig, VQVAEModel

__all__ = [
    "AutoencoderConfig",
    "AutoencoderModel",
    "AutoencoderOutput",
    "PatchDiscriminator",
    "PatchDiscriminatorConfig",
    "VAEConfig",
    "VAEModel",
    "VAEOutput",
    "VQGANConfig",
    "VQGANModel",
    "VQVAEConfig",
    "VQPriorConfig",
    "VQPriorForCausalLM",
    "VQVAEModel",
]
