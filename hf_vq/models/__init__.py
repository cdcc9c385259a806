from .autoencoder import AutoencoderConfig, AutoencoderModel, AutoencoderOutput
from .vae import VAEConfig, VAEModel, VAEOutput
from .vqgan import VQGANConfig, VQGANModel
from .vqvae import VQVAEConfig, VQVAEModel

__all__ = [
    "AutoencoderConfig",
    "AutoencoderModel",
    "AutoencoderOutput",
    "VAEConfig",
    "VAEModel",
    "VAEOutput",
    "VQGANConfig",
    "VQGANModel",
    "VQVAEConfig",
    "VQVAEModel",
]
