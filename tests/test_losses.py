import logging
import math
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from hf_vq.losses import (
    GAN_LOSSES,
    LPIPS,
    LeCAM,
    adaptive_weight,
    hinge_d_loss,
    hinge_g_loss,
    load_lpips,
    non_saturating_d_loss,
    non_saturating_g_loss,
)
from hf_vq.losses.lpips import TAP_CHANNELS, normalize_channels

from .conftest import load_script

ROOT = Path(__file__).resolve().parents[1]


def random_lpips(seed: int = 0) -> LPIPS:
    """LPIPS with random weights and non-negative heads, as the released heads are."""
    torch.manual_seed(seed)
    model = LPIPS()
    with torch.no_grad():
        for head in model.heads:
            head.weight.abs_()
    return model


@pytest.fixture(scope="module")
def lpips() -> LPIPS:
    return random_lpips()


def image_pair(batch: int = 2, channels: int = 3, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    a = torch.rand(batch, channels, size, size, generator=generator) * 2 - 1
    b = torch.rand(batch, channels, size, size, generator=generator) * 2 - 1
    return a, b


# ----- LPIPS -----


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
    with caplog.at_level(logging.WARNING, logger="hf_vq.losses.lpips"):
        assert load_lpips(None) is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "perceptual loss disabled: no --lpips_weights given" in warnings[0].getMessage()
    caplog.clear()
    save_file(LPIPS().state_dict(), str(tmp_path / "w.safetensors"))
    with caplog.at_level(logging.WARNING, logger="hf_vq.losses.lpips"):
        assert isinstance(load_lpips(str(tmp_path / "w.safetensors")), LPIPS)
    assert not caplog.records


def test_convert_script_builds_the_safetensors_file_from_fake_released_files(tmp_path, capsys):
    source = random_lpips(seed=7).state_dict()
    # torchvision's VGG16 state dict: features.* plus a classifier (tiny fakes here; it is dropped).
    vgg16 = {key: value for key, value in source.items() if key.startswith("features.")}
    vgg16 |= {"classifier.0.weight": torch.zeros(4, 2), "classifier.0.bias": torch.zeros(4)}
    # LPIPS v0.1 vgg.pth: the five heads only.
    heads = {key: value for key, value in source.items() if key.startswith("lin")}
    torch.save(vgg16, tmp_path / "vgg16.pth")
    torch.save(heads, tmp_path / "vgg.pth")
    output = tmp_path / "out" / "lpips_vgg16.safetensors"
    script = load_script("convert_lpips_weights")
    argv = ["--vgg16", str(tmp_path / "vgg16.pth"), "--lpips", str(tmp_path / "vgg.pth"), "--output", str(output)]
    assert script.main(argv) == 0
    assert "wrote 31 tensors" in capsys.readouterr().out
    loaded = LPIPS.from_pretrained(output)
    for key, value in loaded.state_dict().items():
        torch.testing.assert_close(value, source[key], rtol=0, atol=0, msg=key)

    del heads["lin4.model.1.weight"]
    torch.save(heads, tmp_path / "vgg_incomplete.pth")
    argv[3] = str(tmp_path / "vgg_incomplete.pth")
    assert script.main(argv) == 1
    assert "missing keys ['lin4.model.1.weight']" in capsys.readouterr().err


class _NotATensor:
    pass


def test_convert_script_refuses_pickled_objects(tmp_path, capsys):
    torch.save({"features.0.weight": _NotATensor()}, tmp_path / "evil.pth")
    torch.save({}, tmp_path / "vgg.pth")
    argv = [
        "--vgg16",
        str(tmp_path / "evil.pth"),
        "--lpips",
        str(tmp_path / "vgg.pth"),
        "--output",
        str(tmp_path / "x.safetensors"),
    ]
    assert load_script("convert_lpips_weights").main(argv) == 1
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()


# ----- GAN losses -----

REAL = torch.tensor([2.0, 0.5, -1.0])
FAKE = torch.tensor([-2.0, 0.0, 0.5])


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_hinge_losses_against_hand_computation():
    # relu(1 - real) = (0, 0.5, 2), relu(1 + fake) = (0, 1, 1.5): (2.5/3 + 2.5/3) / 2 = 5/6
    torch.testing.assert_close(hinge_d_loss(REAL, FAKE), torch.tensor(5 / 6))
    torch.testing.assert_close(hinge_g_loss(FAKE), torch.tensor(0.5))


def test_non_saturating_losses_against_hand_computation():
    d_real = sum(softplus(-r) for r in REAL.tolist()) / 3
    d_fake = sum(softplus(f) for f in FAKE.tolist()) / 3
    torch.testing.assert_close(non_saturating_d_loss(REAL, FAKE), torch.tensor(0.5 * (d_real + d_fake)))
    g = sum(softplus(-f) for f in FAKE.tolist()) / 3
    torch.testing.assert_close(non_saturating_g_loss(FAKE), torch.tensor(g))
    # stable for confident logits: -log(sigmoid(-100)) = 100, not inf
    torch.testing.assert_close(non_saturating_g_loss(torch.tensor([-100.0])), torch.tensor(100.0))


def test_gan_losses_mapping():
    assert GAN_LOSSES["hinge"] == (hinge_d_loss, hinge_g_loss)
    assert GAN_LOSSES["non_saturating"] == (non_saturating_d_loss, non_saturating_g_loss)


def _tiny_decoder_losses(gan_scale: float):
    # "decoder" y = W x with W (2, 3) = 0, x = (1, 2, 2) (|x| = 3), target t = (3, 4) (|t| = 5).
    # L_rec = |W x - t|^2 -> grad 2 (W x - t) x^T, norm 2 * 5 * 3 = 30.
    # L_gan = -gan_scale * c . (W x), c = (0.6, 0.8) -> grad -gan_scale c x^T, norm 3 * gan_scale.
    weight = nn.Parameter(torch.zeros(2, 3))
    y = weight @ torch.tensor([1.0, 2.0, 2.0])
    rec = (y - torch.tensor([3.0, 4.0])).pow(2).sum()
    gan = -gan_scale * (torch.tensor([0.6, 0.8]) * y).sum()
    return weight, rec, gan


def test_adaptive_weight_against_hand_computation():
    weight, rec, gan = _tiny_decoder_losses(gan_scale=2.0)
    value = adaptive_weight(rec, gan, weight)
    torch.testing.assert_close(value, torch.tensor(30.0 / (6.0 + 1e-4)))
    assert not value.requires_grad
    (rec + value * gan).backward()  # the graphs were retained for the training step's backward
    assert weight.grad is not None


def test_adaptive_weight_is_clamped():
    weight, rec, gan = _tiny_decoder_losses(gan_scale=1e-6)  # 30 / (3e-6 + 1e-4) ~ 2.9e5
    torch.testing.assert_close(adaptive_weight(rec, gan, weight), torch.tensor(1e4))
    weight, rec, gan = _tiny_decoder_losses(gan_scale=2.0)
    torch.testing.assert_close(adaptive_weight(rec, gan, weight, max_weight=3.0), torch.tensor(3.0))
    weight, rec, gan = _tiny_decoder_losses(gan_scale=0.0)  # vanishing adversarial gradient: eps keeps it finite
    torch.testing.assert_close(adaptive_weight(rec, gan, weight, max_weight=1e9), torch.tensor(30.0 / 1e-4))


def test_lecam_update_and_penalty_against_hand_computation():
    lecam = LeCAM(decay=0.9)
    with pytest.raises(RuntimeError, match="call update"):
        lecam.penalty(REAL, FAKE)
    lecam.update(torch.tensor([1.0, 3.0]), torch.tensor([-1.0, -3.0]))  # first update: the batch means
    torch.testing.assert_close((lecam.ema_real, lecam.ema_fake), (torch.tensor(2.0), torch.tensor(-2.0)))
    lecam.update(torch.tensor([4.0, 4.0]), torch.tensor([1.0, -1.0]))  # 0.9 * 2 + 0.1 * 4, 0.9 * -2 + 0.1 * 0
    torch.testing.assert_close((lecam.ema_real, lecam.ema_fake), (torch.tensor(2.2), torch.tensor(-1.8)))
    # relu(real - ema_fake) = relu(1, -1) = (1, 0) -> 0.5; relu(ema_real - fake) = relu(2, -0.5) = (2, 0) -> 2
    real = torch.tensor([-0.8, -2.8], requires_grad=True)
    fake = torch.tensor([0.2, 2.7], requires_grad=True)
    penalty = lecam.penalty(real, fake)
    torch.testing.assert_close(penalty, torch.tensor(2.5))
    penalty.backward()
    torch.testing.assert_close(real.grad, torch.tensor([1.0, 0.0]))  # d/dr (r + 1.8)^2 / 2 = r + 1.8
    torch.testing.assert_close(fake.grad, torch.tensor([-2.0, 0.0]))  # d/df (2.2 - f)^2 / 2 = -(2.2 - f)


def test_lecam_state_dict_round_trip():
    lecam = LeCAM()
    lecam.update(torch.tensor([1.0, 2.0]), torch.tensor([-1.0]))
    lecam.update(torch.tensor([0.5]), torch.tensor([0.0]))
    restored = LeCAM()
    restored.load_state_dict(lecam.state_dict())
    assert set(lecam.state_dict()) == {"ema_real", "ema_fake", "num_updates"}
    assert restored.num_updates.item() == 2
    torch.testing.assert_close(restored.penalty(REAL, FAKE), lecam.penalty(REAL, FAKE), rtol=0, atol=0)
    with pytest.raises(ValueError, match="decay"):
        LeCAM(decay=1.0)
