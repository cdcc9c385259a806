"""LFQ, SimVQ, residual quantization and the rotation trick (`hf_vq.modules.quantizers`): their codes, losses and
gradients against hand and brute-force computations, and their statistics across processes."""

import math
import os

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from hf_vq import LFQ, ResidualVectorQuantizer, SimVQ, VectorQuantizer
from hf_vq.modules.quantizers import straight_through

from .test_quantizers import _free_port, grid, quantizer_with_codes


def rows_of(latents: torch.Tensor) -> torch.Tensor:
    return latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1])  # (B*H*W, C)


# ----- the rotation trick -----


@pytest.mark.parametrize(
    ("latent", "code", "upstream", "expected"),
    [
        # e = (3, 0) -> q = (0, 2): R is the rotation by +90 degrees, s = 2/3; the gradient is s R^T g.
        ((3.0, 0.0), (0.0, 2.0), (1.0, 2.0), (2 / 3 * 2.0, 2 / 3 * -1.0)),
        # e = (1, 1) -> q = (2, 0): R is the rotation by -45 degrees, s = sqrt(2); R^T = [[c, -s], [s, c]].
        ((1.0, 1.0), (2.0, 0.0), (1.0, 0.0), (1.0, 1.0)),
        ((1.0, 1.0), (2.0, 0.0), (0.0, 1.0), (-1.0, 1.0)),
    ],
)
def test_rotation_trick_gradient_is_the_hand_computed_rotation(latent, code, upstream, expected):
    quantizer = quantizer_with_codes([list(code), [-50.0, -50.0]], gradient="rotation")
    latents = grid([list(latent)]).requires_grad_(True)
    out = quantizer(latents)
    assert out.indices.tolist() == [[[0]]]
    torch.testing.assert_close(out.quantized, grid([list(code)]), rtol=0, atol=0)  # the value is the code, exactly
    (out.quantized * grid([list(upstream)])).sum().backward()
    torch.testing.assert_close(latents.grad, grid([list(expected)]), rtol=0, atol=1e-6)
    # with the straight-through estimator the same upstream gradient is copied
    latents.grad = None
    quantizer.gradient = "ste"
    (quantizer(latents).quantized * grid([list(upstream)])).sum().backward()
    torch.testing.assert_close(latents.grad, grid([list(upstream)]), rtol=0, atol=0)


def test_rotation_trick_rescales_and_rotates_random_gradients():
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(64, 8, generator=generator, dtype=torch.float64, requires_grad=True)
    z_q = torch.randn(64, 8, generator=generator, dtype=torch.float64)
    upstream = torch.randn(64, 8, generator=generator, dtype=torch.float64)
    out = straight_through(z, z_q, "rotation")
    assert torch.equal(out, z_q)
    (out * upstream).sum().backward()
    scale = z_q.norm(dim=1) / z.detach().norm(dim=1)
    # R is orthogonal: the gradient's norm is only rescaled by |q| / |e| ...
    torch.testing.assert_close(z.grad.norm(dim=1), scale * upstream.norm(dim=1))
    # ... and R^T g is g expressed in the frame that R maps onto e's: <R^T g, e_hat> = <g, q_hat>
    e_hat, q_hat = F.normalize(z.detach(), dim=1), F.normalize(z_q, dim=1)
    torch.testing.assert_close((z.grad / scale[:, None] * e_hat).sum(1), (upstream * q_hat).sum(1))


def test_rotation_trick_leaves_codes_and_loss_terms_unchanged():
    generator = torch.Generator().manual_seed(3)
    latents = torch.randn(2, 4, 3, 3, generator=generator)
    ste, rotation = VectorQuantizer(16, 4), VectorQuantizer(16, 4, gradient="rotation")
    rotation.load_state_dict(ste.state_dict())
    a, b = ste(latents), rotation(latents)
    for name in ("quantized", "indices", "codebook_loss", "commitment_loss", "loss"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=0, atol=0, msg=name)
    with pytest.raises(ValueError, match="gradient"):
        VectorQuantizer(16, 4, gradient="gumbel")


# ----- LFQ -----


