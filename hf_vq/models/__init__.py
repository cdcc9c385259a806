from .autoencoder import AutoencoderConfig, AutoencoderModel, AutoencoderOutput
from .vae import VAEConfig, VAEModel, VAEOutput

__all__ = ["AutoencoderConfig", "AutoencoderModel", "AutoencoderOutput", "VAEConfig", "VAEModel", "VAEOutput"]
