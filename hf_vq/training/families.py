"""The trainable families, as data: what each one trains on, minimizes, and shows.

A new family adds its config and model classes, its objective (`objectives.py`) and one `Family` entry below; the
loop (`trainer.py`) does not change. A new kind of data (token sequences, say) adds a `Trainer` subclass that
implements the data hooks, named in `TRAINERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedConfig, PreTrainedModel
from transformers.pytorch_utils import Conv1D

from ..models import (
    AutoencoderConfig,
    AutoencoderModel,
    PixelCNNPriorConfig,
    PixelCNNPriorModel,
    SequenceVAEConfig,
    SequenceVAEModel,
    VAEConfig,
    VAEModel,
    VQGANConfig,
    VQGANModel,
    VQPriorConfig,
    VQPriorForCausalLM,
    VQVAEConfig,
    VQVAEModel,
)
from ..utils.errors import UsageError
from .image_trainer import ImageTrainer
from .objectives import (
    Objective,
    causal_lm_objective,
    image_objective,
    pixelcnn_objective,
    sequence_vae_objective,
    vae_objective,
)
from .prior_trainer import PriorTrainer
from .sequence_trainer import SequenceTrainer
from .trainer import Trainer

ParameterGroups = Callable[[torch.nn.Module], list[Any]]


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """Every trainable parameter in one group (weight decay, if any, applies to all)."""
    return [p for p in model.parameters() if p.requires_grad]


def decay_linear_weights(model: torch.nn.Module) -> list[dict[str, Any]]:
    """Weight decay on the weights of the linear layers only (minGPT / taming): not on biases, layer norms, token
    and position embeddings (GPT-2's output layer shares the token embedding)."""
    decay = {id(module.weight) for module in model.modules() if isinstance(module, (Conv1D, torch.nn.Linear))}
    decay.discard(id(model.get_input_embeddings().weight))
    parameters = trainable_parameters(model)
    return [
        {"params": [p for p in parameters if id(p) in decay]},
        {"params": [p for p in parameters if id(p) not in decay], "weight_decay": 0.0},
    ]


# What a family trains on -> the trainer that reads that data.
TRAINERS: dict[str, type[Trainer]] = {"images": ImageTrainer, "codes": PriorTrainer, "sequences": SequenceTrainer}


@dataclass(frozen=True)
class Family:
    """A trainable model family.

    Args:
        name: the family's name (`training/train_<name>.py`).
        config_class, model_class: the config and model classes it builds.
        objective: batch -> named loss terms (`hf_vq.training.objectives`).
        data: what it trains on, a key of `TRAINERS`: "images", "codes" (a code dataset of `encode_dataset`) or
            "sequences" (token sequences, cut into windows: melodies).
        adversarial: a patch discriminator trains beside it (taming's GAN loss, `hf_vq.training.adversarial`).
        samples_from_model: its sample grids add a row drawn by `model.sample(n)` (the VAE's prior).
        parameter_groups: the optimizer's parameter groups of a model.
    """

    name: str
    config_class: type[PreTrainedConfig]
    model_class: type[PreTrainedModel]
    objective: Objective
    data: str = "images"
    adversarial: bool = False
    samples_from_model: bool = False
    parameter_groups: ParameterGroups = trainable_parameters

    def __post_init__(self):
        if self.data not in TRAINERS:
            raise UsageError(f"Family {self.name!r}: data {self.data!r} is not one of {sorted(TRAINERS)}")

    @property
    def trainer_class(self) -> type[Trainer]:
        return TRAINERS[self.data]


FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family("autoencoder", AutoencoderConfig, AutoencoderModel, image_objective("l2")),
        Family("vae", VAEConfig, VAEModel, vae_objective, samples_from_model=True),
        Family("vqvae", VQVAEConfig, VQVAEModel, image_objective("l2", quantizer=True)),
        Family("vqgan", VQGANConfig, VQGANModel, image_objective("l1", quantizer=True), adversarial=True),
        Family(
            "prior",
            VQPriorConfig,
            VQPriorForCausalLM,
            causal_lm_objective,
            data="codes",
            parameter_groups=decay_linear_weights,
        ),
        Family("pixelcnn_prior", PixelCNNPriorConfig, PixelCNNPriorModel, pixelcnn_objective, data="codes"),
        Family("sequence_vae", SequenceVAEConfig, SequenceVAEModel, sequence_vae_objective, data="sequences"),
    )
}
