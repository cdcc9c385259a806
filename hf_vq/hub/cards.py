"""Model cards: rendering and checking.

A card is a pure function of the config, the training arguments, the dataset id and the metrics
(`render_model_card`, `render_pipeline_card`), rendered by `ModelCard.from_template` from the Jinja templates in the
top-level `model_cards/` (installed as `hf_vq/model_cards/`): `macros.md` (pieces shared by every card) + `header.md`
+ the family's template (chosen by `config.model_type`) + `footer.md`.

This module is part of the code exported to the Hub with a model (`hf_vq.hub.remote_code`), so at module level it
imports only the standard library, huggingface_hub and the flat-exportable `hf_vq.utils.configuration_utils`; the
templates themselves ship with the hf_vq package only.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import TYPE_CHECKING, Any, NamedTuple

from huggingface_hub import EvalResult, ModelCard, ModelCardData, get_token

from ..utils.configuration_utils import latent_side
from ..utils.errors import UsageError
from ..utils.paths import BUILTIN_PREFIX, is_local

if TYPE_CHECKING:
    from transformers import PretrainedConfig

# The installed package that holds the templates (the top-level `model_cards/` of the repository).
TEMPLATES_PACKAGE = "hf_vq.model_cards"
CARD_PARTS = ("macros.md", "header.md", "{body}.md", "footer.md")


class FamilyCard(NamedTuple):
    """How the card of one model_type is made."""

    template: str  # model_cards/<template>.md
    tags: list[str]
    pipeline_tag: str  # a Hub task id (huggingface.js `PIPELINE_DATA`), `other` where none fits
    task: tuple[str, str]  # (task type: a Hub task id, task name) of its evaluation results
    model_class: str  # the hf_vq class that loads it, named in the pipeline card
    auto_class: str = "AutoModel"  # the transformers Auto class named in the cards' usage


RECONSTRUCTION = ("image-to-image", "Image reconstruction")
GENERATION = "unconditional-image-generation"  # the Hub's one task for image generation without a text prompt
FAMILY_CARDS = {
    "hf_vq_autoencoder": FamilyCard(
        "autoencoder", ["autoencoder"], "image-to-image", RECONSTRUCTION, "AutoencoderModel"
    ),
    "hf_vq_vae": FamilyCard("vae", ["vae"], "image-to-image", RECONSTRUCTION, "VAEModel"),
    "hf_vq_vqvae": FamilyCard("vqvae", ["vq-vae", "image-tokenizer"], "image-to-image", RECONSTRUCTION, "VQVAEModel"),
    "hf_vq_vqgan": FamilyCard("vqgan", ["vq-gan", "image-tokenizer"], "image-to-image", RECONSTRUCTION, "VQGANModel"),
    "hf_vq_prior": FamilyCard(
        "prior", ["vq-prior", "image-generation"], GENERATION, (GENERATION, "Image code modelling"),
        "VQPriorForCausalLM", "AutoModelForCausalLM",
    ),
    "hf_vq_pixelcnn_prior": FamilyCard(
        "pixelcnn_prior", ["vq-prior", "pixelcnn", "image-generation"], GENERATION,
        (GENERATION, "Image code modelling"), "PixelCNNPriorModel",
    ),
    # No Hub task fits a model of music tokens that is no text model: `other`.
    "hf_vq_sequence_vae": FamilyCard(
        "sequence_vae", ["sequence-vae", "music-vae", "music"], "other", ("other", "Melody reconstruction"),
        "SequenceVAEModel",
    ),
}  # fmt: skip
# Metrics (without their `eval_` prefix) that go into `model-index`: metric type and readable name.
INDEXED_METRICS = {
    "psnr": ("psnr", "PSNR (dB)"),
    "ssim": ("ssim", "SSIM"),
    "lpips": ("lpips", "LPIPS distance"),
    "codebook_usage": ("codebook_usage", "Codebook usage"),
    "bits_per_dim": ("bits_per_dim", "Bits per dimension"),
    "bits_per_dim_uniform_prior": ("bits_per_dim", "Bits per dimension (uniform prior)"),
    "rfid": ("rfid", "rFID"),
    "fid": ("fid", "FID"),
    "nll_per_code": ("nll", "NLL per code (nats)"),
    "sample_class_accuracy": ("accuracy", "Class accuracy of samples"),
    "accuracy": ("accuracy", "Token accuracy (teacher forced)"),
    "sampled_accuracy": ("accuracy", "Token accuracy (sampled, from the posterior mean)"),
    "negative_elbo": ("negative_elbo", "Negative ELBO (nats per sequence)"),
}
# Records of the run in metrics.json that describe training, not the model's quality.
TRAINING_RECORDS = (
    "step", "train_images_per_second", "nonfinite_steps_skipped", "data_skipped", "eval_split", "eval_held_out_files",
    "eval_skipped",
)  # fmt: skip
# Training arguments shown in a card, by section of training_args.json.
CARD_SETTINGS = {
    "training": (
        "dataset", "dataset_config", "dataset_split", "resolution", "random_flip", "max_train_steps",
        "train_batch_size", "gradient_accumulation_steps", "learning_rate", "scale_lr", "lr_scheduler",
        "lr_warmup_steps", "adam_beta1", "adam_beta2", "adam_weight_decay", "max_grad_norm", "mixed_precision",
        "reconstruction_loss", "perceptual_weight", "codebook_weight", "seed",
    ),
    "gan": ("disc_start", "disc_weight", "disc_loss", "disc_learning_rate", "lecam_weight"),
    "prior": ("prior_type", "class_dropout_prob"),
}  # fmt: skip
# A Hugging Face access token (user or organization), which must never reach a card.
TOKEN_PATTERN = re.compile(r"\bhf_[A-Za-z0-9]{30,}\b")


def card_template(body: str) -> str:
    """The Jinja template of one card: the shared parts around `model_cards/<body>.md`."""
    try:
        folder = resources.files(TEMPLATES_PACKAGE)
    except ModuleNotFoundError as error:  # e.g. a model loaded with trust_remote_code, without hf_vq installed
        raise ModuleNotFoundError(
            "the hf_vq model card templates are not installed here (hf_vq cannot be imported); `pip install hf_vq`, "
            "or pass your own card as `model_card=`"
        ) from error
    return "".join((folder / part.format(body=body)).read_text() for part in CARD_PARTS)


def card_metrics(metrics: dict[str, Any] | None) -> dict[str, Any]:
    """The quality metrics of a run's metrics.json (scalars, `eval_` prefix dropped), without its training records."""
    return {
        name.removeprefix("eval_"): value
        for name, value in (metrics or {}).items()
        if name not in TRAINING_RECORDS and isinstance(value, (int, float, str)) and not isinstance(value, bool)
    }


