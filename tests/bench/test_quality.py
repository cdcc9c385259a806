"""The quality sections' bookkeeping (no training): the settings of each run, the codebook sizes of residual VQ at
equal bits, the per-stage code statistics, and the quantizer timing against vector-quantize-pytorch on small cases."""

import math
import sys
from types import SimpleNamespace

import pytest
import torch

import hf_vq

from ..conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))

import common  # noqa: E402
import quality  # noqa: E402
import quality_goal  # noqa: E402


def test_the_earlier_rows_keep_their_settings():
    assert quality.model_settings("plain", 1024) == {"vq_codebook_update": "loss", "num_vq_embeddings": 1024}
    hf_vq_settings = {
        "vq_codebook_update": "ema",
        "vq_use_l2_norm": True,
        "vq_codebook_dim": 8,
        "vq_kmeans_init": True,
    }
    assert quality.model_settings("hf_vq", 1024) == {
        **hf_vq_settings, "vq_dead_code_threshold": 20, "num_vq_embeddings": 1024
    }  # fmt: skip
    assert quality.model_settings("hf_vq", 16384) == {
        **hf_vq_settings, "vq_dead_code_threshold": 96, "num_vq_embeddings": 16384
    }  # fmt: skip
    assert quality.model_settings("rotation", 16384) == {
        **quality.model_settings("hf_vq", 16384),
        "vq_gradient": "rotation",
    }


def test_every_run_is_a_valid_config_at_the_bits_of_its_k():
    cases = quality.cases()
    assert len(cases) == 17 and ("lfq", 2**18) in cases and ("simvq", 2**18) not in cases
    expected = {("residual2", 1024): (32, 10), ("residual4", 1024): (6, 4 * math.log2(6)),
                ("residual2", 16384): (128, 14), ("residual4", 16384): (11, 4 * math.log2(11))}  # fmt: skip
    for quantizer, codes in cases:
        settings = quality.model_settings(quantizer, codes)
        config = hf_vq.VQGANConfig(**quality.MODEL, **settings)  # refused options would fail here, not an hour in
        assert config.codes_per_position == quality.depth(quantizer)
        size, bits = expected.get((quantizer, codes), (codes, math.log2(codes)))
        assert config.num_vq_embeddings == quality.codebook_size(quantizer, codes) == size
        assert quality.bits_per_position(quantizer, codes) == pytest.approx(bits)


class FixedCodes(torch.nn.Module):
    """Stands in for a VQ model: encodes every batch of crops to the given code grids."""

    def __init__(self, indices: torch.Tensor, size: int):
        super().__init__()
        self.indices = indices
        self.config = SimpleNamespace(num_vq_embeddings=size, codes_per_position=indices.shape[-1])

    def encode_indices(self, batch: torch.Tensor) -> torch.Tensor:
        assert not self.training
        return self.indices[batch[:, 0, 0, 0].long()]


def test_code_statistics_per_stage_and_distinct_tuples():
    # two crops of 1x3 positions, depth 2, 4 codes per stage: stage 0 uses codes 0 and 1 three times each, stage 1
    # all four (0 and 1 twice, 2 and 3 once); 4 distinct tuples in 6 slots
    indices = torch.tensor([[[[0, 0], [1, 1], [0, 0]]], [[[0, 2], [1, 3], [1, 1]]]])  # (2, 1, 3, 2)
    crops = torch.arange(2.0).view(2, 1, 1, 1).expand(2, 3, 4, 4)  # the crop's number in its first pixel
    stats = quality.code_statistics(FixedCodes(indices, 4), crops)
    assert stats["usage"] == [0.5, 1.0]
    probs = torch.tensor([1 / 3, 1 / 3, 1 / 6, 1 / 6])
    assert stats["perplexity"] == pytest.approx([2.0, math.exp(-(probs * probs.log()).sum().item())])
    assert (stats["distinct"], stats["possible"], stats["slots"]) == (4, 16, 6)


