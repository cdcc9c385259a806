import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from hf_vq import FSQ, VectorQuantizer
from hf_vq.modules.quantizers import nearest_codes


def grid(rows: list[list[float]], height: int = 1) -> torch.Tensor:
    """Vectors (N, C) -> latents (1, C, height, N / height) whose row-major positions are the vectors."""
    t = torch.tensor(rows)
    return t.T.reshape(1, t.shape[1], height, t.shape[0] // height).contiguous()


def quantizer_with_codes(codes: list[list[float]], **kwargs) -> VectorQuantizer:
    quantizer = VectorQuantizer(len(codes), len(codes[0]), **kwargs)
    with torch.no_grad():
        quantizer.embedding.weight.copy_(torch.tensor(codes))
        quantizer.use_pretrained_codebook()
    return quantizer


def test_loss_terms_against_a_hand_computation():
    quantizer = quantizer_with_codes([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]], beta=0.25)
    out = quantizer(grid([[0.1, 0.2], [0.9, 1.0]]))
    assert out.indices.tolist() == [[[0, 1]]]
    torch.testing.assert_close(out.quantized, grid([[0.0, 0.0], [1.0, 1.0]]), rtol=0, atol=0)
    squared_error = (0.1**2 + 0.2**2 + 0.1**2 + 0.0**2) / 4  # mean over the 4 elements
    assert out.codebook_loss.item() == pytest.approx(squared_error)
    assert out.commitment_loss.item() == pytest.approx(squared_error)
    assert out.loss.item() == pytest.approx(squared_error * (1 + 0.25))
    # two of three codes used, once each
    assert out.usage.item() == pytest.approx(2 / 3)
    assert out.perplexity.item() == pytest.approx(2.0)


def test_beta_weights_the_commitment_term_not_the_codebook_term():
    quantizer = quantizer_with_codes([[0.0], [10.0]], beta=0.5)
    latents = grid([[1.0]]).requires_grad_(True)
    out = quantizer(latents)
    out.loss.backward()
    # d/dz of 0.5 * (z - e)^2 = 0.5 * 2 * (1 - 0) = 1.0; d/de of (e - z)^2 = 2 * (0 - 1) = -2
    assert latents.grad.item() == pytest.approx(1.0)
    assert quantizer.embedding.weight.grad[0].item() == pytest.approx(-2.0)
    assert quantizer.embedding.weight.grad[1].item() == 0.0


def test_straight_through_gradient_reaches_the_encoder_but_not_the_codebook():
    quantizer = VectorQuantizer(16, 4)
    latents = torch.randn(2, 4, 3, 3, requires_grad=True)
    out = quantizer(latents)
    (out.quantized * torch.arange(4.0).view(1, 4, 1, 1)).sum().backward()
    torch.testing.assert_close(latents.grad, torch.arange(4.0).view(1, 4, 1, 1).expand_as(latents))
    assert quantizer.embedding.weight.grad is None or quantizer.embedding.weight.grad.abs().sum() == 0


def test_codebook_learns_only_through_the_codebook_term():
    quantizer = VectorQuantizer(16, 4)
    latents = torch.randn(2, 4, 3, 3, requires_grad=True)
    out = quantizer(latents)
    out.codebook_loss.backward(retain_graph=True)
    assert latents.grad is None or latents.grad.abs().sum() == 0
    assert quantizer.embedding.weight.grad.abs().sum() > 0
    quantizer.embedding.weight.grad = None
    out.commitment_loss.backward()
    assert latents.grad.abs().sum() > 0
    assert quantizer.embedding.weight.grad is None or quantizer.embedding.weight.grad.abs().sum() == 0


def test_quantized_values_are_exactly_codebook_vectors_in_training_too():
    quantizer = VectorQuantizer(32, 8).train()
    latents = torch.randn(2, 8, 4, 4, requires_grad=True)
    out = quantizer(latents)
    torch.testing.assert_close(out.quantized, quantizer.embed_indices(out.indices), rtol=0, atol=0)


