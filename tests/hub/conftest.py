"""Shared by the hub tests: one tiny model of every family with a run's training arguments and metrics, and the
clients that talk to a loopback Hub server (`tests/hub_server.py`) from fresh processes.

`HF_ENDPOINT` is read when huggingface_hub is imported, so every client runs in a subprocess with it set.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import hf_vq

from ..conftest import ROOT
from ..hub_server import LoopbackHub

BACKBONE = dict(block_out_channels=[8, 16], layers_per_block=1, norm_num_groups=8, sample_size=8)
MODELS = {
    "autoencoder": lambda: hf_vq.AutoencoderModel(
        hf_vq.AutoencoderConfig(**BACKBONE, latent_channels=4, sparsity_k=8)
    ),
    "vae": lambda: hf_vq.VAEModel(hf_vq.VAEConfig(**BACKBONE, latent_channels=4, free_bits=0.5)),
    "vqvae": lambda: hf_vq.VQVAEModel(
        hf_vq.VQVAEConfig(
            hidden_channels=16,
            residual_hidden_channels=8,
            num_residual_layers=1,
            num_downsamples=1,
            num_vq_embeddings=16,
            vq_embed_dim=4,
            sample_size=8,
        )  # fmt: skip
    ),
    "vqgan": lambda: hf_vq.VQGANModel(
        hf_vq.VQGANConfig(**BACKBONE, latent_channels=8, vq_embed_dim=4, num_vq_embeddings=16)
    ),
    "vqgan_fsq": lambda: hf_vq.VQGANModel(
        hf_vq.VQGANConfig(
            **BACKBONE,
            latent_channels=8,
            vq_embed_dim=3,
            quantizer_type="fsq",
            fsq_levels=[3, 3, 2],
            num_vq_embeddings=None,
        )  # fmt: skip
    ),
    "prior": lambda: hf_vq.VQPriorForCausalLM(
        hf_vq.VQPriorConfig(codebook_size=16, token_grid_size=(4, 4), num_classes=3, n_layer=1, n_head=2, n_embd=16)
    ),
    "pixelcnn_prior": lambda: hf_vq.PixelCNNPriorModel(
        hf_vq.PixelCNNPriorConfig(
            codebook_size=16,
            token_grid_size=(4, 4),
            num_classes=3,
            num_layers=3,
            hidden_channels=8,
            output_channels=16,
        )  # fmt: skip
    ),
    "sequence_vae": lambda: hf_vq.SequenceVAEModel(
        hf_vq.SequenceVAEConfig(
            num_bars=2,
            bar_length=4,
            encoder_hidden_size=8,
            decoder_hidden_size=8,
            conductor_hidden_size=8,
            latent_size=4,
        )  # fmt: skip
    ),
}
TRAINING_ARGS = {
    "family": "vqgan",
    "training": {"dataset": "org/celeba", "eval_split": "validation", "max_train_steps": 10, "learning_rate": 4.5e-6,
                 "lpips_weights": None, "perceptual_weight": 1.0, "output_dir": "runs/x"},
    "gan": {"disc_start": 5, "disc_weight": 0.8},
    "num_processes": 2,
}  # fmt: skip
METRICS = {"eval_psnr": 25.123456, "eval_codebook_usage": 0.75, "eval_num_images": 32, "step": 10, "data_skipped": {}}

# ----- clients of a loopback Hub -----

TOKEN = "hf_loopback_secret_token"
SCRIPT_TIMEOUT = 300

TINY = """
import torch, hf_vq
vq = hf_vq.VQGANModel(hf_vq.VQGANConfig(block_out_channels=[8, 16], layers_per_block=1, norm_num_groups=8,
                                        latent_channels=8, vq_embed_dim=4, num_vq_embeddings=16, sample_size=8))
prior = hf_vq.VQPriorForCausalLM(hf_vq.VQPriorConfig(codebook_size=16, token_grid_size=(4, 4), num_classes=3,
                                                     n_layer=1, n_head=2, n_embd=16))
pipe = hf_vq.VQImageGenerationPipeline(vq, prior)
"""


@pytest.fixture
def hub():
    with LoopbackHub() as server:
        yield server


@pytest.fixture(scope="module")
def module_hub():
    with LoopbackHub() as server:
        yield server


BLOCK_HF_VQ = """
import sys
sys.modules["hf_vq"] = None  # hf_vq cannot be imported in this process
"""


def client_env(hub: LoopbackHub, home: Path, offline: bool = False, hf_vq_importable: bool = True) -> dict:
    """The environment of a client process: the loopback endpoint, its own cache, a token that must never show."""
    env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HOME": str(home), "HF_TOKEN": TOKEN,
           "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}  # fmt: skip
    env.pop("HF_HUB_OFFLINE", None)
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    if not hf_vq_importable:
        env.pop("PYTHONPATH")
    return env


def run_python(
    code: str,
    hub: LoopbackHub,
    home: Path,
    offline: bool = False,
    cwd: Path | None = None,
    hf_vq_importable: bool = True,
) -> subprocess.CompletedProcess:
    """Run `code` in a fresh process; with `hf_vq_importable=False`, hf_vq is blocked (`BLOCK_HF_VQ`) and the
    process runs outside the source tree."""
    if not hf_vq_importable:
        code = BLOCK_HF_VQ + textwrap.dedent(code) + "\nassert not any(m.startswith('hf_vq.') for m in sys.modules)"
        home.mkdir(parents=True, exist_ok=True)
        cwd = cwd or home
    env = client_env(hub, home, offline, hf_vq_importable)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=SCRIPT_TIMEOUT, cwd=cwd)  # fmt: skip


def run_script(args: list[str], hub: LoopbackHub, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=client_env(hub, home), capture_output=True, text=True,
                          timeout=SCRIPT_TIMEOUT)  # fmt: skip
