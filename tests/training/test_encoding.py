"""encode_dataset's progress bars: one per split on a terminal, none with `quiet` / `--quiet` or off a terminal (nor
those of `datasets`; a tqdm bar redraws its line with a carriage return)."""

import sys

import pytest
import torch
from accelerate.state import AcceleratorState
from transformers.utils import logging as transformers_logging

import hf_vq
from hf_vq.training import encode_dataset

from ..conftest import load_script

TINY_VQGAN = dict(
    in_channels=1, out_channels=1, block_out_channels=[8, 16], layers_per_block=1, norm_num_groups=8,
    latent_channels=8, vq_embed_dim=4, num_vq_embeddings=16, sample_size=8,
)  # fmt: skip


@pytest.fixture(autouse=True)
def _fresh_accelerator_state():
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture
def library_bars():
    """transformers' progress bars as they were before a script's --quiet turned them off (for the next tests)."""
    enabled = transformers_logging.is_progress_bar_enabled()
    yield
    if enabled:
        transformers_logging.enable_progress_bar()


def as_terminal(monkeypatch):
    """The captured stderr as a terminal, where tqdm shows its bars. Called in the test itself: pytest swaps
    `sys.stderr` between a fixture's setup and the test."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)


def vq_model() -> hf_vq.VQGANModel:
    torch.manual_seed(0)
    return hf_vq.VQGANModel(hf_vq.VQGANConfig(**TINY_VQGAN))


def test_encoding_shows_a_bar_per_split_on_a_terminal(tmp_path, capsys, monkeypatch):
    as_terminal(monkeypatch)
    encode_dataset(vq_model(), "builtin:digits", tmp_path / "codes", ["train", "test"], batch_size=100)
    err = capsys.readouterr().err
    assert "encoding train: 15batch" in err and "encoding test: 4batch" in err  # 1437 and 360 images
    encode_dataset(vq_model(), "builtin:digits", tmp_path / "quiet", ["test"], batch_size=100, quiet=True)
    assert "\r" not in capsys.readouterr().err


def test_encoding_shows_no_bar_off_a_terminal(tmp_path, capsys):
    encode_dataset(vq_model(), "builtin:digits", tmp_path / "codes", ["test"], batch_size=100)
    assert "\r" not in capsys.readouterr().err


def test_the_scripts_quiet_flag_turns_the_bars_off(tmp_path, capsys, monkeypatch, library_bars):
    as_terminal(monkeypatch)
    vq_model().save_pretrained(tmp_path / "model")
    capsys.readouterr()
    script = load_script("encode_dataset")
    args = ["--vq_model", str(tmp_path / "model"), "--dataset", "builtin:digits", "--splits", "test"]
    script.main([*args, "--output_dir", str(tmp_path / "codes")])
    assert "encoding test: " in capsys.readouterr().err
    AcceleratorState._reset_state(reset_partial_state=True)
    script.main([*args, "--output_dir", str(tmp_path / "quiet"), "--quiet"])  # last: it turns transformers' bars off
    assert "\r" not in capsys.readouterr().err