def mixture(num_points: int, centers: torch.Tensor, std: float, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(len(centers), (num_points,), generator=generator)
    return centers[labels] + std * torch.randn(num_points, centers.shape[1], generator=generator)


CENTERS = torch.tensor([[3.0, 3.0], [-3.0, 3.0], [3.0, -3.0], [-3.0, -3.0]])


def test_ema_converges_to_the_cluster_means_on_a_toy_mixture():
    quantizer = quantizer_with_codes((CENTERS * 0.5).tolist(), codebook_update="ema", ema_decay=0.9).train()
    assert not quantizer.embedding.weight.requires_grad
    points = mixture(4096, CENTERS, std=0.5)
    for step in range(150):
        batch = points[torch.randint(len(points), (256,), generator=torch.Generator().manual_seed(step))]
        out = quantizer(grid(batch.tolist(), height=16))
        assert out.codebook_loss.item() == 0.0
    assignment = torch.cdist(points, CENTERS).argmin(dim=1)
    means = torch.stack([points[assignment == k].mean(dim=0) for k in range(4)])
    torch.testing.assert_close(quantizer.embedding.weight, means, rtol=0, atol=0.1)


def test_dead_codes_are_revived_from_recent_latents():
    codes = [[0.0, 0.0]] + [[100.0 + i, 100.0] for i in range(7)]  # codes 1..7 are far from every latent
    quantizer = quantizer_with_codes(codes, dead_code_threshold=2).train()
    latents = grid(mixture(64, CENTERS[:1], std=0.3).tolist(), height=8)
    first = quantizer(latents)
    assert first.usage.item() == pytest.approx(1 / 8)
    quantizer(latents)  # second step without using codes 1..7: they reach the threshold ...
    assert quantizer.steps_unused[1:].tolist() == [2] * 7
    third = quantizer(latents)  # ... and are re-seeded before the next search
    revived = quantizer.embedding.weight[1:]
    assert revived.sub(CENTERS[0]).norm(dim=1).max() < 2.0  # re-seeded among the latents
    assert third.usage.item() > 1 / 8
    assert quantizer.steps_unused.max() <= 1  # counters restart with the new codes


def test_restarts_seed_each_dead_code_from_a_different_latent_and_defer_the_rest():
    # 12 far codes die at once but a step has only 4 latents: 4 are re-seeded, each from a different latent (a code
    # seeded from an already used latent would duplicate it and lose every search), the other 8 wait for the next
    # steps, lowest indices first.
    codes = [[0.0, 0.0]] + [[100.0 + i, 100.0] for i in range(12)]
    quantizer = quantizer_with_codes(codes, dead_code_threshold=2).train()
    latents = grid([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    quantizer(latents)
    quantizer(latents)  # the 12 far codes reach the threshold
    quantizer(latents)
    weight = quantizer.embedding.weight
    vectors = latents[0].flatten(1).T  # (4, 2)
    assert sorted(map(tuple, weight[1:5].tolist())) == sorted(map(tuple, vectors.tolist()))
    assert weight[5:, 0].tolist() == [100.0 + i for i in range(4, 12)]  # not re-seeded yet
    assert quantizer.steps_unused[5:].tolist() == [3] * 8  # still dead: first in line at the next step
    quantizer(latents)
    assert weight[5:9].abs().max() <= 1.0  # re-seeded among the latents
    assert weight[9:, 0].tolist() == [108.0, 109.0, 110.0, 111.0]


def test_dead_code_restart_with_a_learned_l2_codebook_keeps_backward_working():
    quantizer = VectorQuantizer(8, 4, use_l2_norm=True, dead_code_threshold=1).train()
    for _ in range(3):
        out = quantizer(torch.randn(2, 4, 4, 4, requires_grad=True))
        out.loss.backward()


def test_kmeans_init_from_the_first_training_batch():
    quantizer = VectorQuantizer(4, 2, kmeans_init=True)
    assert not bool(quantizer.initialized)
    points = mixture(1024, CENTERS, std=0.2)
    quantizer.eval()
    quantizer(grid(points.tolist(), height=32))
    assert not bool(quantizer.initialized)  # evaluation never initializes
    quantizer.train()
    out = quantizer(grid(points.tolist(), height=32))
    assert bool(quantizer.initialized)
    distance_to_nearest_code = torch.cdist(CENTERS, quantizer.embedding.weight).min(dim=1).values
    assert distance_to_nearest_code.max() < 0.2
    assert out.usage.item() == 1.0


def test_codes_kmeans_leaves_unchosen_are_restarted_from_the_next_batches():
    # 12 codes but 4 latents in the first batch: k-means can place only 4 codes, the other 8 repeat seeds. They are
    # dead at once (not after the 50-step threshold) and re-seeded from the next batches, at most 4 per step.
    quantizer = VectorQuantizer(12, 2, kmeans_init=True, dead_code_threshold=50).train()
    quantizer(grid([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]))
    assert (quantizer.steps_unused == 50).sum() == 8  # the next search will find them dead
    second = grid([[2.0, 2.0], [2.0, -2.0], [-2.0, 2.0], [-2.0, -2.0]])
    quantizer(second)
    assert (quantizer.steps_unused >= 50).sum() == 4
    placed = {tuple(code) for code in quantizer.embedding.weight.tolist()}
    assert {tuple(v) for v in second[0].flatten(1).T.tolist()} <= placed  # re-seeded from the second batch
    quantizer(grid([[3.0, 0.0], [0.0, 3.0], [-3.0, 0.0], [0.0, -3.0]]))
    assert (quantizer.steps_unused >= 50).sum() == 0
    assert len({tuple(code) for code in quantizer.embedding.weight.tolist()}) == 12  # no duplicates left


def test_chunked_search_equals_brute_force():
    generator = torch.Generator().manual_seed(0)
    vectors, codebook = torch.randn(1000, 16, generator=generator), torch.randn(300, 16, generator=generator)
    expected = torch.cdist(vectors.double(), codebook.double()).argmin(dim=1)
    for chunk_elements in (300 * 7, 2**24):  # 7 rows per chunk, and one chunk
        torch.testing.assert_close(nearest_codes(vectors, codebook, chunk_elements), expected, rtol=0, atol=0)


def test_bf16_autocast_keeps_the_quantizer_in_float32():
    quantizer = VectorQuantizer(64, 8)
    with torch.no_grad():
        quantizer.embedding.weight.normal_()
    latents = torch.randn(2, 8, 4, 4).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = quantizer(latents)
    assert out.quantized.dtype == torch.float32 and out.loss.dtype == torch.float32
    rows = latents.float().permute(0, 2, 3, 1).reshape(-1, 8)
    expected = torch.cdist(rows.double(), quantizer.embedding.weight.double()).argmin(dim=1)
    assert torch.equal(out.indices.flatten(), expected)


def test_l2_normalized_codes_are_unit_vectors():
    quantizer = VectorQuantizer(16, 4, use_l2_norm=True)
    out = quantizer(torch.randn(2, 4, 3, 3) * 5)
    torch.testing.assert_close(out.quantized.norm(dim=1), torch.ones(2, 3, 3))


def test_factorized_codebook_searches_in_the_low_dimension():
    quantizer = VectorQuantizer(32, 16, codebook_dim=4, use_l2_norm=True).eval()
    assert quantizer.embedding.weight.shape == (32, 4)
    assert quantizer.in_proj.weight.shape == (4, 16) and quantizer.out_proj.weight.shape == (16, 4)
    latents = torch.randn(2, 16, 3, 3, requires_grad=True)
    out = quantizer(latents)
    assert out.quantized.shape == (2, 16, 3, 3)
    torch.testing.assert_close(out.quantized, quantizer.embed_indices(out.indices), rtol=0, atol=0)
    out.quantized.sum().backward()
    assert latents.grad.abs().sum() > 0 and quantizer.in_proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"codebook_dim": 8}, "codebook_dim"),  # not smaller than embedding_dim
        ({"codebook_update": "kmeans"}, "codebook_update"),
        ({"ema_decay": 1.0}, "ema_decay"),
        ({"beta": -1.0}, "beta"),
        ({"dead_code_threshold": 0}, "dead_code_threshold"),
        ({"entropy_weight": -0.1}, "entropy_weight"),
        ({"entropy_temperature": 0.0}, "entropy_temperature"),
    ],
)
def test_bad_options_raise(kwargs, field):
    with pytest.raises(ValueError, match=field):
        VectorQuantizer(16, 8, **kwargs)