def test_quantizer_steps_against_the_peer():
    pytest.importorskip("vector_quantize_pytorch")
    pairs = [(quantizer, 1024) for quantizer in quality.QUANTIZERS]
    timed = quality.speed(pairs, repeats=1, warmup=1, budget_s=10)
    assert set(timed) == {f"{quantizer}-1024" for quantizer in quality.QUANTIZERS}
    for result in timed.values():
        assert len(result["ours"]) == len(result["peer"]) == 1 and min(result["ours"] + result["peer"]) > 0
    assert timed["rotation-1024"]["module"] == "VectorQuantize (rotation_trick=True)"
    assert timed["plain-1024"]["module"] == "VectorQuantize"  # the peer's default is the rotation trick: turned off
    assert [timed[f"{name}-1024"]["module"] for name in ("simvq", "residual4", "lfq")] == [
        "SimVQ",
        "ResidualVQ",
        "LFQ",
    ]


def fake_run(usage: float, psnr: float) -> dict:
    stats = {"usage": [usage], "perplexity": [100.0], "distinct": 10, "possible": 16, "slots": 64}
    return {"psnr": psnr, "held_out": stats, "train": stats}


def test_the_goal_candidates_are_valid_configs_and_the_penalty_decays_over_two_thirds_of_the_steps():
    assert quality_goal.settings("hf_vq", 600) == quality.model_settings("hf_vq", 16384)
    decayed = quality_goal.settings("entropy_decay", 600)
    assert decayed == {**quality.model_settings("entropy", 16384), "vq_entropy_decay_steps": 400}
    for candidate in quality_goal.CANDIDATES:
        hf_vq.VQGANConfig(**quality.MODEL, **quality_goal.settings(candidate, 600))
    assert quality_goal.settings("entropy_decay", 5)["vq_entropy_decay_steps"] == 3  # --quick


def test_the_goal_is_judged_on_the_means_over_seeds():
    # hf_vq: mean usage 90%, PSNR 22.0; the decayed penalty: one seed above 95% but a mean below, the better PSNR
    seeded = {}
    usages = [(0.9, 0.96), (0.89, 0.94), (0.91, 0.93), (0.9, 0.94), (0.9, 0.94)]
    for seed, (hf_vq_usage, entropy_usage) in zip(quality_goal.SEEDS, usages, strict=True):
        seeded["hf_vq", seed] = fake_run(hf_vq_usage, 22.0)
        seeded["entropy_decay", seed] = fake_run(entropy_usage, 22.5)
    (goal,) = quality_goal.summary(seeded, steps=600)
    assert goal["met"] is False
    assert f"{quality_goal.LABELS['entropy_decay']}: usage 94.2%, PSNR 22.50 dB" in goal["result"]
    assert "hf_vq settings: usage 90.0%, PSNR 22.00 dB" in goal["result"]
    seeded["entropy_decay", quality_goal.SEEDS[1]] = fake_run(0.99, 22.5)  # mean 95.2%
    assert quality_goal.summary(seeded, steps=600)[0]["met"] is True
    seeded["entropy_decay", quality_goal.SEEDS[1]] = fake_run(0.99, 21.0)  # mean PSNR 22.2: still above 22.0
    assert quality_goal.summary(seeded, steps=600)[0]["met"] is True
    seeded["entropy_decay", quality_goal.SEEDS[2]] = fake_run(0.99, 21.0)  # mean PSNR 21.9: below
    assert quality_goal.summary(seeded, steps=600)[0]["met"] is False
    rows = quality_goal.rows(seeded)
    assert rows[1][:3] == [quality_goal.LABELS["entropy_decay"], "96.0% / 99.0% / 99.0% / 94.0% / 94.0%", "96.4%"]


def test_the_quality_summary_judges_k_1024_and_leaves_the_16384_goal_to_quality_goal():
    results = {("plain", codes): fake_run(0.02, 18.0) for codes in quality.SIZES}
    results |= {("hf_vq", codes): fake_run(0.999, 21.0) for codes in quality.SIZES}
    timings = {("hf_vq", 1024): common.Timing([0.001, 0.002]), ("lfq", 2**18): common.Timing([0.01])}
    peer = {case: common.Timing([3 * t for t in timing.times]) for case, timing in timings.items()}
    small, goal_size, speed = quality.summary(results, timings, peer, steps=600)
    assert "K = 1,024" in small["figure"] and small["met"] is True
    assert "K = 16,384" in goal_size["figure"] and goal_size["met"] is None and "quality_goal" in goal_size["goal"]
    assert goal_size["result"] == "usage 2.0% -> 99.9%; PSNR 18.00 -> 21.00 dB"
    assert speed["met"] is True and speed["result"].startswith("2 of 2 at least as fast; slowest 3.00x")
