"""The quantizers of `quantizer_type` "lfq", "simvq" and "residual", and the rotation trick (`vq_gradient`), inside
the VQ-GAN and the VQ-VAE: config fields and their checks, code grids, the exact index round trip, gradients,
save/load, the diffusers refusal and the card."""

import pytest
import torch
from transformers import AutoModel

import hf_vq
from hf_vq.hub.cards import render_model_card
from hf_vq.modules.quantizers import build_quantizer
from hf_vq.utils.configuration_utils import QUANTIZER_TYPES

from ..conftest import TINY_VQGAN, TINY_VQVAE, assert_state_dicts_equal, vqgan, vqvae

FAMILIES = {"vqgan": vqgan, "vqvae": vqvae}
# The tiny configs have 32 codes of dimension 4 (VQ-GAN) or 8 (VQ-VAE): LFQ projects to its 5 bits; "lfq-16" has as
# many bits as the VQ-GAN has channels (no projection).
VARIANTS = {
    "lfq": {"quantizer_type": "lfq"},
    "lfq-16": {"quantizer_type": "lfq", "num_vq_embeddings": 16, "lfq_group_bits": 2},
    "simvq": {"quantizer_type": "simvq"},
    "simvq-rotation": {"quantizer_type": "simvq", "vq_gradient": "rotation"},
    "residual": {"quantizer_type": "residual", "residual_depth": 3, "vq_kmeans_init": True},
    "residual-shared-ema": {
        "quantizer_type": "residual",
        "residual_shared_codebook": True,
        "vq_codebook_update": "ema",
        "vq_dead_code_threshold": 1,
    },
    "vq-rotation": {"vq_gradient": "rotation"},
}


def grid_shape(model, batch: int) -> tuple[int, ...]:
    side = 8 if isinstance(model, hf_vq.VQGANModel) else 4
    depth = model.config.codes_per_position
    return (batch, side, side) if depth == 1 else (batch, side, side, depth)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_round_trip_shapes_and_gradients(family, variant, images):
    model = FAMILIES[family](**VARIANTS[variant]).train()
    out = model(images)
    (out.reconstruction.square().mean() + out.quantizer_loss).backward()
    encoder = model.encoder.conv_in.weight if family == "vqgan" else model.encoder.downsamplers[0].weight
    assert encoder.grad is not None and encoder.grad.abs().sum() > 0  # through the quantizer to the encoder
    assert out.indices.shape == grid_shape(model, 4) and out.indices.dtype == torch.int64
    assert 0 <= out.indices.min() and out.indices.max() < model.config.num_vq_embeddings
    for name in ("codebook_loss", "commitment_loss", "quantizer_loss", "perplexity", "usage"):
        assert getattr(out, name).shape == () and torch.isfinite(getattr(out, name)), name
    model.eval()
    indices = model.encode_indices(images)
    assert indices.shape == grid_shape(model, 4)
    reconstruction = model(images).reconstruction
    torch.testing.assert_close(model.decode_indices(indices), reconstruction, rtol=0, atol=0)
    torch.testing.assert_close(model.decode(model.encode(images)), reconstruction, rtol=0, atol=0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_save_and_load_are_exact(tmp_path, variant, images):
    model = vqgan(**VARIANTS[variant]).train()
    model(images)  # k-means, EMA and restarts move the training state away from its initial values
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path)
    assert type(loaded.quantize) is type(model.quantize)
    fields = {key: value for key, value in model.config.to_dict().items() if key != "_name_or_path"}
    assert {key: loaded.config.to_dict()[key] for key in fields} == fields
    assert_state_dicts_equal(loaded, model)
    model.eval()
    torch.testing.assert_close(loaded(images).reconstruction, model(images).reconstruction, rtol=0, atol=0)
    torch.testing.assert_close(loaded.encode_indices(images), model.encode_indices(images), rtol=0, atol=0)


def test_simvq_model_keeps_its_codebook_frozen_and_its_initialization():
    model = vqgan(quantizer_type="simvq")
    quantize = model.quantize
    assert isinstance(quantize, hf_vq.SimVQ)
    assert not quantize.embedding.weight.requires_grad
    assert "quantize.embedding.weight" in model.state_dict() and "quantize.projection.weight" in model.state_dict()
    # post_init re-initializes linear layers but leaves the frozen N(0, 1 / D) codebook as SimVQ drew it
    big = build_quantizer(hf_vq.VQGANConfig(**{**TINY_VQGAN, "quantizer_type": "simvq", "num_vq_embeddings": 4096}))
    assert big.embedding.weight.std().item() == pytest.approx(4**-0.5, rel=0.05)