def test_bad_latents_and_indices_raise():
    quantizer = VectorQuantizer(16, 8)
    with pytest.raises(ValueError, match="batch, 8, height, width"):
        quantizer(torch.zeros(1, 4, 2, 2))
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        quantizer.embed_indices(torch.tensor([[[0, 16]]]))
    with pytest.raises(ValueError, match="integer"):
        quantizer.embed_indices(torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="batch, height, width"):
        quantizer.embed_indices(torch.zeros(1, 4, dtype=torch.long))


def test_fsq_codes_indices_and_gradients():
    fsq = FSQ([3, 4])
    assert fsq.num_embeddings == 12
    latents = (torch.randn(4, 2, 8, 8) * 3).requires_grad_(True)
    out = fsq(latents)
    values = out.quantized.detach()
    assert set(values[:, 0].unique().tolist()) <= {-1.0, 0.0, 1.0}  # 3 levels, half width 1
    assert set(values[:, 1].unique().tolist()) <= {-1.0, -0.5, 0.0, 0.5}  # 4 levels, half width 2
    assert out.indices.min() >= 0 and out.indices.max() < 12
    assert out.indices.unique().numel() == 12  # large inputs reach every code
    torch.testing.assert_close(fsq.embed_indices(out.indices), out.quantized, rtol=0, atol=0)
    assert out.loss.item() == 0.0
    out.quantized.sum().backward()
    assert latents.grad.abs().sum() > 0


