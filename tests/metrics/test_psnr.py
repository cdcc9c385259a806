"""PSNR against hand computations and the uint8 definition."""

import math

import numpy as np
import pytest
import torch

from hf_vq.metrics import psnr


def test_psnr_of_a_known_mse():
    target = torch.zeros(2, 3, 4, 4)
    reconstruction = target.clone()
    reconstruction[0] += 0.1  # MSE 0.01 in [-1, 1] units -> 10 log10(4 / 0.01)
    reconstruction[1] -= 0.2  # MSE 0.04
    expected = torch.tensor([10 * math.log10(4 / 0.01), 10 * math.log10(4 / 0.04)])
    torch.testing.assert_close(psnr(reconstruction, target), expected)


def test_psnr_equals_the_uint8_definition():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (1, 3, 8, 8)).astype(np.float64)
    b = np.clip(a + rng.integers(-20, 21, a.shape), 0, 255)
    expected = 10 * np.log10(255**2 / np.mean((a - b) ** 2))
    to_unit = lambda x: torch.tensor(x / 127.5 - 1, dtype=torch.float32)  # noqa: E731
    assert abs(psnr(to_unit(b), to_unit(a)).item() - expected) < 1e-3


def test_psnr_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shapes"):
        psnr(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5))