def test_residual_model_grids_have_depth_and_reject_flat_grids():
    model = vqvae(quantizer_type="residual", residual_depth=2).eval()
    assert model.config.codes_per_position == 2 and vqvae().config.codes_per_position == 1
    with pytest.raises(ValueError, match=r"\(batch, height, width, 2\)"):
        model.decode_indices(torch.zeros(1, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 32\)"):
        model.decode_indices(torch.full((1, 4, 4, 2), 32))


def test_config_defaults_and_conversions_keep_plain_vq():
    for config in (hf_vq.VQGANConfig(), hf_vq.VQVAEConfig()):
        assert config.quantizer_type == "vq" and config.vq_gradient == "ste" and config.codes_per_position == 1
        assert config.vq_entropy_weight == 0.0
        assert type(build_quantizer(config)) is hf_vq.VectorQuantizer


def test_the_entropy_penalty_reaches_the_quantizer_and_survives_save_and_load(tmp_path):
    fields = dict(vq_entropy_weight=0.1, vq_entropy_temperature=0.05, vq_entropy_decay_steps=100)
    config = hf_vq.VQGANConfig(**TINY_VQGAN, **fields)
    quantizer = build_quantizer(config)
    assert (quantizer.entropy_weight, quantizer.entropy_temperature, quantizer.entropy_decay_steps) == (0.1, 0.05, 100)
    model = hf_vq.VQGANModel(config).train()
    model(torch.rand(2, 3, 16, 16) * 2 - 1)
    model.save_pretrained(tmp_path)
    loaded = hf_vq.VQGANModel.from_pretrained(tmp_path)
    assert (loaded.quantize.entropy_weight, loaded.quantize.entropy_temperature) == (0.1, 0.05)
    assert loaded.quantize.entropy_decay_steps == 100
    assert loaded.quantize.entropy_steps.item() == 1  # the schedule goes on from the saved step


def test_a_checkpoint_without_some_training_state_loads_it_initialized_and_keeps_the_rest(tmp_path):
    # saved without restarts or the entropy schedule, loaded with both: transformers creates the missing buffers
    # uninitialized; they must start at 0, and the EMA statistics the checkpoint holds must stay
    model = hf_vq.VQGANModel(hf_vq.VQGANConfig(**TINY_VQGAN, vq_codebook_update="ema"))
    model.quantize.ema_cluster_size.fill_(7.0)
    model.save_pretrained(tmp_path)
    loaded = hf_vq.VQGANModel.from_pretrained(
        tmp_path, vq_dead_code_threshold=5, vq_entropy_weight=0.05, vq_entropy_decay_steps=10
    )
    assert loaded.quantize.entropy_steps.item() == 0 and not loaded.quantize.steps_unused.any()
    assert torch.equal(loaded.quantize.ema_cluster_size, model.quantize.ema_cluster_size)
    assert torch.equal(loaded.quantize.ema_embed_sum, model.quantize.ema_embed_sum)
    assert torch.equal(loaded.quantize.embedding.weight, model.quantize.embedding.weight)


@pytest.mark.parametrize("quantizer_type", ["lfq", "simvq", "residual"])
def test_defaults_of_the_new_quantizers_work_at_the_default_sizes(quantizer_type):
    # the fields' defaults fit any codebook size and dimension: the VQ-GAN's (1024 x 256), the VQ-VAE's (512 x 64)
    for config_class in (hf_vq.VQGANConfig, hf_vq.VQVAEConfig):
        config = config_class(quantizer_type=quantizer_type)
        quantizer = build_quantizer(config).eval()
        latents = torch.randn(1, config.vq_embed_dim, 2, 2)
        out = quantizer(latents)
        assert out.quantized.shape == latents.shape
        assert out.indices.shape == ((1, 2, 2) if quantizer_type != "residual" else (1, 2, 2, 4))


BAD_CONFIGS = [
    ({"quantizer_type": "lfq", "num_vq_embeddings": 48}, "power of 2"),
    ({"quantizer_type": "lfq", "num_vq_embeddings": 2**25}, "num_vq_embeddings"),
    ({"quantizer_type": "lfq", "vq_codebook_update": "ema"}, "vq_codebook_update"),
    ({"quantizer_type": "lfq", "vq_gradient": "rotation"}, "vq_gradient"),
    ({"quantizer_type": "lfq", "lfq_temperature": 0.0}, "lfq_temperature"),
    ({"quantizer_type": "lfq", "lfq_group_bits": 17}, "lfq_group_bits"),
    ({"quantizer_type": "lfq", "lfq_entropy_weight": -1.0}, "lfq_entropy_weight"),
    ({"quantizer_type": "lfq", "lfq_code_scale": 0.0}, "lfq_code_scale"),
    ({"quantizer_type": "simvq", "vq_kmeans_init": True}, "vq_kmeans_init"),
    ({"quantizer_type": "simvq", "vq_dead_code_threshold": 5}, "vq_dead_code_threshold"),
    ({"quantizer_type": "residual", "residual_depth": 0}, "residual_depth"),
    ({"quantizer_type": "residual", "residual_shared_codebook": "yes"}, "residual_shared_codebook"),
    ({"quantizer_type": "residual", "vq_use_l2_norm": True}, "vq_use_l2_norm"),
    ({"quantizer_type": "residual", "vq_codebook_dim": 2}, "vq_codebook_dim"),
    ({"vq_gradient": "gumbel"}, "vq_gradient"),
    ({"vq_entropy_weight": -0.1}, "vq_entropy_weight"),
    ({"vq_entropy_temperature": 0.0}, "vq_entropy_temperature"),
    ({"quantizer_type": "lfq", "vq_entropy_weight": 0.1}, "lfq_entropy_weight"),
    ({"quantizer_type": "residual", "vq_entropy_weight": 0.1}, "vq_entropy_weight"),
    ({"vq_entropy_weight": 0.1, "vq_entropy_decay_steps": 0}, "vq_entropy_decay_steps"),
    ({"vq_entropy_decay_steps": 100}, "vq_entropy_decay_steps"),
    ({"quantizer_type": "fsq", "fsq_levels": [4, 4], "num_vq_embeddings": None, "vq_gradient": "rotation"}, "FSQ"),
]


@pytest.mark.parametrize(("overrides", "field"), BAD_CONFIGS)
def test_bad_quantizer_configs_raise_naming_the_field(overrides, field):
    for base in (TINY_VQGAN, TINY_VQVAE):
        with pytest.raises(hf_vq.UsageError, match=field):
            (hf_vq.VQGANConfig if base is TINY_VQGAN else hf_vq.VQVAEConfig)(**{**base, **overrides})


def test_unknown_quantizer_type_lists_every_choice():
    with pytest.raises(hf_vq.UsageError, match="quantizer_type") as error:
        hf_vq.VQGANConfig(**TINY_VQGAN, quantizer_type="rvq")
    assert all(repr(choice) in str(error.value) for choice in QUANTIZER_TYPES)
    assert {"lfq", "simvq", "residual"} <= set(QUANTIZER_TYPES)


@pytest.mark.parametrize("quantizer_type", ["lfq", "simvq", "residual"])
def test_to_diffusers_refuses_the_new_quantizers_in_one_line(quantizer_type):
    with pytest.raises(hf_vq.UsageError, match=f"quantizer_type='{quantizer_type}'") as error:
        vqgan(quantizer_type=quantizer_type).to_diffusers()
    assert "\n" not in str(error.value) and "diffusers' VQModel" in str(error.value)


def test_to_diffusers_converts_the_rotation_trick(images):
    # the rotation trick changes only training gradients: the codes are diffusers' nearest-neighbour ones
    model = vqgan(vq_gradient="rotation").eval()
    converted = model.to_diffusers().eval()
    torch.testing.assert_close(converted(images).sample, model(images).reconstruction, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("overrides", "text"),
    [
        ({"quantizer_type": "lfq"}, "lookup-free quantization (LFQ): the signs of\n5 binary channels"),
        ({"quantizer_type": "simvq", "vq_gradient": "rotation"}, "trained with the rotation trick"),
        ({"quantizer_type": "simvq"}, "SimVQ: a frozen random codebook of 32 codes"),
        ({"quantizer_type": "residual", "residual_depth": 2}, "residual quantization: 2 codes per position"),
        ({"quantizer_type": "residual", "residual_depth": 2}, "(B, 8, 8, 2) code indices"),
        ({}, "a codebook of 32 codes of dimension 4)"),
        ({"vq_entropy_weight": 0.05}, "with a code entropy penalty (weight 0.05) in training"),
        (
            {"vq_entropy_weight": 0.05, "vq_entropy_decay_steps": 400},
            "with a code entropy penalty (weight 0.05, decayed to 0 over the first 400 steps) in training",
        ),
        (
            {"vq_codebook_dim": 2, "vq_use_l2_norm": True},
            "a codebook of 32 codes of dimension 2 (l2-normalized), searched after a learned projection from\n4",
        ),
    ],
)
def test_card_names_the_quantizer(overrides, text):
    card = str(render_model_card(hf_vq.VQGANConfig(**{**TINY_VQGAN, **overrides}), repo_id="user/model"))
    assert text in card
