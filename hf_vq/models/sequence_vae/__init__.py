from .configuration_sequence_vae import SequenceVAEConfig
from .modeling_sequence_vae import SequenceVAEModel, SequenceVAEOutput, beta_schedule, sampling_probability

__all__ = ["SequenceVAEConfig", "SequenceVAEModel", "SequenceVAEOutput", "beta_schedule", "sampling_probability"]
