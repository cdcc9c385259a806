"""Held-out metrics of a sequence VAE (MusicVAE): reconstruction accuracy with and without teacher forcing, the
ELBO and its KL, and the active latent units (posterior collapse)."""

from __future__ import annotations

import torch

from ..utils.errors import UsageError
from ..utils.torch_utils import evaluating, module_device


@torch.no_grad()
def sequence_metrics(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    batch_size: int = 64,
    threshold: float = 0.01,
    seed: int = 0,
) -> dict[str, float | int]:
    """Metrics of a sequence VAE over held-out sequences `input_ids` (N, T):

    - `accuracy`: tokens predicted right with teacher forcing, decoding the posterior mean;
    - `sampled_accuracy`: tokens right when the sequence is decoded from the posterior mean without teacher forcing
      (greedy, each step fed its own prediction): MusicVAE's "sampled" reconstruction accuracy;
    - `reconstruction_nll` (nats per sequence, z drawn from the posterior), `kl` (nats per sequence) and
      `negative_elbo` (their sum: an upper bound on -log p(x) per sequence, with one posterior sample each, seeded by
      `seed`);
    - `active_units`: latent dimensions whose posterior mean varies over the data by more than `threshold`
      (Burda et al. 2016), of `num_latent_dims`.
    """
    if input_ids.ndim != 2 or len(input_ids) == 0:
        raise UsageError(f"sequence_metrics takes held-out sequences (N, T), got shape {tuple(input_ids.shape)}")
    device = module_device(model)
    generator = torch.Generator(device).manual_seed(seed)
    correct = sampled_correct = 0
    nll = kl = 0.0
    means = []
    with evaluating(model):
        for batch in input_ids.split(batch_size):
            batch = batch.to(device)
            teacher_forced = model(batch)  # eval mode: z is the posterior mean
            correct += (teacher_forced.logits.argmax(-1) == batch).sum().item()
            sampled = model.reconstruct(batch, temperature=0.0)
            sampled_correct += (sampled == batch).sum().item()
            drawn = model(batch, sample_posterior=True, generator=generator)
            nll += drawn.reconstruction_loss.item() * len(batch)
            kl += drawn.kl.double().sum().item()
            means.append(teacher_forced.latent_mean.double().cpu())
    count, tokens = len(input_ids), input_ids.numel()
    means = torch.cat(means)
    activity = means.var(dim=0, unbiased=False)  # (D,)
    return {
        "accuracy": correct / tokens,
        "sampled_accuracy": sampled_correct / tokens,
        "reconstruction_nll": nll / count,
        "kl": kl / count,
        "negative_elbo": (nll + kl) / count,
        "active_units": int((activity > threshold).sum()),
        "num_latent_dims": len(activity),
        "num_sequences": count,
    }
