"""Training arguments: the flags users know from diffusers' example scripts, from the command line or a YAML file.

`--config recipe.yaml` holds training arguments at the top level plus a `model:` section (the model config) and,
for the VQ-GAN, a `discriminator:` section; flags given on the command line override the file.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser

from ..utils.configuration_utils import check_choice, check_float, check_int
from ..utils.errors import UsageError

LR_SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial")
MIXED_PRECISION = ("no", "fp16", "bf16")
TRACKERS = ("tensorboard", "none")


@dataclass
class TrainingArguments:
    """Arguments shared by every training script."""

    output_dir: str | None = field(default=None, metadata={"help": "Where checkpoints, samples and the model go."})
    dataset: str = field(
        default="builtin:digits",
        metadata={"help": "A Hub dataset id, a local imagefolder/parquet folder, or builtin:*"},
    )
    dataset_config: str | None = field(default=None, metadata={"help": "The dataset's configuration name."})
    dataset_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_split: str | None = field(default="test", metadata={"help": "Held-out split for metrics ('none': no eval)."})
    image_column: str = field(default="image", metadata={"help": "Column holding the images."})
    label_column: str | None = field(default=None, metadata={"help": "Column holding class labels, if any."})
    resolution: int | None = field(default=None, metadata={"help": "Training resolution; defaults to sample_size."})
    random_flip: bool = field(default=False, metadata={"help": "Random horizontal flips."})
    shuffle_buffer: int = field(default=1000, metadata={"help": "Size of the streaming shuffle buffer."})
    model_config: str | None = field(default=None, metadata={"help": "JSON or YAML file of the model config."})
    pretrained_model: str | None = field(default=None, metadata={"help": "Path or Hub id to fine-tune from."})
    train_batch_size: int = field(default=16, metadata={"help": "Batch size per process."})
    eval_batch_size: int = field(default=64, metadata={"help": "Batch size for evaluation."})
    max_eval_images: int = field(default=1000, metadata={"help": "Images of the eval split used for metrics."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Micro-batches per optimizer step."})
    max_train_steps: int = field(default=1000, metadata={"help": "Optimizer steps to train for."})
    learning_rate: float = field(default=1e-4, metadata={"help": "Learning rate (per total batch if scale_lr)."})
    scale_lr: bool = field(
        default=False, metadata={"help": "Multiply the learning rate by the total batch size (taming's base_lr)."}
    )
    adam_beta1: float = field(default=0.9, metadata={"help": "Adam beta1 (taming: 0.5)."})
    adam_beta2: float = field(default=0.999, metadata={"help": "Adam beta2 (taming: 0.9)."})
    adam_weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    max_grad_norm: float | None = field(default=1.0, metadata={"help": "Gradient clipping norm (none: off)."})
    lr_scheduler: str = field(default="constant", metadata={"help": f"One of {', '.join(LR_SCHEDULERS)}."})
    lr_warmup_steps: int = field(default=0, metadata={"help": "Warm-up steps of the scheduler."})
    mixed_precision: str = field(default="no", metadata={"help": "no, fp16 or bf16 (the quantizer stays float32)."})
    checkpointing_steps: int = field(default=500, metadata={"help": "Save a resumable state every N steps."})
    checkpoints_total_limit: int | None = field(default=None, metadata={"help": "Keep at most N checkpoints."})
    resume_from_checkpoint: str | None = field(default=None, metadata={"help": "A checkpoint dir or 'latest'."})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Start afresh in an output dir holding an earlier run, deleting its model and checkpoints."},
    )
    seed: int = field(default=0, metadata={"help": "Random seed."})
    report_to: str = field(default="tensorboard", metadata={"help": "tensorboard or none."})
    logging_steps: int = field(default=10, metadata={"help": "Log scalars every N steps."})
    validation_steps: int = field(default=500, metadata={"help": "Write a sample grid every N steps."})
    num_validation_images: int = field(default=8, metadata={"help": "Images in each sample grid."})
    max_nonfinite_steps: int = field(
        default=10, metadata={"help": "Stop after this many consecutive steps with a non-finite loss."}
    )
    reconstruction_loss: str | None = field(
        default=None, metadata={"help": "l1 or l2 pixel loss (default: l1 for the VQ-GAN, as taming; l2 otherwise)."}
    )
    lpips_weights: str | None = field(
        default=None,
        metadata={"help": "LPIPS weights: a local safetensors file or a Hub repo. None: no perceptual loss."},
    )
    perceptual_weight: float = field(default=1.0, metadata={"help": "Weight of the LPIPS term."})
    codebook_weight: float = field(default=1.0, metadata={"help": "Weight of the quantizer's loss (VQ models)."})
    push_to_hub: bool = field(default=False, metadata={"help": "Upload the final model to the Hub."})
    hub_model_id: str | None = field(
        default=None, metadata={"help": "Repo id for --push_to_hub; also writes README.md (the card)."}
    )
    hub_private: bool = field(default=False, metadata={"help": "Create the Hub repository as private."})
    push_discriminator: bool = field(default=False, metadata={"help": "Also upload the discriminator (VQ-GAN)."})
    push_training_args: bool = field(default=False, metadata={"help": "Also upload training_args.json."})
    export_code: bool = field(
        default=False,
        metadata={"help": "Also upload the modeling code with auto_map, for trust_remote_code=True without hf_vq."},
    )

    def __post_init__(self):
        if self.eval_split in ("", "none", "None"):
            self.eval_split = None
        for name in (
            "train_batch_size", "eval_batch_size", "max_eval_images", "gradient_accumulation_steps", "max_train_steps",
            "checkpointing_steps", "logging_steps", "validation_steps", "num_validation_images", "max_nonfinite_steps",
        ):  # fmt: skip
            check_int(name, getattr(self, name), minimum=1)
        check_int("lr_warmup_steps", self.lr_warmup_steps, minimum=0)
        check_int("shuffle_buffer", self.shuffle_buffer, minimum=1)
        if self.resolution is not None:
            check_int("resolution", self.resolution, minimum=1)
        if self.checkpoints_total_limit is not None:
            check_int("checkpoints_total_limit", self.checkpoints_total_limit, minimum=1)
        check_float("learning_rate", self.learning_rate, 0.0, exclusive_minimum=True)
        check_float("perceptual_weight", self.perceptual_weight, minimum=0.0)
        check_float("codebook_weight", self.codebook_weight, minimum=0.0)
        check_choice("lr_scheduler", self.lr_scheduler, LR_SCHEDULERS)
        check_choice("mixed_precision", self.mixed_precision, MIXED_PRECISION)
        check_choice("report_to", self.report_to, TRACKERS)
        check_choice("reconstruction_loss", self.reconstruction_loss, (None, "l1", "l2"))
        if self.push_to_hub and not self.hub_model_id:
            raise UsageError("`--push_to_hub` needs `--hub_model_id` (e.g. org/vqgan-celeba)")


@dataclass
class GANArguments:
    """Arguments of the adversarial part of VQ-GAN training (taming's loss, with its known problems fixed)."""

    disc_start: int = field(
        default=5000, metadata={"help": "Step from which the generator gets the adversarial term (taming: 30001)."}
    )
    disc_train_start: int = field(
        default=0, metadata={"help": "Step from which the discriminator trains (taming froze it until disc_start)."}
    )
    disc_weight: float = field(default=0.8, metadata={"help": "Weight of the adaptive adversarial term."})
    disc_loss: str = field(default="hinge", metadata={"help": "hinge or non_saturating."})
    disc_learning_rate: float | None = field(default=None, metadata={"help": "Defaults to --learning_rate."})
    adaptive_weight_max: float = field(default=1e4, metadata={"help": "Clamp of the adaptive weight."})
    lecam_weight: float = field(default=0.0, metadata={"help": "LeCAM regularization weight (0: off)."})
    lecam_decay: float = field(default=0.99, metadata={"help": "EMA decay of LeCAM's anchors."})

    def __post_init__(self):
        check_int("disc_start", self.disc_start, minimum=0)
        check_int("disc_train_start", self.disc_train_start, minimum=0)
        check_float("disc_weight", self.disc_weight, minimum=0.0)
        check_choice("disc_loss", self.disc_loss, ("hinge", "non_saturating"))
        check_float("adaptive_weight_max", self.adaptive_weight_max, 0.0, exclusive_minimum=True)
        check_float("lecam_weight", self.lecam_weight, minimum=0.0)
        check_float("lecam_decay", self.lecam_decay, 0.0, 1.0, exclusive_minimum=True, exclusive_maximum=True)


# --prior_type -> the family it trains (`hf_vq.training.FAMILIES`).
PRIOR_FAMILIES = {"gpt": "prior", "pixelcnn": "pixelcnn_prior"}


@dataclass
class PriorArguments:
    """Arguments of prior training: which prior, the VQ model whose codes it models, and classifier-free guidance."""

    prior_type: str = field(
        default="gpt",
        metadata={"help": "gpt (a GPT-2 over the raster-ordered codes) or pixelcnn (a gated PixelCNN over the grid)."},
    )
    vq_model: str | None = field(
        default=None,
        metadata={"help": "Path or Hub id of the VQ model (default: the one recorded by encode_dataset.py)."},
    )
    indices_column: str = field(default="indices", metadata={"help": "Column holding the code sequences."})
    class_dropout_prob: float = field(
        default=0.1, metadata={"help": "Probability of replacing the class by BOS (for classifier-free guidance)."}
    )
    sample_top_k: int | None = field(default=None, metadata={"help": "top-k of the validation samples."})
    sample_guidance_scale: float = field(default=1.0, metadata={"help": "Guidance scale of the validation samples."})

    def __post_init__(self):
        check_choice("prior_type", self.prior_type, tuple(PRIOR_FAMILIES))
        check_float("class_dropout_prob", self.class_dropout_prob, 0.0, 1.0)
        if self.sample_top_k is not None:
            check_int("sample_top_k", self.sample_top_k, minimum=1)
        check_float("sample_guidance_scale", self.sample_guidance_scale)


@dataclass
class SequenceArguments:
    """Arguments of sequence training: how the tunes of a melody dataset become windows (`SequenceStream`); the
    window's bars and bar length are the model config's `num_bars` and `bar_length`."""

    tokens_column: str = field(default="tokens", metadata={"help": "Column holding each tune's tokens."})
    transpose: int = field(
        default=0, metadata={"help": "Largest random transposition of a training window, in semitones (0: none)."}
    )
    match_meter: bool = field(
        default=True, metadata={"help": "Cut only tunes whose bar (steps_per_bar) is the model's bar_length."}
    )
    sample_temperature: float = field(default=1.0, metadata={"help": "Temperature of the validation samples."})

    def __post_init__(self):
        check_int("transpose", self.transpose, minimum=0)
        check_float("sample_temperature", self.sample_temperature, 0.0, exclusive_minimum=True)


@dataclass
class ParsedArguments:
    training: TrainingArguments
    gan: GANArguments | None
    model_config: dict[str, Any]
    discriminator_config: dict[str, Any]
    prior: PriorArguments | None = None
    sequence: SequenceArguments | None = None


def load_config_file(path: str | Path, flag: str = "--config") -> dict[str, Any]:
    """A JSON or YAML file as a dict, with a clear error naming `flag` for anything else."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UsageError(f"{flag}: no such file: {path}")
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as error:
        raise UsageError(f"config file {path}, line {error.lineno}: {error.msg}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise UsageError(f"config file {path}{where}: {problem}") from None
    if not isinstance(data, dict):
        raise UsageError(f"config file {str(path)!r} must hold a mapping of field names to values")
    return data


def parse_arguments(
    with_gan: bool = False, argv: list[str] | None = None, with_prior: bool = False, with_sequence: bool = False
) -> ParsedArguments:
    """Parse `--config FILE` (optional), then the command line over it."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, rest = pre.parse_known_args(argv)
    file_values = load_config_file(known.config) if known.config else {}
    model_config = dict(file_values.pop("model", None) or {})
    discriminator_config = dict(file_values.pop("discriminator", None) or {})

    dataclasses_ = (TrainingArguments,)
    dataclasses_ += (GANArguments,) if with_gan else ()
    dataclasses_ += (PriorArguments,) if with_prior else ()
    dataclasses_ += (SequenceArguments,) if with_sequence else ()
    parser = HfArgumentParser(dataclasses_)
    parser.add_argument(
        "--config", default=None, help="YAML/JSON recipe: training arguments, `model:`, `discriminator:`"
    )
    allowed = {f.name for dc in dataclasses_ for f in fields(dc)}
    unknown = sorted(set(file_values) - allowed)
    if unknown:
        raise UsageError(f"unknown training arguments in {known.config}: {unknown}")
    parser.set_defaults(**file_values)
    namespace = parser.parse_args(rest)
    values = vars(namespace)
    training = TrainingArguments(**{f.name: values[f.name] for f in fields(TrainingArguments)})
    gan = GANArguments(**{f.name: values[f.name] for f in fields(GANArguments)}) if with_gan else None
    prior = PriorArguments(**{f.name: values[f.name] for f in fields(PriorArguments)}) if with_prior else None
    sequence = (
        SequenceArguments(**{f.name: values[f.name] for f in fields(SequenceArguments)}) if with_sequence else None
    )
    if training.output_dir is None:
        raise UsageError("`--output_dir` is required (on the command line or in the --config file)")
    if training.model_config:
        model_config.update(load_config_file(training.model_config, "--model_config"))
    return ParsedArguments(training, gan, model_config, discriminator_config, prior, sequence)