def test_fsq_index_is_the_mixed_radix_number_of_its_levels():
    fsq = FSQ([3, 4])
    codes = fsq.embed_indices(torch.arange(12).view(1, 3, 4))  # (1, 2, 3, 4)
    digits = torch.stack([codes[0, 0] + 1, codes[0, 1] * 2 + 2]).flatten(1)  # level indices per code
    assert torch.equal(digits[0] + 3 * digits[1], torch.arange(12.0))


def test_fsq_with_projections():
    fsq = FSQ([8, 5, 5, 5], embedding_dim=16).eval()
    assert fsq.num_embeddings == 1000
    out = fsq(torch.randn(2, 16, 4, 4))
    assert out.quantized.shape == (2, 16, 4, 4)
    torch.testing.assert_close(fsq.embed_indices(out.indices), out.quantized, rtol=0, atol=0)
    with pytest.raises(ValueError, match="levels"):
        FSQ([8, 1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ema_worker(rank: int, world_size: int, port: int, shards: torch.Tensor, codes: torch.Tensor, results) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        ema = quantizer_with_codes(codes.tolist(), codebook_update="ema", ema_decay=0.5).train()
        restarts = quantizer_with_codes(codes.tolist(), codebook_update="ema", dead_code_threshold=1).train()
        for step in range(3):
            latents = grid(shards[rank, step].tolist(), height=8)
            ema(latents)
            restarts(latents)
        results[rank] = (ema.embedding.weight.detach().clone(), restarts.embedding.weight.detach().clone())
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ema_and_dead_code_statistics_are_all_reduced_across_processes():
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    codes = torch.cat([CENTERS * 0.5, torch.tensor([[50.0, 50.0]])])  # code 4 is dead from the start
    points = mixture(2 * 3 * 64, CENTERS, std=0.5).view(2, 3, 64, 2)  # (rank, step, N, 2)
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_ema_worker, args=(2, _free_port(), points, codes, results), nprocs=2, join=True)
        (ema_0, restarts_0), (ema_1, restarts_1) = results[0], results[1]
    # every rank keeps the same codebook ...
    torch.testing.assert_close(ema_0, ema_1, rtol=0, atol=0)
    torch.testing.assert_close(restarts_0, restarts_1, rtol=0, atol=0)
    assert restarts_0[4].abs().max() < 10  # the dead code was re-seeded among the latents
    # ... and it is the codebook of one process that sees both shards of every step
    single = quantizer_with_codes(codes.tolist(), codebook_update="ema", ema_decay=0.5).train()
    for step in range(3):
        single(grid(points[:, step].reshape(-1, 2).tolist(), height=16))
    torch.testing.assert_close(ema_0, single.embedding.weight, rtol=0, atol=1e-5)
    assert not torch.allclose(ema_0, codes)  # the EMA moved the codes


def test_search_returns_the_first_of_tied_codes_like_argmin():
    generator = torch.Generator().manual_seed(1)
    codebook = torch.randn(256, 8, generator=generator)
    codebook[200] = codebook[3]  # an exact duplicate in another block of 128 codes
    codebook[130] = codebook[129]  # and one in the same block
    vectors = torch.cat([codebook[[3, 129, 200, 130]], torch.randn(500, 8, generator=generator)])
    indices = nearest_codes(vectors, codebook)
    scores = codebook.pow(2).sum(1) - 2 * vectors @ codebook.T
    assert torch.equal(indices, scores.argmin(dim=1))
    assert indices[:4].tolist() == [3, 129, 3, 129]
