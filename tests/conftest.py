import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

import hf_vq
from hf_vq.modules.lpips import LPIPS

# Tiny backbone shared by the model tests: 16x16 inputs, two levels (f = 2), 8x8 latents.
TINY_BACKBONE = dict(
    in_channels=3,
    out_channels=3,
    block_out_channels=[16, 32],
    layers_per_block=1,
    norm_num_groups=8,
    latent_channels=4,
    sample_size=16,
)

# Tiny VQ models shared by the model, prior, metric and latent tests: 16x16 inputs; the VQ-GAN gives 8x8 code grids,
# the VQ-VAE 4x4.
TINY_VQGAN = dict(
    block_out_channels=[16, 32],
    layers_per_block=1,
    norm_num_groups=8,
    latent_channels=8,
    vq_embed_dim=4,
    num_vq_embeddings=32,
    sample_size=16,
)
TINY_VQVAE = dict(
    hidden_channels=32, residual_hidden_channels=16, num_vq_embeddings=32, vq_embed_dim=8, sample_size=16
)

QUANTIZER_VARIANTS = {
    "plain": {},
    "ema": {"vq_codebook_update": "ema"},
    "cosine-factorized": {"vq_use_l2_norm": True, "vq_codebook_dim": 2, "vq_kmeans_init": True},
    "restarts": {"vq_dead_code_threshold": 1},
    "fsq": {"quantizer_type": "fsq", "fsq_levels": [4, 3, 3], "num_vq_embeddings": None},
}


def vqgan(**overrides) -> hf_vq.VQGANModel:
    return hf_vq.VQGANModel(hf_vq.VQGANConfig(**{**TINY_VQGAN, **overrides}))


def vqvae(**overrides) -> hf_vq.VQVAEModel:
    return hf_vq.VQVAEModel(hf_vq.VQVAEConfig(**{**TINY_VQVAE, **overrides}))


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """The models here are tiny: with more threads than free cores, OpenMP's waiting costs far more than the work
    (seen: 100x slower with a second process on the 2 cores). Subprocesses get OMP_NUM_THREADS=1 from each test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def load_script(name: str) -> ModuleType:
    """`scripts/<name>.py` as a module, to call its functions in-process."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def images() -> torch.Tensor:
    """(4, 3, 16, 16) images in [-1, 1]."""
    return torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1


@pytest.fixture
def smooth_images() -> torch.Tensor:
    """(4, 3, 16, 16) low-frequency images in [-1, 1] (upsampled 4x4 noise): learnable through a small bottleneck."""
    coarse = torch.rand(4, 3, 4, 4, generator=torch.Generator().manual_seed(2)) * 2 - 1
    return torch.nn.functional.interpolate(coarse, size=16, mode="bilinear", align_corners=False)


@pytest.fixture
def tiny_vae() -> hf_vq.VAEModel:
    return hf_vq.VAEModel(hf_vq.VAEConfig(**TINY_BACKBONE)).eval()


@pytest.fixture
def tiny_autoencoder() -> hf_vq.AutoencoderModel:
    return hf_vq.AutoencoderModel(hf_vq.AutoencoderConfig(**TINY_BACKBONE)).eval()


def assert_state_dicts_equal(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=0, msg=key)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: list[str], num_processes: int = 1) -> subprocess.Popen:
    """`accelerate launch` of a script; several processes form a gloo group on the CPU, one thread each."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(num_processes)]
    command += ["--multi_gpu", "--main_process_port", str(free_port())] if num_processes > 1 else []
    command += ["--num_machines", "1"]
    command += ["--mixed_precision", "no", "--dynamo_backend", "no", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def finished(process: subprocess.Popen, timeout: int = 300) -> None:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-4000:]


def random_lpips(seed: int = 0) -> LPIPS:
    """LPIPS with random weights and non-negative heads, as the released heads are."""
    torch.manual_seed(seed)
    model = LPIPS()
    with torch.no_grad():
        for head in model.heads:
            head.weight.abs_()
    return model
