"""The LPIPS network (`hf_vq.modules.lpips`): the distance's formula against hand computations, frozen weights with
gradients to the inputs, and loading its safetensors weights from a file, a folder or the Hub cache."""

import logging

import huggingface_hub.constants
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from hf_vq.modules.lpips import LPIPS, TAP_CHANNELS, load_lpips, normalize_channels

from ..conftest import random_lpips


@pytest.fixture(scope="module")
def lpips() -> LPIPS:
    return random_lpips()


def image_pair(batch: int = 2, channels: int = 3, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    a = torch.rand(batch, channels, size, size, generator=generator) * 2 - 1
    b = torch.rand(batch, channels, size, size, generator=generator) * 2 - 1
    return a, b


def test_lpips_is_zero_for_identical_images_symmetric_and_positive_otherwise(lpips):
    a, b = image_pair()
    same = lpips(a, a)
    assert same.shape == (2,)
    assert torch.equal(same, torch.zeros(2))
    forward, backward = lpips(a, b), lpips(b, a)
    torch.testing.assert_close(forward, backward, rtol=1e-5, atol=1e-7)
    assert (forward > 0).all()


def test_lpips_gradient_reaches_the_input_and_not_the_weights(lpips):
    a, b = image_pair()
    a.requires_grad_(True)
    lpips(a, b).sum().backward()
    assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in lpips.parameters())


def test_lpips_stays_frozen_in_eval_mode_inside_a_training_module(lpips):
    container = nn.ModuleDict({"lpips": lpips})
    container.train()
    assert not lpips.training


def test_distance_from_features_against_hand_computation():
    # One image; tap k has k + 2 positions. Position 0: a = 3 e0, b = 5 e1 -> unit vectors e0, e1, squared
    # difference e0 + e1. Position 1: a = (3, 4, 0, ...) -> (0.6, 0.8, 0, ...), b = 0 (stays 0) -> squared difference
    # (0.36, 0.64, 0, ...). The other k positions are 0 in both. Head k weighs channel 0 by k + 1, channel 1 by 0.5
    # and the rest by 7 (they never differ). Tap k: (1.36 (k + 1) + 1.64 * 0.5) / (k + 2), the mean over positions.
    model = LPIPS()
    features_a, features_b = [], []
    with torch.no_grad():
        for k, (head, channels) in enumerate(zip(model.heads, TAP_CHANNELS, strict=True)):
            head.weight.fill_(7.0)
            head.weight[0, 0] = k + 1.0
            head.weight[0, 1] = 0.5
            a = torch.zeros(1, channels, 1, k + 2)
            b = torch.zeros(1, channels, 1, k + 2)
            a[0, 0, 0, 0], b[0, 1, 0, 0] = 3.0, 5.0
            a[0, 0, 0, 1], a[0, 1, 0, 1] = 3.0, 4.0
            features_a.append(a)
            features_b.append(b)
    expected = sum((1.36 * (k + 1) + 0.82) / (k + 2) for k in range(5))
    distance = model.distance_from_features(features_a, features_b)
    assert distance.shape == (1,)
    torch.testing.assert_close(distance, torch.tensor([expected]), rtol=1e-6, atol=0)


