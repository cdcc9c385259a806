"""The training loop shared by every script in `training/`."""

from __future__ import annotations

import logging

from ..models.discriminator import PatchDiscriminatorConfig
from ..utils.configuration_utils import check_config_keys
from ..utils.errors import UsageError
from .arguments import (
    PRIOR_FAMILIES,
    GANArguments,
    ParsedArguments,
    PriorArguments,
    SequenceArguments,
    TrainingArguments,
    parse_arguments,
)
from .encoding import encode_dataset
from .families import FAMILIES, TRAINERS, Family
from .image_trainer import ImageTrainer
from .prior_trainer import PriorTrainer
from .sequence_trainer import SequenceTrainer
from .trainer import NonFiniteLossError, Trainer


def main(family: str, argv: list[str] | None = None) -> dict:
    """Entry point of `training/train_<family>.py`: parse the arguments, train, return the final metrics."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    if family not in FAMILIES:
        raise UsageError(f"unknown family {family!r}; one of {list(FAMILIES)}")
    spec = FAMILIES[family]
    trainer_class = spec.trainer_class
    parsed = parse_arguments(with_gan=spec.adversarial, argv=argv, with_prior=trainer_class.uses_prior_arguments,
                             with_sequence=trainer_class.uses_sequence_arguments)  # fmt: skip
    if parsed.prior is not None:  # train_prior.py trains either prior: --prior_type names the family
        spec = FAMILIES[PRIOR_FAMILIES[parsed.prior.prior_type]]
    # A typo in the recipe's sections fails here, before the run writes anything, not as a silently ignored field.
    check_config_keys(spec.config_class, parsed.model_config, where="model:")
    check_config_keys(PatchDiscriminatorConfig, parsed.discriminator_config, where="discriminator:")
    return spec.trainer_class(spec, parsed).run()


__all__ = [
    "FAMILIES",
    "PRIOR_FAMILIES",
    "TRAINERS",
    "Family",
    "GANArguments",
    "ImageTrainer",
    "NonFiniteLossError",
    "ParsedArguments",
    "PriorArguments",
    "PriorTrainer",
    "SequenceArguments",
    "SequenceTrainer",
    "Trainer",
    "TrainingArguments",
    "encode_dataset",
    "main",
    "parse_arguments",
]
