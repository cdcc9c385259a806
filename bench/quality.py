"""Section `quality`: a VQ-GAN trained for the same number of steps on builtin:photos with each quantizer, at
K = 1024 and 16384 codes (and 2^18 for LFQ): plain VQ (diffusers-style: codebook trained by its loss term, no
normalization, random init, no restarts), hf_vq's VQ settings, the same with the rotation trick, SimVQ, residual VQ at
depth 2 and 4 (the same bits per position), and LFQ. Held-out PSNR, codebook usage and perplexity over the held-out
set (and usage over crops of the training photographs); and the time of one training step of each quantizer alone,
against the same quantizer of vector-quantize-pytorch, interleaved in one process."""

from __future__ import annotations

import importlib.util
import json
import math
import statistics
import tempfile
from pathlib import Path

from common import Timing, run_isolated, run_isolated_per_core, summary_row, table, time_interleaved

TITLE = "Quality at equal compute: plain VQ, hf_vq's settings and the quantizers of the state of the art"

MODEL = {
    "block_out_channels": [32, 64, 128], "layers_per_block": 1, "norm_num_groups": 16, "latent_channels": 32,
    "vq_embed_dim": 32, "sample_size": 32,
}  # fmt: skip
HF_VQ = {
    "vq_codebook_update": "ema", "vq_use_l2_norm": True, "vq_codebook_dim": 8, "vq_kmeans_init": True,
    "vq_dead_code_threshold": 20,
}  # fmt: skip
# Residual stages subtract codes in vq_embed_dim, unnormalized: the config refuses vq_use_l2_norm and vq_codebook_dim
# there, so its stages keep the rest of hf_vq's settings (EMA, k-means, restarts).
RESIDUAL = {"quantizer_type": "residual", "vq_codebook_update": "ema", "vq_kmeans_init": True,
            "vq_dead_code_threshold": 20}  # fmt: skip
# hf_vq's settings with codes of dimension 4 instead of 8, the rotation trick and the code entropy penalty (MaskGIT's
# and LlamaGen's, at their temperature): the setting that keeps every code of K = 16,384 in use on held-out photos.
ENTROPY = {**HF_VQ, "vq_codebook_dim": 4, "vq_gradient": "rotation", "vq_entropy_weight": 0.05}
# The quantizers' config fields (`vq_dead_code_threshold` is scaled with the codebook size, see `model_settings`).
QUANTIZERS = {
    "plain": {"vq_codebook_update": "loss"},
    "hf_vq": HF_VQ,
    "rotation": {**HF_VQ, "vq_gradient": "rotation"},
    "simvq": {"quantizer_type": "simvq"},
    "residual2": {**RESIDUAL, "residual_depth": 2},
    "residual4": {**RESIDUAL, "residual_depth": 4},
    "lfq": {"quantizer_type": "lfq"},
    "entropy": ENTROPY,
}
LABELS = {
    "plain": "plain VQ (diffusers-style)",
    "hf_vq": "hf_vq settings",
    "rotation": "hf_vq settings + rotation trick",
    "simvq": "SimVQ",
    "residual2": "residual VQ, depth 2",
    "residual4": "residual VQ, depth 4",
    "lfq": "LFQ",
    "entropy": "hf_vq settings, codes of dimension 4 + rotation trick + entropy penalty",
}
SIZES = (1024, 16384)
# The K whose usage goal is judged on the means over GOAL_SEEDS, in the section quality_goal (its own runs).
GOAL_SIZE = 16384
GOAL_SEEDS = (0, 1, 2, 3, 4)
LFQ_SIZES = (1024, 16384, 2**18)  # LFQ's K is a power of 2: 10, 14 and 18 bits
BATCH = 16
LATENT_SIDE = 8  # 8x8 codes per 32x32 crop
LATENTS_PER_STEP = BATCH * LATENT_SIDE * LATENT_SIDE
# Held-out crops: 512,000 code slots, 31 per code at K = 16384. With 1,000 crops (64,000 slots) even a perfectly
# uniform code distribution would leave 1 - exp(-64000 / 16384) = 98% of the codes as the ceiling, and any real one
# far less: the set must be large for usage to measure the codebook rather than the sample.
EVAL_CROPS = 8000
# The quantizer timing: one training step of the quantizer alone, ours and the peer's interleaved.
SPEED_REPEATS, SPEED_WARMUP, SPEED_BUDGET_S = 30, 3, 60
HEADERS = ["K", "quantizer", "bits per position", "dead-code threshold (steps)", "held-out PSNR (dB)",
           "codebook usage", "perplexity", "distinct codes used", "usage on training-photo crops",
           "quantizer step (ms)"]  # fmt: skip