def test_lfq_codes_are_signs_and_indices_their_packed_bits():
    lfq = LFQ(16, 4, code_scale=0.5)
    assert lfq.bits == 4 and lfq.in_proj is None  # 4 channels are the 4 bits: no projection
    latents = torch.randn(2, 4, 5, 3, requires_grad=True)
    out = lfq(latents)
    assert out.quantized.shape == (2, 4, 5, 3) and out.indices.shape == (2, 5, 3)
    assert out.indices.dtype == torch.int64 and 0 <= out.indices.min() and out.indices.max() < 16
    torch.testing.assert_close(out.quantized, torch.where(latents > 0, 0.5, -0.5), rtol=0, atol=0)
    weights = torch.tensor([1, 2, 4, 8]).view(1, 4, 1, 1)  # channel 0 is the least significant bit
    assert torch.equal(out.indices, ((latents > 0).long() * weights).sum(dim=1))
    torch.testing.assert_close(lfq.embed_indices(out.indices), out.quantized, rtol=0, atol=0)
    assert out.codebook_loss.item() == 0.0
    out.quantized.sum().backward()
    torch.testing.assert_close(latents.grad, torch.ones_like(latents))  # straight through the signs


def test_lfq_projects_to_its_bits_and_gradients_reach_the_latents():
    lfq = LFQ(64, 8).eval()
    assert lfq.in_proj.weight.shape == (6, 8) and lfq.out_proj.weight.shape == (8, 6)
    latents = torch.randn(2, 8, 4, 4, requires_grad=True)
    out = lfq(latents)
    assert out.quantized.shape == (2, 8, 4, 4) and out.indices.max() < 64
    torch.testing.assert_close(lfq.embed_indices(out.indices), out.quantized, rtol=0, atol=0)
    (out.quantized.square().mean() + out.loss).backward()
    assert latents.grad.abs().sum() > 0 and lfq.in_proj.weight.grad.abs().sum() > 0


def brute_force_distribution(z: torch.Tensor, scale: float, temperature: float) -> torch.Tensor:
    """p(c | z) over every code of LFQ (N, 2^d), the softmax of -||z - c||^2 / T, in LFQ's index order."""
    bits = z.shape[1]
    index = torch.arange(2**bits)
    codes = torch.where(((index[:, None] >> torch.arange(bits)) & 1).bool(), scale, -scale).to(z.dtype)  # (2^d, d)
    return torch.softmax(-torch.cdist(z, codes).square() / temperature, dim=1)


def entropy(probs: torch.Tensor) -> torch.Tensor:
    return -(probs * torch.log(probs.clamp(min=1e-300))).sum(dim=-1)


