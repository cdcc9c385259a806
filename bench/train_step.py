"""Section `training`: the data stream against the training step's consumption at the demo config, and a VQ-GAN
training step split into its parts (generator, LPIPS, adaptive weight, discriminator)."""

from __future__ import annotations

import itertools

import torch
from common import REPO_ROOT, summary_row, table, time_interleaved

TITLE = "Training step and data stream"

DEMO_RECIPE = REPO_ROOT / "training" / "configs" / "vqgan_digits.yaml"


def _demo_parts():
    """The demo recipe's parsed arguments, model and data loader, built as the training loop builds them."""
    from hf_vq.data import ImageStream, image_dataloader, load_image_dataset
    from hf_vq.training import FAMILIES, parse_arguments

    parsed = parse_arguments(with_gan=True, argv=["--config", str(DEMO_RECIPE), "--output_dir", "unused"])
    args = parsed.training
    family = FAMILIES["vqgan"]
    model = family.model_class(family.config_class(**parsed.model_config)).train()
    stream = ImageStream(
        load_image_dataset(args.dataset, args.dataset_split),
        args.resolution,
        num_channels=model.config.in_channels,
        shuffle_buffer=args.shuffle_buffer,
        seed=args.seed,
    )
    return parsed, model, image_dataloader(stream, args.train_batch_size)


def stream_against_step(quick: bool) -> tuple[dict, dict]:
    """The part of the section's result, and its summary row."""
    from hf_vq import PatchDiscriminator, PatchDiscriminatorConfig
    from hf_vq.losses import GAN_LOSSES, adaptive_weight

    parsed, model, loader = _demo_parts()
    args, gan = parsed.training, parsed.gan
    discriminator = PatchDiscriminator(
        PatchDiscriminatorConfig(in_channels=model.config.out_channels, **parsed.discriminator_config)
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2))
    d_optimizer = torch.optim.AdamW(discriminator.parameters(), lr=args.learning_rate)
    d_loss_fn, g_loss_fn = GAN_LOSSES[gan.disc_loss]
    batches = itertools.cycle(list(itertools.islice(iter(loader), 4)))  # the step timed on decoded batches
    stream_batches = 2 if quick else 10

    def read_stream() -> None:
        for _ in itertools.islice(iter(loader), stream_batches):
            pass

    def step(adversarial: bool) -> None:
        pixel_values = next(batches)["pixel_values"]
        output = model(pixel_values)
        reconstruction_loss = torch.nn.functional.mse_loss(output.reconstruction, pixel_values)
        loss = reconstruction_loss + args.codebook_weight * output.quantizer_loss
        if adversarial:
            discriminator.requires_grad_(False)
            g_loss = g_loss_fn(discriminator(output.reconstruction))
            weight = adaptive_weight(reconstruction_loss, g_loss, model.decoder.conv_out.weight)
            loss = loss + gan.disc_weight * weight * g_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        discriminator.requires_grad_(True)
        d_loss = d_loss_fn(discriminator(pixel_values), discriminator(output.reconstruction.detach()))
        d_optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        d_optimizer.step()

    steps = 2 if quick else 5
    timings = time_interleaved(
        {
            "stream": read_stream,
            "step": lambda: [step(False) for _ in range(steps)],
            "adversarial step": lambda: [step(True) for _ in range(steps)],
        },
        repeats=3 if quick else 5,
    )
    batch = args.train_batch_size
    stream_rate = stream_batches * batch / timings["stream"].median
    rows = [["data stream (decode, resize, batch)", timings["stream"].cell(), f"{stream_rate:,.0f}", "-"]]
    rates = {}
    for name, label in (("step", "training step, before disc_start"), ("adversarial step", "training step, GAN on")):
        rates[name] = steps * batch / timings[name].median
        rows.append([label, timings[name].cell(), f"{rates[name]:,.0f}", f"{stream_rate / rates[name]:.1f}x"])
    slowest = min(rates.values())
    summary = summary_row(
        "data stream against the demo's training step",
        f"{stream_rate / slowest:.1f}x the step's rate ({stream_rate:,.0f} vs {slowest:,.0f} images/s)",
        ">= 4x",
        stream_rate >= 4 * slowest,
    )
    text = (
        f"Demo config (`{DEMO_RECIPE.relative_to(REPO_ROOT)}`: builtin digits at {args.resolution}x{args.resolution}, "
        f"batch {batch}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters). The stream is timed "
        f"over {stream_batches} batches from a fresh iterator, the step over {steps} steps (generator and "
        "discriminator, float32), interleaved. Goal: the stream at least 4x the step's rate."
    )
    return {
        "text": text,
        "table": table(["what", "seconds, median (min-max)", "images/s", "stream / step"], rows),
    }, summary


