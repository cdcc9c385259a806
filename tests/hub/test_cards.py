"""Model cards: rendering from config, training arguments, dataset and metrics, the checks, and the templates that
ship in the wheel."""

import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest
import torch
from huggingface_hub import ModelCard

import hf_vq
from hf_vq.hub import FAMILY_CARDS, check_model_card, render_model_card, render_pipeline_card
from hf_vq.models import MODEL_CLASSES

from ..conftest import ROOT
from .conftest import METRICS, MODELS, TRAINING_ARGS


def python_blocks(card: ModelCard | str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", str(card), flags=re.S)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_family_has_a_card_whose_metadata_and_results_parse_and_whose_snippet_runs(name, tmp_path, monkeypatch):
    model = MODELS[name]()
    model.save_pretrained(tmp_path / name)
    repo_id = str(tmp_path / name)  # a local folder loads like a repo id: the snippet runs against it
    inputs = dict(repo_id=repo_id, metrics=METRICS, dataset="org/celeba", training_args=TRAINING_ARGS,
                  samples_image="samples/step-10.png")  # fmt: skip
    card = render_model_card(model.config, **inputs)
    assert str(card) == str(render_model_card(model.config, **inputs))  # a pure function of its inputs

    loaded = ModelCard(str(card))  # what the Hub and ModelCard.load read
    data = loaded.data
    assert data.library_name == "hf_vq" and data.license == "apache-2.0" and data.datasets == ["org/celeba"]
    assert data.tags[0] == "hf_vq" and FAMILY_CARDS[model.config.model_type][1][0] in data.tags
    results = {result.metric_type: result for result in data.eval_results}
    assert results["psnr"].metric_value == 25.1235 and results["codebook_usage"].metric_value == 0.75
    assert results["psnr"].dataset_name == "org/celeba" and results["psnr"].dataset_split == "validation"
    assert "![samples](samples/step-10.png)" in str(card)
    assert "| learning_rate | `4.5e-06` |" in str(card) and "| num_processes | `2` |" in str(card)
    assert "| steps_trained | `10` |" in str(card) and "output_dir" not in str(card)  # no local paths
    assert "perceptual_weight" not in str(card)  # no LPIPS in this run
    assert "## Limitations" in str(card) and "trust_remote_code" not in str(card)

    (snippet,) = python_blocks(card)
    namespace: dict = {}
    monkeypatch.chdir(tmp_path)  # a snippet may write a file (melody.mid)
    exec(snippet, namespace)  # the usage snippet runs as written
    if name == "prior":
        assert namespace["codes"].shape == (2, 4, 4)
    elif name == "pixelcnn_prior":
        assert namespace["completed"].shape == (2, 4, 4)
        assert torch.equal(namespace["completed"][:, :, :2], namespace["codes"][:, :, :2])
    elif name == "sequence_vae":
        assert namespace["melodies"].shape == namespace["reconstruction"].shape == (2, 8)
        assert (tmp_path / "melody.mid").is_file()
    else:
        assert namespace["reconstruction"].shape == namespace["images"].shape


def test_the_pipeline_card_and_its_snippet(tmp_path):
    vq, prior = MODELS["vqgan"](), MODELS["prior"]()
    hf_vq.VQImageGenerationPipeline(vq, prior).save_pretrained(tmp_path / "pipe")
    card = render_pipeline_card(vq.config, prior.config, repo_id=str(tmp_path / "pipe"), dataset="builtin:digits",
                                metrics={"bits_per_dim": 4.5, "sample_class_accuracy": 0.9}, top_k=8,
                                guidance_scale=1.5)  # fmt: skip
    data = ModelCard(str(card)).data
    assert data.datasets is None  # a builtin dataset is no Hub dataset
    assert data.eval_results is None and data.model_name is None  # nor a model-index dataset: described in the text
    assert "`builtin:digits`, a small dataset that ships with hf_vq" in str(card) and "| bits_per_dim | 4.5 |" in str(
        card
    )
    assert {"vq-gan", "vq-prior"} <= set(data.tags) and data.pipeline_tag == "unconditional-image-generation"
    on_hub = render_pipeline_card(vq.config, prior.config, repo_id="org/p", dataset="org/digits",
                                  metrics={"bits_per_dim": 4.5, "sample_class_accuracy": 0.9})  # fmt: skip
    results = ModelCard(str(on_hub)).data.eval_results
    assert {r.metric_type: r.metric_value for r in results} == {"bits_per_dim": 4.5, "accuracy": 0.9}
    assert "upper bounds on the negative log-likelihood" in str(card)
    (snippet,) = python_blocks(card)
    os.chdir(tmp_path)  # the snippet saves sample.png
    exec(snippet, {})
    assert (tmp_path / "sample.png").is_file()


def test_templates_share_their_common_parts():
    """Each family template holds only what differs: the usage lines, the shared sections come from macros.md,
    header.md and footer.md."""
    folder = ROOT / "model_cards"
    bodies = {body for body, *_ in FAMILY_CARDS.values()} | {"pipeline"}
    assert {path.stem for path in folder.glob("*.md")} == bodies | {"macros", "header", "footer"}
    for body in bodies:
        text = (folder / f"{body}.md").read_text()
        assert "card_data" not in text and "## Evaluation" not in text and "## Limitations" not in text
        assert "from_pretrained" in text or "vq_usage()" in text or "load_model(" in text


def test_bad_cards_and_tokens_are_refused(tmp_path, monkeypatch):
    config = MODELS["vqgan"]().config
    with pytest.raises(ValueError, match="model_type 'hf_vq_patch_discriminator'"):
        render_model_card(hf_vq.PatchDiscriminatorConfig(), repo_id="org/d")
    with pytest.raises(ValueError, match="library_name hf_vq"):
        check_model_card("---\nlicense: mit\n---\n# a card\n")
    leaky = {**TRAINING_ARGS, "training": {**TRAINING_ARGS["training"], "dataset": "hf_" + "a1B2" * 9}}
    with pytest.raises(ValueError, match="access token"):
        render_model_card(config, repo_id="org/x", training_args=leaky)
    monkeypatch.setenv("HF_TOKEN", "my-very-own-secret")  # the configured token, whatever its shape
    with pytest.raises(ValueError, match="access token"):
        render_model_card(config, repo_id="org/my-very-own-secret")


def test_a_family_card_without_training_or_metrics_says_so():
    card = render_model_card(MODELS["vae"]().config, repo_id="org/vae")
    assert "No evaluation was recorded" in str(card) and "No training arguments were recorded" in str(card)
    assert ModelCard(str(card)).data.eval_results is None
    assert "free bits 0.5" in str(card)


def test_family_cards_name_the_classes_that_load_them():
    """The cards know families by model_type only (hub is below models); their class names must match the models'."""
    for model_type, card in FAMILY_CARDS.items():
        assert card.model_class == MODEL_CLASSES[model_type].__name__, model_type
    pipe_card = render_pipeline_card(MODELS["vqgan"]().config, MODELS["prior"]().config, repo_id="org/p")
    assert "a `VQGANModel`" in str(pipe_card)


@pytest.mark.slow
def test_the_wheel_ships_every_card_template(tmp_path):
    """The templates live in the top-level model_cards/ and install as hf_vq/model_cards/ (setup.py, pyproject.toml).
    The wheel is built offline from a copy of the sources, so the tree's build/ is neither used nor touched."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        (source / name).write_bytes((ROOT / name).read_bytes())
    for folder in ("hf_vq", "model_cards"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w",
         str(tmp_path / "wheels"), str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = (tmp_path / "wheels").glob("hf_vq-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = sorted(path.name for path in (ROOT / "model_cards").glob("*.md"))
    assert len(templates) >= 9
    for template in templates:
        assert f"hf_vq/model_cards/{template}" in names, (template, sorted(names))
    with zipfile.ZipFile(wheel) as archive:
        for template in templates:
            assert archive.read(f"hf_vq/model_cards/{template}") == (ROOT / "model_cards" / template).read_bytes()
    assert "hf_vq/hub/cards.py" in names and not any(name.startswith("model_cards/") for name in names)


# The Hub's task ids: the keys of `PIPELINE_DATA` in huggingface.js, packages/tasks/src/pipelines.ts (read at commit
# 0057f4042b57b833d296ed4cf1c76cfd6619d00d); huggingface_hub 2.4 ships no such list. A card's `pipeline_tag` and its
# model-index task types must be among them.
HUB_TASKS = frozenset(
    """
    biology text-classification token-classification table-question-answering question-answering
    zero-shot-classification translation summarization feature-extraction text-generation text2text-generation
    fill-mask sentence-similarity text-to-speech text-to-audio automatic-speech-recognition audio-to-audio
    audio-classification audio-text-to-text voice-activity-detection depth-estimation image-classification
    object-detection image-segmentation text-to-image image-to-text image-to-image image-to-video
    unconditional-image-generation video-classification reinforcement-learning robotics tabular-classification
    tabular-regression tabular-to-text table-to-text multiple-choice text-ranking text-retrieval
    time-series-forecasting text-to-video image-text-to-text visual-question-answering document-question-answering
    zero-shot-image-classification graph-ml mask-generation zero-shot-object-detection text-to-3d image-to-3d
    image-feature-extraction video-text-to-text keypoint-detection visual-document-retrieval any-to-any other
""".split()
)
EXPECTED_PIPELINE_TAGS = {  # the rest: image-to-image
    "hf_vq_prior": "unconditional-image-generation",
    "hf_vq_pixelcnn_prior": "unconditional-image-generation",
    "hf_vq_sequence_vae": "other",
}


def every_card():
    """Every kind of card the package renders: each family and the pipeline (conditional and not), with and without
    metrics, on a Hub dataset, a builtin one, a local folder and none."""
    prior = MODELS["prior"]()
    unconditional = hf_vq.VQPriorConfig(codebook_size=16, token_grid_size=(4, 4), n_layer=1, n_head=2, n_embd=16)
    for dataset in ("org/celeba", "builtin:digits", str(ROOT / "tests"), None):
        for metrics in (METRICS, None):
            inputs = dict(repo_id="org/x", metrics=metrics, dataset=dataset, training_args=TRAINING_ARGS)
            for name in sorted(MODELS):
                config = MODELS[name]().config
                yield f"{name}-{dataset}-{bool(metrics)}", config.model_type, render_model_card(config, **inputs)
            vq_config = MODELS["vqgan"]().config
            for prior_config in (prior.config, unconditional):
                card = render_pipeline_card(vq_config, prior_config, **inputs)
                yield f"pipeline-{dataset}-{bool(metrics)}", "pipeline", card


def test_every_card_round_trips_through_model_card_with_hub_task_ids_and_hub_datasets_only():
    for label, kind, card in every_card():
        text = str(card)
        loaded = ModelCard(text)
        assert str(ModelCard(str(loaded))) == str(loaded), label  # reads back and writes out the same
        data = loaded.data
        assert ModelCard(text).data.to_dict() == data.to_dict(), label
        expected = EXPECTED_PIPELINE_TAGS.get(kind, "unconditional-image-generation" if kind == "pipeline" else None)
        assert data.pipeline_tag == (expected or "image-to-image"), label
        assert data.pipeline_tag in HUB_TASKS, label
        check_model_card(text)
        on_hub = "-org/celeba-" in label
        assert data.datasets == (["org/celeba"] if on_hub else None), label
        if data.eval_results:
            assert on_hub and data.model_name, label
            for result in data.eval_results:
                assert result.task_type in HUB_TASKS, label
                assert result.dataset_type == "org/celeba" and result.dataset_name == "org/celeba", label
        else:
            assert data.model_name is None and "model-index" not in text, label
            assert not on_hub or "-False" in label, label
        assert "builtin:" not in str(data.to_dict()) and str(ROOT) not in str(data.to_dict()), label