def test_normalize_channels_matches_lpips_formula_and_has_finite_gradient_at_zero():
    x = torch.tensor([[[[3.0, 0.0]], [[4.0, 0.0]]]], requires_grad=True)  # (1, 2, 1, 2): norms 5 and 0
    y = normalize_channels(x)
    torch.testing.assert_close(y.detach()[0, :, 0, 0], torch.tensor([0.6, 0.8]))
    assert torch.equal(y.detach()[0, :, 0, 1], torch.zeros(2))
    y.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_forward_is_the_distance_of_the_scaled_vgg_taps(lpips):
    a, b = image_pair()
    taps = lpips.extract_features(a)
    assert [tuple(t.shape) for t in taps] == [(2, c, 16 // 2**k, 16 // 2**k) for k, c in enumerate(TAP_CHANNELS)]
    assert all((t >= 0).all() for t in taps)  # taken after the ReLUs
    # relu1_2 by hand: LPIPS's input scaling, then conv, ReLU, conv, ReLU.
    scaled = (a - torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)) / torch.tensor([0.458, 0.448, 0.450]).view(
        1, 3, 1, 1
    )
    conv0, conv2 = lpips.features[0], lpips.features[2]
    relu1_2 = F.relu(
        F.conv2d(F.relu(F.conv2d(scaled, conv0.weight, conv0.bias, padding=1)), conv2.weight, conv2.bias, padding=1)
    )
    torch.testing.assert_close(taps[0], relu1_2)
    expected = lpips.distance_from_features(taps, lpips.extract_features(b))
    torch.testing.assert_close(lpips(a, b), expected, rtol=1e-5, atol=1e-7)


def test_grayscale_images_are_repeated_to_rgb(lpips):
    a, b = image_pair(channels=1)
    torch.testing.assert_close(lpips(a, b), lpips(a.repeat(1, 3, 1, 1), b.repeat(1, 3, 1, 1)), rtol=0, atol=0)
    with pytest.raises(ValueError, match="equal shapes"):
        lpips(a, b[:, :, :8])
    with pytest.raises(ValueError, match="3 or 1"):
        lpips(torch.zeros(1, 4, 16, 16), torch.zeros(1, 4, 16, 16))


def test_from_pretrained_round_trip_from_file_and_folder(tmp_path, lpips):
    source = random_lpips(seed=5)
    save_file(source.state_dict(), str(tmp_path / "lpips_vgg16.safetensors"))
    a, b = image_pair()
    for location in (tmp_path / "lpips_vgg16.safetensors", tmp_path, str(tmp_path)):
        loaded = LPIPS.from_pretrained(location)
        torch.testing.assert_close(loaded(a, b), source(a, b), rtol=0, atol=0)
        assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    assert not torch.equal(lpips(a, b), source(a, b))  # the weights did come from the file


def test_from_pretrained_hub_repo_from_offline_cache(tmp_path, monkeypatch):
    source = random_lpips(seed=6)
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--org--lpips-vgg16"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    save_file(source.state_dict(), str(repo / "snapshots" / commit / "lpips_vgg16.safetensors"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    loaded = LPIPS.from_pretrained("org/lpips-vgg16")
    a, b = image_pair()
    torch.testing.assert_close(loaded(a, b), source(a, b), rtol=0, atol=0)


def test_from_pretrained_wrong_keys_or_shapes_or_path_raise_clear_errors(tmp_path):
    state = LPIPS().state_dict()
    state["lin5.model.1.weight"] = state.pop("lin4.model.1.weight")
    save_file(state, str(tmp_path / "renamed.safetensors"))
    with pytest.raises(ValueError, match=r"missing keys \['lin4.model.1.weight'\], unexpected keys \['lin5"):
        LPIPS.from_pretrained(tmp_path / "renamed.safetensors")
    state = LPIPS().state_dict()
    state["lin0.model.1.weight"] = torch.zeros(1, 32, 1, 1)
    save_file(state, str(tmp_path / "shape.safetensors"))
    with pytest.raises(ValueError, match=r"lin0.model.1.weight: expected \(1, 64, 1, 1\), got \(1, 32, 1, 1\)"):
        LPIPS.from_pretrained(tmp_path / "shape.safetensors")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LPIPS.from_pretrained(tmp_path / "absent.safetensors")
    with pytest.raises(FileNotFoundError, match="no lpips_vgg16.safetensors"):
        LPIPS.from_pretrained(tmp_path)


def test_load_lpips_without_weights_returns_none_and_warns_once(caplog, tmp_path):
    with caplog.at_level(logging.WARNING, logger="hf_vq.modules.lpips"):
        assert load_lpips(None) is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "perceptual loss disabled: no --lpips_weights given" in warnings[0].getMessage()
    caplog.clear()
    save_file(LPIPS().state_dict(), str(tmp_path / "w.safetensors"))
    with caplog.at_level(logging.WARNING, logger="hf_vq.modules.lpips"):
        assert isinstance(load_lpips(str(tmp_path / "w.safetensors")), LPIPS)
    assert not caplog.records