def step_split(quick: bool) -> dict:
    """A VQ-GAN step's parts, each timed alone on the same inputs (LPIPS with random weights: same compute)."""
    import hf_vq
    from hf_vq.losses import LPIPS, adaptive_weight, hinge_d_loss, hinge_g_loss

    resolution, batch = (32, 2) if quick else (64, 8)
    config = hf_vq.VQGANConfig(
        block_out_channels=[64, 128, 128, 256], latent_channels=256, vq_embed_dim=256, num_vq_embeddings=1024,
        sample_size=resolution,
    )  # fmt: skip
    model = hf_vq.VQGANModel(config).train()
    discriminator = hf_vq.PatchDiscriminator(hf_vq.PatchDiscriminatorConfig())
    lpips = LPIPS()
    images = torch.rand(batch, 3, resolution, resolution) * 2 - 1

    def generator() -> None:
        output = model(images)
        (torch.nn.functional.l1_loss(output.reconstruction, images) + output.quantizer_loss).backward()

    fake = model(images).reconstruction.detach()

    def perceptual() -> None:
        reconstruction = fake.clone().requires_grad_(True)
        lpips(reconstruction, images).mean().backward()

    def adaptive() -> None:
        output = model(images)
        nll = torch.nn.functional.l1_loss(output.reconstruction, images) + lpips(output.reconstruction, images).mean()
        g_loss = hinge_g_loss(discriminator(output.reconstruction))
        adaptive_weight(nll, g_loss, model.decoder.conv_out.weight)

    def adaptive_forward_only() -> None:  # the same forward passes, to subtract from `adaptive`
        with torch.no_grad():
            output = model(images)
            lpips(output.reconstruction, images)
            discriminator(output.reconstruction)

    def disc() -> None:
        hinge_d_loss(discriminator(images), discriminator(fake)).backward()

    def full() -> None:
        output = model(images)
        nll = torch.nn.functional.l1_loss(output.reconstruction, images) + lpips(output.reconstruction, images).mean()
        discriminator.requires_grad_(False)
        g_loss = hinge_g_loss(discriminator(output.reconstruction))
        weight = adaptive_weight(nll, g_loss, model.decoder.conv_out.weight)
        (nll + output.quantizer_loss + 0.8 * weight * g_loss).backward()
        discriminator.requires_grad_(True)
        hinge_d_loss(discriminator(images), discriminator(output.reconstruction.detach())).backward()

    timings = time_interleaved(
        {
            "full": full,
            "generator": generator,
            "lpips": perceptual,
            "adaptive": adaptive,
            "forward": adaptive_forward_only,
            "discriminator": disc,
        },
        repeats=2 if quick else 5,
    )
    full_s = timings["full"].median
    adaptive_s = max(0.0, timings["adaptive"].median - timings["forward"].median)
    rows = [
        ["full step (all parts, as in the training loop)", timings["full"].cell(), "100%"],
        ["generator: forward + backward (L1 + quantizer)", timings["generator"].cell(),
         f"{timings['generator'].median / full_s:.0%}"],
        ["LPIPS: forward + backward", timings["lpips"].cell(), f"{timings['lpips'].median / full_s:.0%}"],
        ["adaptive weight: the two gradient norms (forward subtracted)", f"{adaptive_s:.3f}",
         f"{adaptive_s / full_s:.0%}"],
        ["discriminator: real + fake forward + backward", timings["discriminator"].cell(),
         f"{timings['discriminator'].median / full_s:.0%}"],
    ]  # fmt: skip
    parameters = sum(p.numel() for p in model.parameters()) / 1e6
    text = (
        f"VQ-GAN with block_out_channels (64, 128, 128, 256) ({parameters:.1f}M parameters), {resolution}x"
        f"{resolution}, batch {batch}, 3-layer PatchGAN, LPIPS VGG16 (random weights: the same compute), float32. "
        "Each part is timed alone, interleaved with the full step; the parts overlap a little (the full step shares "
        "one generator forward), so the shares need not add up to 100%."
    )
    return {"text": text, "table": table(["part", "seconds, median (min-max)", "share of the full step"], rows)}


def run(quick: bool, context: dict) -> dict:
    stream, summary = stream_against_step(quick)
    return {"title": TITLE, "parts": [stream, step_split(quick)], "summary": [summary]}
