"""Runs that never lose work: a used output dir is refused, --overwrite_output_dir starts afresh, rotation keeps the
current run's newest checkpoint, a damaged checkpoint is named, and mistakes fail before anything is written."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from accelerate.state import AcceleratorState

import hf_vq
from hf_vq.training import main
from hf_vq.training import preflight as preflight_module

from ..conftest import ROOT
from .test_trainer import write_recipe


@pytest.fixture(autouse=True)
def _fresh_accelerator_state():
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def train(tmp_path: Path, output_dir: Path, *extra: str, **overrides) -> dict:
    recipe = write_recipe(tmp_path / "recipe.yaml", "vqvae", **{"eval_split": "none", **overrides})
    return main("vqvae", ["--config", str(recipe), "--output_dir", str(output_dir), *extra])


@pytest.fixture
def finished_run(tmp_path) -> Path:
    """A finished tiny run: model/, checkpoint-2, checkpoint-4, samples."""
    output_dir = tmp_path / "run"
    train(tmp_path, output_dir)
    assert (output_dir / "model").is_dir() and (output_dir / "checkpoint-4").is_dir()
    return output_dir


@pytest.mark.slow
def test_a_second_run_into_a_used_output_dir_exits_2_and_leaves_every_file_as_it_was(finished_run, tmp_path):
    before = snapshot(finished_run)
    recipe = tmp_path / "recipe.yaml"
    command = [sys.executable, str(ROOT / "training" / "train_vqvae.py"), "--config", str(recipe)]
    result = subprocess.run(
        [*command, "--output_dir", str(finished_run)], capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and str(finished_run) in last
    assert "--resume_from_checkpoint latest" in last and "--overwrite_output_dir" in last
    assert "Traceback" not in result.stderr
    assert snapshot(finished_run) == before


def test_a_used_output_dir_is_refused_in_process_too(finished_run, tmp_path):
    before = snapshot(finished_run)
    with pytest.raises(hf_vq.UsageError, match="holds an earlier run"):
        train(tmp_path, finished_run)
    assert snapshot(finished_run) == before


def test_overwrite_output_dir_removes_the_old_run_first_and_keeps_other_files(finished_run, tmp_path):
    (finished_run / "notes.txt").write_text("mine")
    old_state = json.loads((finished_run / "checkpoint-4" / "trainer_state.json").read_text())
    train(tmp_path, finished_run, "--overwrite_output_dir", max_train_steps=2)
    assert sorted(p.name for p in finished_run.glob("checkpoint-*")) == ["checkpoint-2"]  # checkpoint-4 is gone
    new_state = json.loads((finished_run / "checkpoint-2" / "trainer_state.json").read_text())
    assert new_state["run_id"] != old_state["run_id"]
    assert sorted(p.name for p in (finished_run / "samples").iterdir()) == ["step-2.png"]
    assert (finished_run / "notes.txt").read_text() == "mine"


def test_resuming_another_folders_checkpoint_into_a_used_output_dir_is_refused(finished_run, tmp_path):
    other = tmp_path / "other"
    train(tmp_path, other, max_train_steps=2)
    before = snapshot(finished_run)
    with pytest.raises(hf_vq.UsageError, match="holds an earlier run"):
        train(tmp_path, finished_run, "--resume_from_checkpoint", str(other / "checkpoint-2"))
    assert snapshot(finished_run) == before


def test_a_finished_run_without_checkpoints_is_not_offered_a_resume(tmp_path):
    output_dir = tmp_path / "short"
    train(tmp_path, output_dir, checkpointing_steps=100)
    with pytest.raises(hf_vq.UsageError) as error:
        train(tmp_path, output_dir)
    assert "--overwrite_output_dir" in str(error.value) and "--resume_from_checkpoint" not in str(error.value)


def test_overwrite_output_dir_in_a_folder_that_holds_no_run_deletes_nothing(tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "README.md").write_text("the user's own")
    (folder / "logs").mkdir()
    train(tmp_path, folder, "--overwrite_output_dir", max_train_steps=2)
    assert (folder / "README.md").read_text() == "the user's own" and (folder / "model").is_dir()


def test_resuming_with_another_number_of_processes_says_how_many_wrote_it(finished_run, tmp_path):
    checkpoint = finished_run / "checkpoint-4"
    (checkpoint / "data_state_1.json").write_text((checkpoint / "data_state_0.json").read_text())
    with pytest.raises(hf_vq.UsageError, match="written by 2 process.* --num_processes 2"):
        train(tmp_path, finished_run, "--resume_from_checkpoint", "latest", max_train_steps=6)


def test_resume_latest_without_a_checkpoint_is_an_error_and_writes_nothing(tmp_path):
    output_dir = tmp_path / "never"
    with pytest.raises(hf_vq.UsageError, match="holds no checkpoint"):
        train(tmp_path, output_dir, "--resume_from_checkpoint", "latest")
    assert not output_dir.exists()


def test_rotation_counts_only_this_runs_checkpoints_and_keeps_the_one_just_written(finished_run, tmp_path):
    # A checkpoint of another run (another run id), at a later step than this run will reach.
    foreign = finished_run / "checkpoint-100"
    shutil.copytree(finished_run / "checkpoint-4", foreign)
    state = json.loads((foreign / "trainer_state.json").read_text())
    (foreign / "trainer_state.json").write_text(json.dumps({**state, "run_id": "another-run"}))
    # Resume from checkpoint-2 and go on to step 6, keeping two checkpoints of this run.
    checkpoint_2 = str(finished_run / "checkpoint-2")
    train(
        tmp_path, finished_run, "--resume_from_checkpoint", checkpoint_2, max_train_steps=6, checkpoints_total_limit=2
    )
    assert sorted(p.name for p in finished_run.glob("checkpoint-*")) == [
        "checkpoint-100",
        "checkpoint-4",
        "checkpoint-6",
    ]
    assert json.loads((foreign / "trainer_state.json").read_text())["run_id"] == "another-run"


def test_a_truncated_checkpoint_is_named_with_the_way_on_and_nothing_is_deleted(finished_run, tmp_path):
    weights = finished_run / "checkpoint-4" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: len(weights.read_bytes()) // 2])
    before = snapshot(finished_run)
    with pytest.raises(hf_vq.UsageError) as error:
        train(tmp_path, finished_run, "--resume_from_checkpoint", "latest", max_train_steps=6)
    message = str(error.value)
    assert "checkpoint-4 is incomplete or corrupt (model.safetensors)" in message
    assert "resume from" in message and "checkpoint-2" in message
    assert "safetensors_rust" not in message and "SafetensorError" not in message
    assert snapshot(finished_run) == before


def test_a_missing_data_position_is_named(finished_run, tmp_path):
    (finished_run / "checkpoint-4" / "data_state_0.json").unlink()
    with pytest.raises(hf_vq.UsageError, match=r"checkpoint-4 is incomplete or corrupt \(data_state_0.json\)"):
        train(tmp_path, finished_run, "--resume_from_checkpoint", "latest", max_train_steps=6)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--lpips_weights", "./no/such/lpips.safetensors"], "--lpips_weights: no such file or directory"),
        (["--lpips_weights", "weights/lpips.safetensors"], "--lpips_weights: no such file or directory"),
        (["--pretrained_model", "./no/such/model"], "--pretrained_model: no such file or directory"),
        (["--dataset", "./no/such/data"], "--dataset: no such file or directory"),
        (["--hub_model_id", "org/name/extra"], "--hub_model_id 'org/name/extra' is not a Hub repo id"),
        (["--resume_from_checkpoint", "./no/such/checkpoint-3"], "--resume_from_checkpoint: no such file"),
    ],
)
def test_mistakes_fail_before_anything_is_written(tmp_path, extra, message):
    output_dir = tmp_path / "new"
    with pytest.raises(hf_vq.UsageError, match=message):
        train(tmp_path, output_dir, *extra)
    assert not output_dir.exists()


def test_an_lpips_folder_without_the_weights_file_is_refused(tmp_path):
    (tmp_path / "lpips").mkdir()
    with pytest.raises(hf_vq.UsageError, match="holds no lpips_vgg16.safetensors"):
        train(tmp_path, tmp_path / "new", "--lpips_weights", str(tmp_path / "lpips"))
    assert not (tmp_path / "new").exists()


def test_an_output_dir_under_a_file_is_refused(tmp_path):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(hf_vq.UsageError, match="is a file, not a folder"):
        train(tmp_path, tmp_path / "a-file" / "run")


def test_push_to_hub_without_a_token_fails_at_start_up(tmp_path, monkeypatch):
    monkeypatch.setattr(preflight_module, "get_token", lambda: None)
    monkeypatch.setattr(preflight_module.constants, "HF_HUB_OFFLINE", False)
    output_dir = tmp_path / "new"
    with pytest.raises(hf_vq.UsageError, match="needs a Hub token"):
        train(tmp_path, output_dir, "--push_to_hub", "--hub_model_id", "org/name")
    assert not output_dir.exists()


def test_a_recipe_with_a_syntax_error_names_the_file_and_the_line(tmp_path):
    recipe = tmp_path / "broken.yaml"
    recipe.write_text("learning_rate: 0.1\nmodel:\n  block_out_channels: [8, 16\n  layers_per_block: 1\n")
    with pytest.raises(hf_vq.UsageError, match=r"broken.yaml, line \d+"):
        main("vqvae", ["--config", str(recipe), "--output_dir", str(tmp_path / "x")])
    broken_json = tmp_path / "model.json"
    broken_json.write_text('{"sample_size": 8,\n "latent_channels": }\n')
    with pytest.raises(hf_vq.UsageError, match=r"model.json, line 2"):
        main("vqvae", ["--output_dir", str(tmp_path / "x"), "--model_config", str(broken_json)])