def training_setup(training_args: dict[str, Any] | None, metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    """The settings of a run worth a reader's time, from its training_args.json (and steps from metrics.json)."""
    if not training_args:
        return {}
    setup: dict[str, Any] = {}
    for section, names in CARD_SETTINGS.items():
        values = training_args.get(section) or {}
        setup.update({name: values[name] for name in names if values.get(name) is not None})
    if not (training_args.get("training") or {}).get("lpips_weights"):
        setup.pop("perceptual_weight", None)
    if training_args.get("num_processes"):
        setup["num_processes"] = training_args["num_processes"]
    if metrics and "step" in metrics:
        setup["steps_trained"] = metrics["step"]
    return setup


def _render(
    body: str,
    *,
    repo_id: str,
    tags: list[str],
    task: tuple[str, str],
    pipeline_tag: str,
    metrics: dict[str, Any] | None,
    dataset: str | None,
    training_args: dict[str, Any] | None,
    base_model: str | None,
    license: str,
    eval_description: str | None = None,
    **template_values: Any,
) -> ModelCard:
    """Render `model_cards/<body>.md` with the metadata, metrics and training setup every card has, and check it."""
    shown = card_metrics(metrics)
    # The split evaluated on: a held-out part of the training files (metrics.json's `eval_split`) or the run's flag.
    split = (metrics or {}).get("eval_split") or ((training_args or {}).get("training") or {}).get("eval_split")
    # A local folder or a builtin dataset is no Hub dataset (the card is rendered where the run's data is): it is
    # described in the card's text only, and the model-index (whose dataset must be a Hub id) is left out.
    on_hub = dataset is not None and not dataset.startswith(BUILTIN_PREFIX) and not is_local(dataset)
    eval_results = [
        EvalResult(
            task_type=task[0],
            task_name=task[1],
            dataset_type=dataset,
            dataset_name=dataset,
            dataset_split=split,
            metric_type=INDEXED_METRICS[name][0],
            metric_name=INDEXED_METRICS[name][1],
            metric_value=round(float(value), 4),
        )
        for name, value in shown.items()
        if name in INDEXED_METRICS and on_hub
    ]
    model_name = repo_id.split("/")[-1]
    card_data = ModelCardData(
        library_name="hf_vq",
        license=license,
        tags=["hf_vq", *tags],
        datasets=[dataset] if on_hub else None,
        pipeline_tag=pipeline_tag,
        base_model=base_model,
        model_name=model_name if eval_results else None,  # the Hub reads model_name with a model-index only
        eval_results=eval_results or None,
    )
    card = ModelCard.from_template(
        card_data,
        template_str=card_template(body),
        repo_id=repo_id,
        model_name=model_name,
        dataset=dataset,
        dataset_kind="hub" if on_hub else "builtin" if dataset and dataset.startswith(BUILTIN_PREFIX) else "local",
        metrics={name: f"{value:.4g}" if isinstance(value, float) else value for name, value in shown.items()},
        training=training_setup(training_args, metrics),
        eval_description=eval_description
        or (f"the `{split}` split of `{dataset}`" if split and dataset else "held-out data"),
        **template_values,
    )
    check_model_card(card)
    return card


def _config_dict(config: PretrainedConfig) -> dict[str, Any]:
    return {**config.to_dict(), "model_type": config.model_type}


def render_model_card(
    config: PretrainedConfig,
    *,
    repo_id: str,
    metrics: dict[str, Any] | None = None,
    dataset: str | None = None,
    training_args: dict[str, Any] | None = None,
    samples_image: str | None = None,
    base_model: str | None = None,
    code_exported: bool = False,
    license: str = "apache-2.0",
    eval_description: str | None = None,
) -> ModelCard:
    """The model card of one hf_vq model (any family, or the prior) from its config, its run's training arguments
    (training_args.json), the dataset id and the metrics (metrics.json). `samples_image` is a repo path."""
    if config.model_type not in FAMILY_CARDS:
        raise UsageError(f"no model card template for model_type {config.model_type!r} ({sorted(FAMILY_CARDS)})")
    body, tags, pipeline_tag, task = FAMILY_CARDS[config.model_type][:4]
    values: dict[str, Any] = {}
    if task == RECONSTRUCTION:  # image autoencoders
        values = {
            "resolution": config.sample_size,
            "latent_size": latent_side(config),
            "downsample": config.downsample_factor,
        }
    return _render(
        body,
        repo_id=repo_id,
        tags=tags,
        task=task,
        pipeline_tag=pipeline_tag,
        metrics=metrics,
        dataset=dataset,
        training_args=training_args,
        base_model=base_model,
        license=license,
        eval_description=eval_description,
        config=_config_dict(config),
        samples_image=samples_image,
        code_exported=code_exported,
        **values,
    )


def render_pipeline_card(
    vq_config: PretrainedConfig,
    prior_config: PretrainedConfig,
    *,
    repo_id: str,
    metrics: dict[str, Any] | None = None,
    dataset: str | None = None,
    training_args: dict[str, Any] | None = None,
    samples_image: str | None = None,
    top_k: int | None = None,
    guidance_scale: float = 1.0,
    code_exported: bool = False,
    license: str = "apache-2.0",
    eval_description: str | None = None,
) -> ModelCard:
    """The model card of a `VQImageGenerationPipeline` from its VQ model's and prior's configs (the rest as in
    `render_model_card`; `top_k` and `guidance_scale` go into the usage snippet)."""
    conditional = bool(prior_config.num_classes)
    height, width = prior_config.token_grid_size
    return _render(
        "pipeline",
        repo_id=repo_id,
        tags=[FAMILY_CARDS[vq_config.model_type].tags[0], "vq-prior", "image-generation"],
        # The Hub has no class-conditional image generation task: a class label is no text prompt.
        task=(GENERATION, "Class-conditional image generation" if conditional else "Unconditional image generation"),
        pipeline_tag=GENERATION,
        metrics=metrics,
        dataset=dataset,
        training_args=training_args,
        base_model=None,
        license=license,
        eval_description=eval_description,
        vq_config=_config_dict(vq_config),
        prior_config=_config_dict(prior_config),
        vq_model_class=FAMILY_CARDS[vq_config.model_type].model_class,
        prior_auto_class=FAMILY_CARDS[prior_config.model_type].auto_class,
        resolution=vq_config.sample_size,
        grid=f"{height}x{width}",
        samples_image=samples_image,
        top_k=top_k,
        guidance_scale=guidance_scale,
        code_exported=code_exported,
    )


def check_model_card(card: ModelCard | str) -> None:
    """Check one of our cards offline the way the Hub reads it (`ModelCard.validate` needs the network): its metadata
    parses, names hf_vq as library and tag and a license, its `model-index` parses into evaluation results, and it
    holds no access token. A `ValueError` names what is wrong."""
    text = str(card)
    data = ModelCard(text).data
    if data.library_name != "hf_vq" or "hf_vq" not in (data.tags or []):
        raise UsageError("model card: the metadata must have library_name hf_vq and the tag hf_vq")
    if not data.license:
        raise UsageError("model card: the metadata has no license")
    if "model-index" in text and not data.eval_results:
        raise UsageError("model card: its model-index does not parse into evaluation results")
    check_no_token(text)


def check_no_token(text: str) -> None:
    """A `ValueError` if `text` (a card about to be written or uploaded) holds a Hugging Face access token: the
    configured one, or anything shaped like one."""
    token = get_token()
    if TOKEN_PATTERN.search(text) or (token and len(token) >= 8 and token in text):
        raise UsageError("model card: it contains a Hugging Face access token; remove it before sharing the card")
