"""Sharing models on the Hugging Face Hub: model cards (`cards`), uploads (`upload`) and the export of modeling code
for `trust_remote_code=True` (`remote_code`).

Below `hf_vq.models`: nothing here imports a model class (a model's `push_to_hub` calls `push_model`). Publishing a
whole training run, which needs the model classes and the pipeline, is `hf_vq.training.publishing`.
"""

from .cards import (
    FAMILY_CARDS,
    INDEXED_METRICS,
    card_metrics,
    card_template,
    check_model_card,
    check_no_token,
    render_model_card,
    render_pipeline_card,
    training_setup,
)
from .remote_code import export_code, export_pipeline_code
from .upload import push_model, upload_to_hub

__all__ = [
    "FAMILY_CARDS",
    "INDEXED_METRICS",
    "card_metrics",
    "card_template",
    "check_model_card",
    "check_no_token",
    "export_code",
    "export_pipeline_code",
    "push_model",
    "render_model_card",
    "render_pipeline_card",
    "training_setup",
    "upload_to_hub",
]