def assert_equal_with_gradients(z: torch.Tensor, terms: tuple, expected: tuple) -> None:
    """Each of `terms` equals its `expected` value, and so does its gradient with respect to z: the penalty pulls the
    encoder through both entropies (the batch one spreads the codes only through its gradient)."""
    for term, reference in zip(terms, expected, strict=True):
        torch.testing.assert_close(term, reference)
        (gradient,) = torch.autograd.grad(term, z, retain_graph=True)
        (reference_gradient,) = torch.autograd.grad(reference, z, retain_graph=True)
        assert reference_gradient.abs().max() > 0
        torch.testing.assert_close(gradient, reference_gradient)


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_lfq_entropies_with_one_group_equal_the_brute_force_ones(scale):
    z = torch.randn(50, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    lfq = LFQ(64, 6, temperature=0.7, group_bits=6, code_scale=scale)
    assert lfq.group_sizes == [6]
    z.requires_grad_()
    per_sample, batch = lfq.entropy_terms(z)
    probs = brute_force_distribution(z, scale, 0.7)  # (50, 64)
    assert_equal_with_gradients(z, (per_sample, batch), (entropy(probs).mean(), entropy(probs.mean(dim=0))))


def test_lfq_grouped_batch_entropy_is_the_sum_of_group_marginals_and_bounds_the_joint():
    # Three groups of 2 bits. The per-sample entropy stays exact (the bits are independent given z); the batch
    # entropy becomes the sum of the entropies of each group's exact marginal, >= the joint one (subadditivity).
    z = torch.randn(40, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64) + 0.3
    lfq = LFQ(64, 6, temperature=1.0, group_bits=2)
    assert lfq.group_sizes == [2, 2, 2]
    per_sample, batch = lfq.entropy_terms(z)
    probs = brute_force_distribution(z, 1.0, 1.0)  # (40, 64)
    torch.testing.assert_close(per_sample, entropy(probs).mean())
    joint = probs.mean(dim=0).view(4, 4, 4)  # q over (bits 4-5, bits 2-3, bits 0-1)
    marginals = [joint.sum(dim=(0, 1)), joint.sum(dim=(0, 2)), joint.sum(dim=(1, 2))]
    torch.testing.assert_close(batch, sum(entropy(m) for m in marginals))
    assert batch > entropy(joint.flatten()) + 1e-6


def brute_force_code_distribution(z: torch.Tensor, codebook: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(-||z - e_k||^2 / T) over every code: (N, K)."""
    return torch.softmax(-torch.cdist(z, codebook).pow(2) / temperature, dim=1)


@pytest.mark.parametrize("l2", [False, True])
def test_vq_entropy_terms_equal_the_brute_force_ones(l2):
    generator = torch.Generator().manual_seed(0)
    vq = VectorQuantizer(48, 5, use_l2_norm=l2, entropy_weight=0.1, entropy_temperature=0.3).double()
    torch.nn.init.normal_(vq.embedding.weight, generator=generator)
    z = torch.randn(30, 5, generator=generator, dtype=torch.float64)
    z = (F.normalize(z, dim=1) if l2 else z).requires_grad_()
    probs = brute_force_code_distribution(z, vq.codebook().double(), 0.3)  # (30, 48)
    per_sample, batch = vq.entropy_terms(z, top_k=48)  # every code: exact
    assert_equal_with_gradients(z, (per_sample, batch), (entropy(probs).mean(), entropy(probs.mean(dim=0))))
    # over each row's 16 nearest codes: the distribution renormalized on them; exact where they hold all the mass
    top = probs.topk(16, dim=1)
    kept = torch.zeros_like(probs).scatter(1, top.indices, top.values / top.values.sum(dim=1, keepdim=True))
    per_sample, batch = vq.entropy_terms(z, top_k=16)
    assert_equal_with_gradients(z, (per_sample, batch), (entropy(kept).mean(), entropy(kept.mean(dim=0))))


def test_vq_entropy_penalty_enters_the_training_loss_only_and_moves_the_encoder():
    torch.manual_seed(0)
    vq = VectorQuantizer(32, 6, beta=0.25, codebook_dim=3, use_l2_norm=True, entropy_weight=0.2).train()
    latents = torch.randn(2, 6, 4, 4, requires_grad=True)
    out = vq(latents)
    per_sample, batch = vq.entropy_terms(vq._project_in(rows_of(latents)))
    torch.testing.assert_close(out.loss, out.codebook_loss + 0.25 * out.commitment_loss + 0.2 * (per_sample - batch))
    # the penalty's gradient reaches the latents and the input projection (the codes themselves are unchanged)
    (0.2 * (per_sample - batch)).backward()
    assert latents.grad.abs().sum() > 0 and vq.in_proj.weight.grad.abs().sum() > 0
    eval_out = vq.eval()(latents)
    torch.testing.assert_close(eval_out.loss, eval_out.codebook_loss + 0.25 * eval_out.commitment_loss)
    assert torch.equal(eval_out.indices, out.indices)


def test_vq_entropy_weight_decays_linearly_over_the_training_steps_then_stays_off():
    torch.manual_seed(0)
    vq = VectorQuantizer(32, 6, codebook_dim=3, use_l2_norm=True, entropy_weight=0.2, entropy_decay_steps=4).train()
    latents = torch.randn(2, 6, 4, 4)
    for step, weight in enumerate([0.2, 0.15, 0.1, 0.05, 0.0, 0.0]):
        assert vq.entropy_steps.item() == step and vq.current_entropy_weight() == pytest.approx(weight)
        out = vq(latents)
        per_sample, batch = vq.entropy_terms(vq._project_in(rows_of(latents)))
        expected = out.codebook_loss + 0.25 * out.commitment_loss + weight * (per_sample - batch)
        torch.testing.assert_close(out.loss, expected)
    vq.eval()(latents)  # evaluation is not a training step
    assert vq.entropy_steps.item() == 6
    # the count is training state: a resumed run continues the schedule where it stopped
    resumed = VectorQuantizer(32, 6, codebook_dim=3, use_l2_norm=True, entropy_weight=0.2, entropy_decay_steps=8)
    resumed.load_state_dict(vq.state_dict())
    assert resumed.current_entropy_weight() == pytest.approx(0.2 * (1 - 6 / 8))
    with pytest.raises(ValueError, match="entropy_decay_steps"):
        VectorQuantizer(32, 6, entropy_weight=0.2, entropy_decay_steps=0)


def test_lfq_group_sizes_split_the_bits_evenly():
    assert LFQ(2**18, 4).group_sizes == [9, 9]
    assert LFQ(2**14, 4).group_sizes == [7, 7]
    assert LFQ(2**11, 4).group_sizes == [6, 5]
    assert LFQ(1024, 4).group_sizes == [10]
    assert LFQ(2**18, 4, group_bits=4).group_sizes == [4, 4, 4, 3, 3]


def test_lfq_loss_combines_commitment_and_the_entropy_penalty():
    lfq = LFQ(32, 5, beta=0.5, entropy_weight=0.2, diversity_weight=0.3, temperature=0.1)
    latents = torch.randn(2, 5, 3, 3)
    out = lfq(latents)
    z = rows_of(latents)
    per_sample, batch = lfq.entropy_terms(z)
    torch.testing.assert_close(out.commitment_loss, F.mse_loss(z, torch.where(z > 0, 1.0, -1.0)))
    torch.testing.assert_close(out.loss, 0.5 * out.commitment_loss + 0.2 * per_sample - 0.3 * batch)


def test_lfq_at_2_18_codes_needs_no_codebook_sized_matrix():
    lfq = LFQ(2**18, 18).train()
    latents = torch.randn(2, 18, 16, 16, requires_grad=True)
    out = lfq(latents)  # (512, 2^18) probabilities would be 512 MiB; the two groups of 9 bits need 1 MiB
    assert out.indices.max() < 2**18 and math.isfinite(out.loss.item())
    out.loss.backward()
    assert torch.isfinite(latents.grad).all() and latents.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_embeddings": 48}, "power of 2"),
        ({"num_embeddings": 2**25}, "num_embeddings"),
        ({"group_bits": 0}, "group_bits"),
        ({"group_bits": 17}, "group_bits"),
        ({"temperature": 0.0}, "temperature"),
        ({"code_scale": -1.0}, "code_scale"),
        ({"diversity_weight": -0.1}, "diversity_weight"),
    ],
)
def test_lfq_bad_options_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LFQ(**{"num_embeddings": 64, "embedding_dim": 4, **kwargs})


# ----- SimVQ -----


def test_simvq_searches_the_transformed_codebook():
    simvq = SimVQ(32, 4)
    latents = torch.randn(2, 4, 3, 3, requires_grad=True)
    out = simvq(latents)
    z, codebook = rows_of(latents.detach()), simvq.codebook().detach()
    assert torch.equal(out.indices.flatten(), torch.cdist(z.double(), codebook.double()).argmin(dim=1))
    torch.testing.assert_close(out.quantized, simvq.embed_indices(out.indices), rtol=0, atol=0)
    torch.testing.assert_close(rows_of(out.quantized), codebook[out.indices.flatten()], rtol=0, atol=0)
    torch.testing.assert_close(out.loss, out.codebook_loss + 0.25 * out.commitment_loss)
    out.quantized.sum().backward()
    torch.testing.assert_close(latents.grad, torch.ones_like(latents))


def test_simvq_codebook_is_frozen_while_its_map_trains():
    simvq = SimVQ(64, 8)
    assert not simvq.embedding.weight.requires_grad
    assert simvq.embedding.weight.std().item() == pytest.approx(8**-0.5, rel=0.15)  # N(0, 1 / D)
    codebook, projection = simvq.embedding.weight.clone(), simvq.projection.weight.clone()
    optimizer = torch.optim.Adam(simvq.parameters(), lr=1e-2)
    out = simvq(torch.randn(4, 8, 4, 4))
    out.loss.backward()
    assert simvq.embedding.weight.grad is None and simvq.projection.weight.grad.abs().sum() > 0
    optimizer.step()
    assert torch.equal(simvq.embedding.weight, codebook)
    assert not torch.equal(simvq.projection.weight, projection)


def test_simvq_rotation_trick_changes_only_the_gradient():
    latents = torch.randn(2, 4, 3, 3, requires_grad=True)
    ste, rotation = SimVQ(16, 4), SimVQ(16, 4, gradient="rotation")
    rotation.load_state_dict(ste.state_dict())
    a, b = ste(latents), rotation(latents)
    torch.testing.assert_close(a.quantized, b.quantized, rtol=0, atol=0)
    (b.quantized * torch.randn_like(b.quantized)).sum().backward()
    assert latents.grad.abs().sum() > 0


# ----- residual quantization -----


def test_residual_quantization_sums_its_stages_codes():
    rvq = ResidualVectorQuantizer(16, 4, depth=3)
    with torch.no_grad():
        for stage in rvq.stages:
            stage.embedding.weight.normal_()
    latents = torch.randn(2, 4, 3, 5, requires_grad=True)
    out = rvq(latents)
    assert out.indices.shape == (2, 3, 5, 3) and out.indices.dtype == torch.int64
    assert 0 <= out.indices.min() and out.indices.max() < 16
    torch.testing.assert_close(rvq.embed_indices(out.indices), out.quantized, rtol=0, atol=0)
    # stage by stage: each stage's code is the nearest to what the previous ones left
    residual, codebook_loss = rows_of(latents.detach()), 0.0
    for k, stage in enumerate(rvq.stages):
        chosen = out.indices[..., k].flatten()
        assert torch.equal(chosen, torch.cdist(residual.double(), stage.embedding.weight.double()).argmin(dim=1))
        codebook_loss += F.mse_loss(stage.embedding.weight[chosen], residual).item()
        residual = residual - stage.embedding.weight[chosen].detach()
    assert out.codebook_loss.item() == pytest.approx(codebook_loss)  # summed over the stages
    assert out.commitment_loss.item() == pytest.approx(codebook_loss)  # the same squared errors
    # the gradient passes once through the sum, not once per stage
    out.quantized.sum().backward()
    torch.testing.assert_close(latents.grad, torch.ones_like(latents))


def test_residual_error_decreases_with_depth():
    # each stage's codebook is initialized by k-means on its own residuals of the first batch
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(4, 4, 8, 8, generator=generator)
    rvq = ResidualVectorQuantizer(16, 4, depth=4, kmeans_init=True).train()
    rvq(latents)
    out = rvq.eval()(latents)
    z, partial, errors = rows_of(latents), torch.zeros(256, 4), []
    for k, stage in enumerate(rvq.stages):
        errors.append((z - partial).square().mean().item())
        partial = partial + stage.embedding.weight[out.indices[..., k].flatten()]
    errors.append((z - partial).square().mean().item())
    assert all(later < 0.8 * earlier for earlier, later in zip(errors, errors[1:], strict=False)), errors
    torch.testing.assert_close(rows_of(out.quantized), partial, rtol=0, atol=0)


def test_residual_shared_codebook_takes_one_ema_update_per_step_from_every_stage():
    rvq = ResidualVectorQuantizer(8, 2, depth=3, shared_codebook=True, codebook_update="ema", ema_decay=0.5)
    assert len(rvq.stages) == 1
    out = rvq.train()(torch.randn(2, 2, 4, 4))
    stage = rvq.stages[0]
    # one update: 0.5 * 1 (initial) + 0.5 * (how often each code was chosen, over the 3 stages)
    counts = torch.bincount(out.indices.flatten(), minlength=8).float()
    torch.testing.assert_close(stage.ema_cluster_size, 0.5 + 0.5 * counts)
    assert out.codebook_loss.item() == 0.0
    assert rvq.eval().embed_indices(out.indices).shape == (2, 2, 4, 4)


def test_residual_bad_indices_and_options_raise():
    rvq = ResidualVectorQuantizer(16, 4, depth=2)
    with pytest.raises(ValueError, match=r"\(batch, height, width, 2\)"):
        rvq.embed_indices(torch.zeros(1, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(batch, height, width, 2\)"):
        rvq.embed_indices(torch.zeros(1, 4, 4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        rvq.embed_indices(torch.full((1, 4, 4, 2), 16))
    with pytest.raises(ValueError, match="depth"):
        ResidualVectorQuantizer(16, 4, depth=0)


# ----- statistics across processes -----


def _sync_worker(rank: int, world_size: int, port: int, shards: dict, results) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        results[rank] = _run_quantizers(shards, rank)
    finally:
        dist.destroy_process_group()


def _run_quantizers(shards: dict, rank: int | None) -> dict:
    """Three training steps of each quantizer on `shards[name][step]` (rank's half, or the whole batch when `rank`
    is None); what each keeps and reports. Gradients of LFQ's projection are averaged over ranks (as DDP does)."""
    import torch.distributed as dist

    def batch(name: str, step: int) -> torch.Tensor:
        data = shards[name][step]  # (2, B, C, H, W): the two ranks' halves
        return data[rank] if rank is not None else data.flatten(0, 1)

    torch.manual_seed(0)
    quantizers = {
        "lfq": LFQ(64, 8),
        "simvq": SimVQ(32, 4),
        "residual": ResidualVectorQuantizer(8, 2, depth=2, codebook_update="ema", ema_decay=0.5),
        "shared": ResidualVectorQuantizer(8, 2, depth=3, shared_codebook=True, codebook_update="ema", ema_decay=0.5),
    }
    report = {}
    for name, quantizer in quantizers.items():
        quantizer.train()
        for step in range(3):
            out = quantizer(batch(name, step))
            report[f"{name}.usage.{step}"] = out.usage.item()
            report[f"{name}.perplexity.{step}"] = out.perplexity.item()
        report[f"{name}.state"] = {key: value.clone() for key, value in quantizer.state_dict().items()}
    # the entropy terms' batch entropy over both halves, and so the gradient of their input projection: LFQ's and
    # VectorQuantizer's code entropy penalty
    vq = VectorQuantizer(16, 4, codebook_dim=3, use_l2_norm=True, entropy_weight=0.5, entropy_temperature=0.5).train()
    # each with the map from latent rows to the rows its entropy terms take
    penalized = {"lfq": (quantizers["lfq"], quantizers["lfq"].in_proj), "entropy": (vq, vq._project_in)}
    for name, (quantizer, rows_in) in penalized.items():
        z = rows_in(rows_of(batch(name, 0)))
        _, report[f"{name}.batch_entropy"] = (term.detach() for term in quantizer.entropy_terms(z))
        quantizer.zero_grad()
        quantizer(batch(name, 0)).loss.backward()
        grad = quantizer.in_proj.weight.grad.clone()
        if rank is not None:
            dist.all_reduce(grad)
            grad /= dist.get_world_size()
        report[f"{name}.grad"] = grad
    return report


@pytest.mark.slow
def test_lfq_simvq_residual_and_entropy_statistics_are_all_reduced_across_processes():
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    generator = torch.Generator().manual_seed(0)
    channels = {"lfq": 8, "simvq": 4, "residual": 2, "shared": 2, "entropy": 4}
    # (step, rank, B, C, H, W); LFQ's and the entropy penalty's inputs are shifted so that their usage and entropies
    # differ between the halves
    shards = {name: torch.randn(3, 2, 2, c, 4, 4, generator=generator) for name, c in channels.items()}
    shards["lfq"][:, 1] += 1.0
    shards["entropy"][:, 1] += 1.0
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_sync_worker, args=(2, _free_port(), shards, results), nprocs=2, join=True)
        ranks = [results[0], results[1]]
    single = _run_quantizers(shards, None)
    for key, expected in single.items():
        for rank, report in enumerate(ranks):
            if isinstance(expected, dict):  # the quantizer's state: codebooks, EMA statistics
                for name in expected:
                    torch.testing.assert_close(report[key][name], expected[name], atol=1e-5, rtol=0, msg=key + name)
            else:
                torch.testing.assert_close(
                    torch.as_tensor(report[key]), torch.as_tensor(expected), atol=1e-5, rtol=1e-5, msg=f"{key} {rank}"
                )
    # the halves alone would differ: the synchronized values are not trivially equal
    torch.manual_seed(0)
    alone = LFQ(64, 8).train()
    assert alone(shards["lfq"][0, 0]).usage.item() < single["lfq.usage.0"]