SPEED_HEADERS = ["K", "quantizer", "vector-quantize-pytorch module", "hf_vq ms, median (min-max)",
                 "peer ms, median (min-max)", "speed-up (ratio of medians)", "runs"]  # fmt: skip


def sizes(quantizer: str) -> tuple[int, ...]:
    return LFQ_SIZES if quantizer == "lfq" else SIZES


def cases() -> list[tuple[str, int]]:
    """Every (quantizer, K) measured, by K then in `QUANTIZERS` order."""
    return [(quantizer, codes) for codes in LFQ_SIZES for quantizer in QUANTIZERS if codes in sizes(quantizer)]


def depth(quantizer: str) -> int:
    return QUANTIZERS[quantizer].get("residual_depth", 1)


def codebook_size(quantizer: str, codes: int) -> int:
    """Codes per codebook: K, or for residual VQ K^(1/depth) rounded, the same bits per position as K
    (1,024 -> 32 x 32 or 6^4 = 1,296; 16,384 -> 128 x 128 or 11^4 = 14,641)."""
    return round(codes ** (1 / depth(quantizer)))


def bits_per_position(quantizer: str, codes: int) -> float:
    return depth(quantizer) * math.log2(codebook_size(quantizer, codes))


def model_settings(quantizer: str, codes: int) -> dict:
    """The quantizer's config fields for a codebook of K = `codes` (`num_vq_embeddings` included)."""
    size = codebook_size(quantizer, codes)
    settings = {**QUANTIZERS[quantizer], "num_vq_embeddings": size}
    if "vq_dead_code_threshold" in settings:
        # A code used at the average rate is hit threshold * 1024 / K times per window (1,024 latents per step):
        # ~20 at K = 1024, and at K = 16384 still 6 with 96 steps; with 20 there, 29% of such codes would be
        # restarted at every check (P(no hit) = exp(-1.25)) and never settle.
        settings["vq_dead_code_threshold"] = max(20, 6 * size // LATENTS_PER_STEP)
    return settings


# ----- worker entry points (each runs in a child process of its own) -----


def code_statistics(model, crops) -> dict:
    """Usage and perplexity of each codebook (one per stage of residual VQ) over the codes of `crops`, and the distinct
    codes of a position (for residual VQ, the tuples of its stages' codes) used, of the possible ones."""
    import torch

    from hf_vq.metrics import codebook_perplexity, codebook_usage, evaluating, image_batches

    size, stages = model.config.num_vq_embeddings, model.config.codes_per_position
    with evaluating(model):
        # batches of 64, as the trainer's held-out metrics: the same computation, the same indices
        indices = torch.cat([model.encode_indices(batch) for batch in image_batches(crops, 64)])
    indices = indices.reshape(-1, stages)  # (crops * 8 * 8, stages)
    # a position's code as one number, the first stage least significant: (crops * 8 * 8,)
    positions = (indices * size ** torch.arange(stages)).sum(dim=1)
    return {
        "usage": [codebook_usage(indices[:, k], size) for k in range(stages)],
        "perplexity": [codebook_perplexity(indices[:, k], size) for k in range(stages)],
        "distinct": torch.unique(positions).numel(),
        "possible": size**stages,
        "slots": positions.numel(),
    }


def train(settings: dict, steps: int, eval_crops: int, output_dir: str, seed: int = 0) -> dict:
    """Run in a fresh process: one training run through `training/train_vqgan.py`'s loop with the quantizer config
    fields `settings` and `seed`; its held-out PSNR, and the codebook statistics over the held-out crops and over as
    many fixed crops of the training photographs."""
    import hf_vq
    from hf_vq.data import load_eval_images
    from hf_vq.training import main

    config = Path(output_dir) / "model.json"
    Path(output_dir).mkdir(parents=True)
    config.write_text(json.dumps({**MODEL, **settings}))
    run = Path(output_dir) / "run"
    # The discriminator neither trains nor reaches the generator (both starts after the last step): the comparison
    # is of the quantizers under one reconstruction objective.
    metrics = main("vqgan", [
        "--output_dir", str(run), "--dataset", "builtin:photos", "--resolution", "32",
        "--model_config", str(config), "--max_train_steps", str(steps), "--train_batch_size", str(BATCH),
        "--learning_rate", "2e-4", "--disc_start", str(10 * steps), "--disc_train_start", str(10 * steps),
        "--checkpointing_steps", str(steps), "--validation_steps", str(steps),
        "--max_eval_images", str(eval_crops), "--report_to", "none", "--seed", str(seed),
    ])  # fmt: skip
    # The trainer's held-out usage is the mean over the codebooks; the table shows each codebook's too.
    result = {key: metrics[f"eval_{key}"] for key in ("psnr", "codebook_usage", "codebook_perplexity", "num_images")}
    model = hf_vq.VQGANModel.from_pretrained(run / "model")
    for name, split in (("held_out", "test"), ("train", "train")):  # "test": the trainer's held-out split
        crops = load_eval_images("builtin:photos", split, MODEL["sample_size"], limit=eval_crops)
        result[name] = code_statistics(model, crops)
    return result


def peer_quantizer(quantizer: str, codes: int):
    """vector-quantize-pytorch's quantizer closest to ours: its module, and a function of latents (B, C, H, W) ->
    (quantized latents (B, C, H, W), loss)."""
    import vector_quantize_pytorch as vqp

    dim, size = MODEL["vq_embed_dim"], codebook_size(quantizer, codes)
    settings = model_settings(quantizer, codes)
    if quantizer == "lfq":
        # inv_temperature 100 = our temperature 0.01; entropy_loss_weight * (H_sample - diversity_gamma * H_batch)
        # = our 0.1 H_sample - 0.1 H_batch; projections 32 -> log2(K) -> 32, as ours.
        module = vqp.LFQ(dim=dim, codebook_size=size, entropy_loss_weight=0.1, diversity_gamma=1.0,
                         commitment_loss_weight=0.25, channel_first=True)  # fmt: skip

        def forward(x):
            output = module(x)
            return output.quantized, output.entropy_aux_loss  # entropy terms and commitment, weighted

        return module, forward
    if quantizer == "simvq":
        # rotation_trick defaults to True there; ours is straight-through. Its loss is ours: ||sg[z] - q||^2
        # + 0.25 ||z - sg[q]||^2.
        module = vqp.SimVQ(dim=dim, codebook_size=size, channel_first=True, rotation_trick=False)
        return module, lambda x: first_and_last(module(x))
    # VectorQuantize's codebook: EMA with kmeans and restarts, or learned through its loss term (plain)
    if settings.get("vq_codebook_update") == "ema":
        # Its restarts take codes whose EMA cluster size is below a threshold: the size an average code (N / K hits
        # per step) falls to after our threshold's steps unused, at decay 0.99.
        threshold = LATENTS_PER_STEP / size * 0.99 ** settings["vq_dead_code_threshold"]
        codebook = dict(decay=0.99, kmeans_init=True, kmeans_iters=10, threshold_ema_dead_code=threshold)
    else:
        codebook = dict(ema_update=False, learnable_codebook=True)
    if settings.get("vq_use_l2_norm"):
        codebook.update(use_cosine_sim=True, codebook_dim=settings["vq_codebook_dim"])
    if settings.get("vq_entropy_weight"):
        # its batch-entropy term over softmax(similarity * temperature): our -||z - e||^2 / T = 2 cos / T + const
        # for unit vectors, so 2 / T = 200; it has no per-sample term.
        codebook.update(codebook_diversity_loss_weight=settings["vq_entropy_weight"],
                        codebook_diversity_temperature=2 / 0.01)  # fmt: skip
    # rotation_trick defaults to True in vector-quantize-pytorch: set it as ours
    rotation = settings.get("vq_gradient") == "rotation"
    if quantizer.startswith("residual"):
        # ResidualVQ(accept_image_fmap=True) fails in its residual bookkeeping, which assumes channels last: it takes
        # sequences (B, H*W, C), the reshapes inside its timed call.
        module = vqp.ResidualVQ(dim=dim, num_quantizers=depth(quantizer), codebook_size=size, commitment_weight=0.25,
                                rotation_trick=rotation, **codebook)  # fmt: skip

        def forward(x):
            batch, channels, height, width = x.shape
            quantized, _, losses = module(x.flatten(2).transpose(1, 2))  # (B, H*W, C) in and out
            return quantized.transpose(1, 2).reshape(batch, channels, height, width), losses.sum()  # loss per stage

        return module, forward
    module = vqp.VectorQuantize(dim=dim, codebook_size=size, accept_image_fmap=True, commitment_weight=0.25,
                                rotation_trick=rotation, **codebook)  # fmt: skip
    return module, lambda x: first_and_last(module(x))


def first_and_last(output: tuple):
    """(quantized, indices, loss) -> (quantized, loss)."""
    return output[0], output[-1]


def speed(pairs: list[tuple[str, int]], repeats: int, warmup: int, budget_s: float) -> dict:
    """Run in a fresh process: one training step (forward and backward, training mode) of each quantizer alone on
    latents (16, 32, 8, 8), ours and vector-quantize-pytorch's interleaved: per "quantizer-K", the times in seconds
    of each and the peer's class."""
    import torch

    from hf_vq import VQGANConfig
    from hf_vq.modules import build_quantizer

    generator = torch.Generator().manual_seed(0)
    shape = (BATCH, MODEL["vq_embed_dim"], LATENT_SIDE, LATENT_SIDE)
    latents = torch.randn(shape, generator=generator)
    upstream = torch.randn(shape, generator=generator)  # the decoder's gradient, fixed

    def step(forward):
        def call() -> None:
            quantized, loss = forward(latents.clone().requires_grad_())
            ((quantized * upstream).sum() + loss).backward()

        return call

    def forward_ours(module):
        def forward(x):
            output = module(x)
            return output.quantized, output.loss

        return forward

    results = {}
    for quantizer, codes in pairs:
        torch.manual_seed(0)
        ours = build_quantizer(VQGANConfig(**MODEL, **model_settings(quantizer, codes))).train()
        peer, forward_peer = peer_quantizer(quantizer, codes)
        peer.train()
        timings = time_interleaved({"ours": step(forward_ours(ours)), "peer": step(forward_peer)}, repeats, warmup,
                                   budget_s)  # fmt: skip
        name = type(peer).__name__ + (" (rotation_trick=True)" if getattr(peer, "rotation_trick", False) else "")
        results[f"{quantizer}-{codes}"] = {
            "ours": timings["ours"].times,
            "peer": timings["peer"].times,
            "module": name,
        }
    return results


# ----- the section -----


def check_peer() -> None:
    if importlib.util.find_spec("vector_quantize_pytorch") is None:
        raise RuntimeError(
            "section quality times its quantizers against vector-quantize-pytorch, which is not installed: "
            "pip install -e '.[dev]'"
        )


def usage_cell(stats: dict) -> str:
    """The usage of the codebook, or for residual VQ the mean of its codebooks' and each one's."""
    mean = statistics.mean(stats["usage"])
    if len(stats["usage"]) == 1:
        return f"{mean:.1%}"
    return f"{mean:.1%} ({' / '.join(f'{usage:.0%}' for usage in stats['usage'])})"


def run(quick: bool, context: dict) -> dict:
    check_peer()
    steps, eval_crops = (5, 64) if quick else (600, EVAL_CROPS)
    repeats, warmup, budget_s = (2, 1, 30) if quick else (SPEED_REPEATS, SPEED_WARMUP, SPEED_BUDGET_S)
    print("[quality] quantizer steps, hf_vq against vector-quantize-pytorch", flush=True)
    timed = run_isolated("quality:speed", timeout_s=3600, pairs=cases(), repeats=repeats, warmup=warmup,
                         budget_s=budget_s)  # fmt: skip
    # the longest runs first (the largest codebooks, the entropy penalty's), so that the cores finish together
    ordered = sorted(cases(), key=lambda case: (case[1], case[0] == "entropy"), reverse=True)
    print(f"[quality] {len(ordered)} training runs of {steps} steps, one per core at a time", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        calls = [
            dict(settings=model_settings(quantizer, codes), steps=steps, eval_crops=eval_crops,
                 output_dir=str(Path(scratch) / f"{quantizer}-{codes}"))
            for quantizer, codes in ordered
        ]  # fmt: skip
        results = dict(zip(ordered, run_isolated_per_core("quality:train", calls, timeout_s=3600), strict=True))
    ours = {case: Timing(timed[f"{case[0]}-{case[1]}"]["ours"]) for case in cases()}
    peer = {case: Timing(timed[f"{case[0]}-{case[1]}"]["peer"]) for case in cases()}
    rows, speed_rows = [], []
    for quantizer, codes in cases():
        result, held_out = results[quantizer, codes], results[quantizer, codes]["held_out"]
        threshold = model_settings(quantizer, codes).get("vq_dead_code_threshold", "-")
        bits = bits_per_position(quantizer, codes)
        size = codebook_size(quantizer, codes)
        label = LABELS[quantizer] + (f" ({size} per stage)" if depth(quantizer) > 1 else "")
        rows.append([
            f"{codes:,}", label, f"{bits:.2f}".rstrip("0").rstrip("."), threshold, f"{result['psnr']:.2f}",
            usage_cell(held_out), f"{statistics.mean(held_out['perplexity']):,.0f}",
            f"{held_out['distinct']:,} of {held_out['possible']:,}", usage_cell(result["train"]),
            f"{1000 * ours[quantizer, codes].median:.1f}",
        ])  # fmt: skip
        ratio = peer[quantizer, codes].median / ours[quantizer, codes].median
        speed_rows.append([
            f"{codes:,}", label, timed[f"{quantizer}-{codes}"]["module"], ms_cell(ours[quantizer, codes]),
            ms_cell(peer[quantizer, codes]), f"**{ratio:.2f}x**",
            f"{ours[quantizer, codes].runs} / {peer[quantizer, codes].runs}",
        ])  # fmt: skip
    return {
        "title": TITLE,
        "parts": [
            {"text": setup_text(steps, results[cases()[0]]["num_images"])},
            {"table": table(HEADERS, rows)},
            {"heading": "Quantizer step: hf_vq against vector-quantize-pytorch", "text": SPEED_TEXT,
             "table": table(SPEED_HEADERS, speed_rows)},
        ],
        "summary": summary(results, ours, peer, steps),
    }  # fmt: skip


def ms_cell(timing: Timing) -> str:
    median, low, high = (1000 * value for value in (timing.median, min(timing.times), max(timing.times)))
    digits = 1 if median >= 10 else 2
    return f"{median:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def summary(results: dict, ours: dict, peer: dict, steps: int) -> list[dict]:
    rows = []
    for codes in SIZES:
        plain, hf_vq = results["plain", codes], results["hf_vq", codes]
        plain_usage, hf_vq_usage = plain["held_out"]["usage"][0], hf_vq["held_out"]["usage"][0]
        figure = f"codebook usage and held-out PSNR at K = {codes:,}, plain VQ -> hf_vq, {steps} equal steps"
        result = f"usage {plain_usage:.1%} -> {hf_vq_usage:.1%}; PSNR {plain['psnr']:.2f} -> {hf_vq['psnr']:.2f} dB"
        if codes == GOAL_SIZE:  # one seed: the figure, without a verdict
            goal = f"usage >= 95%: judged over {len(GOAL_SEEDS)} seeds in quality_goal"
            rows.append(summary_row(figure, result, goal))
            continue
        met = hf_vq_usage >= 0.95 and hf_vq["psnr"] > plain["psnr"]
        rows.append(summary_row(figure, result, "usage >= 95%, higher PSNR", met))
    ratios = {case: peer[case].median / ours[case].median for case in ours}
    slowest = min(ratios, key=ratios.get)
    rows.append(summary_row(
        "quantizer training step (forward + backward), hf_vq against vector-quantize-pytorch, each quantizer and K",
        f"{sum(ratio >= 1 for ratio in ratios.values())} of {len(ratios)} at least as fast; slowest "
        f"{ratios[slowest]:.2f}x ({LABELS[slowest[0]]}, K = {slowest[1]:,}); median "
        f"{statistics.median(ratios.values()):.2f}x",
        ">= 1x for each", min(ratios.values()) >= 1,
    ))  # fmt: skip
    return rows


def setup_text(steps: int, images: int) -> str:
    hf_vq = ", ".join(f"{name}={value}" for name, value in HF_VQ.items() if "threshold" not in name)
    return (
        f"VQ-GAN {MODEL['block_out_channels']} (f4: 8x8 codes per 32x32 crop), latents of dimension 32, trained "
        f"{steps} steps at batch {BATCH} ({LATENTS_PER_STEP:,} latents per step) on random 32x32 crops of "
        "`builtin:photos` (no adversarial term and no discriminator: the same reconstruction objective for all), "
        "learning rate 2e-4, seed 0, one run per row, each in a process of its own. Plain: "
        "`vq_codebook_update=loss`, random codebook, no normalization, no restarts. hf_vq settings: "
        f"{hf_vq}, and vq_dead_code_threshold scaled with K (a code used at the average rate is hit ~6 times or "
        "more in the window). Rotation trick: the same with `vq_gradient=rotation`. SimVQ: `quantizer_type=simvq` "
        "(a frozen N(0, 1/D) codebook through a learned linear map; no codebook options apply). Residual VQ: "
        "`quantizer_type=residual`, one codebook per stage of K^(1/depth) codes rounded (the bits per position "
        "column gives what that makes), with hf_vq's settings but the two the config refuses for residual stages "
        "(vq_use_l2_norm and vq_codebook_dim: the stages subtract codes in the latent space): EMA, k-means init, "
        "restarts. LFQ: `quantizer_type=lfq`, its defaults (commitment 0.25, entropy and diversity weights 0.1, "
        "temperature 0.01, batch entropy over groups of at most 10 bits, projections 32 -> log2(K) -> 32). Entropy "
        "penalty: hf_vq settings with codes of dimension 4 (`vq_codebook_dim=4`), the rotation trick and "
        f"`vq_entropy_weight={ENTROPY['vq_entropy_weight']}` (MaskGIT's and LlamaGen's code entropy penalty at their "
        "temperature 0.01: each latent's distribution over its 64 nearest codes sharpened, the batch's spread).\n\n"
        f"Held-out: {images:,} fixed crops of the three held-out photographs ({64 * images:,} code slots). Usage "
        "is the share of a codebook's codes used over that whole set, perplexity the exponential of its code "
        "histogram's entropy; residual VQ has one codebook per stage: its usage is the mean over the stages, each "
        "stage's in parentheses, and its perplexity the mean of the stages'. *Distinct codes used* counts the "
        "different codes of a position over the set (for residual VQ the tuples of its stages' codes) out of the "
        f"possible ones; at K = 2^18 the set's {64 * images:,} slots allow at most "
        f"{1 - math.exp(-64 * images / 2**18):.0%} of the codes even if they were drawn uniformly, so LFQ's usage "
        "there measures the sample as much as the quantizer. The training-photo column counts usage over as many "
        "fixed crops of the training photographs: codes the training distribution still reaches (the held-out "
        "photographs are a cat, coffee and a flower, while the training ones include a star field, microscopy and "
        "a retina). *Quantizer step*: hf_vq's median from the table below. Goals: usage >= 95% at both sizes with "
        "hf_vq settings and higher PSNR than plain VQ. The goal of every code of K = 16,384 in use is judged over "
        "five seeds in the section that follows (`quality_goal`)."
    )


SPEED_TEXT = """\
One training step of the quantizer alone: forward in training mode (codebook maintenance included: k-means on the
first call, EMA, restarts) and backward of `sum(quantized * g) + loss`, g a fixed random tensor standing in for the
decoder's gradient, on latents (16, 32, 8, 8) (the shape of a training batch above), float32. Ours is
`build_quantizer` of the row's config; the peer is vector-quantize-pytorch's module of the same K and dimensions,
configured as close to ours as it allows: `VectorQuantize(dim=32, codebook_size=K, accept_image_fmap=True,
commitment_weight=0.25)` with `ema_update=False, learnable_codebook=True` for plain VQ and `decay=0.99,
kmeans_init=True, use_cosine_sim=True, codebook_dim=8` for hf_vq settings (`codebook_dim=4` and
`codebook_diversity_loss_weight=0.05, codebook_diversity_temperature=200` for the entropy penalty's row: its batch term
alone, over the whole (N, K) similarity matrix); `rotation_trick` set explicitly (it
defaults to True there), True for the rotation row only; its restarts take codes whose EMA cluster size falls below
`threshold_ema_dead_code`, set to the size a code used at the average rate (1,024 / K hits per step) decays to
after our threshold's steps unused, `1024 / K * 0.99^T`. `ResidualVQ(num_quantizers=depth, codebook_size=K per
stage)` with the same EMA settings (no cosine, no factorization, as ours); `SimVQ(dim=32, codebook_size=K,
channel_first=True, rotation_trick=False)` (its map has no bias, ours has one); `LFQ(dim=32, codebook_size=K,
entropy_loss_weight=0.1, diversity_gamma=1, commitment_loss_weight=0.25, channel_first=True)` at its default
inverse temperature 100 (our temperature 0.01). vector-quantize-pytorch's LFQ computes its entropies from the whole
(N, K) code distribution: at K = 2^18 that is 1 GiB per (1024, 2^18) float32 tensor, several of them in the forward
and the backward, where ours works on groups of at most 10 bits (its batch entropy then is an upper bound, see
`hf_vq.LFQ`). Every module runs on the CPU as it is, with one exception: `ResidualVQ(accept_image_fmap=True)` fails
(its residual bookkeeping assumes channels last), so it takes the latents as sequences (B, H*W, C), the reshapes
counted in its time. Its k-means at K = 16,384 warns that it samples duplicates (1,024 latents for 16,384 codes);
ours restarts the codes no latent of the first batch chose from the next batches. Both in one process, fresh modules
per row, warm-up calls first (k-means happens there), then rounds calling each once in turn until 30 rounds or a
minute; the speed-up is the peer's median over ours."""
