"""The diffusers mappings (`hf_vq.conversion.diffusers`): config fields both ways, state-dict keys, refusals; loading
diffusers folders (and subfolders of pipelines, and repos from the Hub cache) with `from_pretrained` and
`from_diffusers`; a converted model inside diffusers' `AmusedPipeline`. The models' `from_diffusers` / `to_diffusers`,
output for output, are tested in tests/models/test_vqgan.py and test_vae.py."""

import inspect
import json
import shutil

import numpy as np
import pytest
import torch
from diffusers import AmusedPipeline, AmusedScheduler, AutoencoderKL, UVit2DModel, VQModel

import hf_vq
from hf_vq.conversion.diffusers import (
    AUTOENCODER_KL_CONFIG_KEYS,
    VQ_MODEL_CONFIG_KEYS,
    autoencoder_kl_config_from_vae,
    vae_config_from_autoencoder_kl,
    vq_model_config_from_vqgan,
    vq_model_state_dict,
    vqgan_config_from_vq_model,
)
from hf_vq.modules.quantizers import QUANTIZER_STATE_KEYS

from ..conftest import QUANTIZER_VARIANTS, TINY_VQGAN, vqgan

TINY_DIFFUSERS = dict(
    block_out_channels=(16, 32),
    down_block_types=("DownEncoderBlock2D", "AttnDownEncoderBlock2D"),
    up_block_types=("AttnUpDecoderBlock2D", "UpDecoderBlock2D"),
    layers_per_block=1,
    norm_num_groups=8,
    sample_size=16,
)


def test_vq_model_config_round_trips_through_vqgan_config():
    vq_model = VQModel(**TINY_DIFFUSERS, latent_channels=8, vq_embed_dim=4, num_vq_embeddings=32)
    kwargs = vqgan_config_from_vq_model(vq_model.config)
    assert kwargs["block_out_channels"] == (16, 32) and kwargs["num_vq_embeddings"] == 32
    assert kwargs["force_upcast"] is False and kwargs["lookup_from_codebook"] is False  # carried, not dropped
    back = vq_model_config_from_vqgan(hf_vq.VQGANConfig(**kwargs))
    assert back == kwargs
    assert VQModel(**back).state_dict().keys() == vq_model.state_dict().keys()


def test_vq_model_config_refuses_movq_and_quantizers_diffusers_lacks():
    with pytest.raises(hf_vq.UsageError, match="norm_type='spatial'"):
        vqgan_config_from_vq_model({**TINY_DIFFUSERS, "norm_type": "spatial"})
    for variant in ("cosine-factorized", "fsq"):
        with pytest.raises(ValueError, match="diffusers' VQModel"):
            vq_model_config_from_vqgan(hf_vq.VQGANConfig(**{**TINY_VQGAN, **QUANTIZER_VARIANTS[variant]}))


def test_vq_model_state_dict_drops_exactly_the_quantizers_training_state():
    state_dict = vqgan(
        vq_codebook_update="ema", vq_dead_code_threshold=2, vq_entropy_weight=0.05, vq_entropy_decay_steps=10
    ).state_dict()  # every training-state buffer
    converted = vq_model_state_dict(state_dict)
    assert state_dict.keys() - converted.keys() == set(QUANTIZER_STATE_KEYS)
    assert all(converted[key] is state_dict[key] for key in converted)  # the same tensors, key for key


def test_autoencoder_kl_config_round_trips_through_vae_config():
    autoencoder_kl = AutoencoderKL(**TINY_DIFFUSERS, latent_channels=4, shift_factor=0.1)
    kwargs = vae_config_from_autoencoder_kl(autoencoder_kl.config)
    assert kwargs["shift_factor"] == 0.1 and kwargs["latent_channels"] == 4
    back = autoencoder_kl_config_from_vae(hf_vq.VAEConfig(**kwargs))
    assert back == kwargs
    assert AutoencoderKL(**back).state_dict().keys() == hf_vq.VAEModel(hf_vq.VAEConfig(**kwargs)).state_dict().keys()


# ----- every field, both ways -----


def public_config(config) -> dict:
    """A diffusers config's fields (no `_class_name` etc.), lists as tuples."""
    return {key: tuple(value) if isinstance(value, list) else value for key, value in config.items() if key[0] != "_"}


@pytest.mark.parametrize(
    "diffusers_class, keys", [(VQModel, VQ_MODEL_CONFIG_KEYS), (AutoencoderKL, AUTOENCODER_KL_CONFIG_KEYS)]
)
def test_the_mappings_name_every_field_of_diffusers_configs(diffusers_class, keys):
    fields = set(inspect.signature(diffusers_class.__init__).parameters) - {"self"}
    assert set(keys) == fields


def test_vq_model_round_trip_keeps_every_config_field():
    reference = VQModel(
        **TINY_DIFFUSERS, latent_channels=8, vq_embed_dim=4, num_vq_embeddings=32, scaling_factor=0.3,
        lookup_from_codebook=True, force_upcast=True, mid_block_add_attention=False,
    )  # fmt: skip
    back = hf_vq.VQGANModel.from_diffusers(reference).to_diffusers()
    expected, got = public_config(reference.config), public_config(back.config)
    assert got.keys() == expected.keys() == set(VQ_MODEL_CONFIG_KEYS)
    for key in expected:
        assert got[key] == expected[key], key
    assert (got["lookup_from_codebook"], got["force_upcast"], got["scaling_factor"]) == (True, True, 0.3)


def test_vq_model_round_trip_resolves_an_unset_vq_embed_dim_as_diffusers_does():
    reference = VQModel(**TINY_DIFFUSERS, latent_channels=8, num_vq_embeddings=32)  # vq_embed_dim None
    back = hf_vq.VQGANModel.from_diffusers(reference).to_diffusers()
    assert back.config.vq_embed_dim == 8 == reference.quantize.embedding.weight.shape[1]
    assert back.state_dict().keys() == reference.state_dict().keys()


def test_autoencoder_kl_round_trip_keeps_every_config_field():
    reference = AutoencoderKL(
        **TINY_DIFFUSERS, latent_channels=4, scaling_factor=0.5, shift_factor=0.1, force_upcast=False,
        latents_mean=(0.1, 0.2, 0.3, 0.4), latents_std=(1.0, 2.0, 3.0, 4.0), use_quant_conv=False,
        mid_block_add_attention=False,
    )  # fmt: skip
    back = hf_vq.VAEModel.from_diffusers(reference).to_diffusers()
    expected, got = public_config(reference.config), public_config(back.config)
    assert got.keys() == expected.keys() == set(AUTOENCODER_KL_CONFIG_KEYS)
    for key in expected:
        assert got[key] == expected[key], key
    assert got["force_upcast"] is False and got["shift_factor"] == 0.1


def test_a_config_field_hf_vq_does_not_know_is_refused_by_name():
    config = {**VQModel(**TINY_DIFFUSERS).config, "some_new_field": 1}
    with pytest.raises(hf_vq.UsageError, match="some_new_field"):
        vqgan_config_from_vq_model(config)
    with pytest.raises(hf_vq.UsageError, match="some_new_field"):
        vae_config_from_autoencoder_kl({**AutoencoderKL(**TINY_DIFFUSERS).config, "some_new_field": 1})


# ----- diffusers folders, pipeline subfolders, the Hub cache -----


@pytest.fixture(scope="module")
def diffusers_vq_model():
    torch.manual_seed(0)
    return VQModel(**TINY_DIFFUSERS, latent_channels=8, vq_embed_dim=4, num_vq_embeddings=32).eval()


@pytest.fixture(scope="module")
def diffusers_kl():
    torch.manual_seed(0)
    return AutoencoderKL(**TINY_DIFFUSERS, latent_channels=4, shift_factor=0.1).eval()


@pytest.fixture(scope="module")
def pipeline_folder(tmp_path_factory, diffusers_vq_model, diffusers_kl):
    """A pipeline-like folder: `model_index.json`, a `vqvae/` and a `vae/` subfolder saved by diffusers."""
    folder = tmp_path_factory.mktemp("pipeline")
    diffusers_vq_model.save_pretrained(folder / "vqvae")
    diffusers_kl.save_pretrained(folder / "vae")
    index = {"_class_name": "SomePipeline", "vqvae": ["diffusers", "VQModel"], "vae": ["diffusers", "AutoencoderKL"]}
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


def same_vq_outputs(model, reference):
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(model.encode(images), reference.encode(images).latents)
        torch.testing.assert_close(model(images).reconstruction, reference(images).sample)


def test_from_pretrained_converts_a_diffusers_vq_folder(pipeline_folder, diffusers_vq_model):
    assert sorted(p.name for p in (pipeline_folder / "vqvae").iterdir()) == [
        "config.json", "diffusion_pytorch_model.safetensors"
    ]  # fmt: skip
    model = hf_vq.VQGANModel.from_pretrained(pipeline_folder / "vqvae")
    assert not model.training
    same_vq_outputs(model, diffusers_vq_model)
    sub = hf_vq.VQGANModel.from_pretrained(str(pipeline_folder), subfolder="vqvae", vq_beta=0.5)
    assert sub.config.vq_beta == 0.5
    same_vq_outputs(sub, diffusers_vq_model)


def test_from_pretrained_converts_a_diffusers_kl_subfolder(pipeline_folder, diffusers_kl):
    vae = hf_vq.VAEModel.from_pretrained(str(pipeline_folder), subfolder="vae")
    assert vae.config.shift_factor == 0.1 and not vae.training
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(vae.encode(images).mean, diffusers_kl.encode(images).latent_dist.mean)
    half = hf_vq.VAEModel.from_pretrained(pipeline_folder / "vae", dtype=torch.float16, beta=0.5)
    assert half.dtype == torch.float16 and half.config.beta == 0.5


def test_from_diffusers_takes_a_path(pipeline_folder, diffusers_vq_model, diffusers_kl):
    model = hf_vq.VQGANModel.from_diffusers(pipeline_folder / "vqvae", vq_codebook_update="ema")
    assert model.config.vq_codebook_update == "ema"
    same_vq_outputs(model.eval(), diffusers_vq_model)
    vae = hf_vq.VAEModel.from_diffusers(str(pipeline_folder), subfolder="vae", beta=0.5)
    assert vae.config.beta == 0.5
    torch.testing.assert_close(vae.state_dict(), diffusers_kl.state_dict())


def test_a_pipeline_folder_without_subfolder_names_its_autoencoders(pipeline_folder):
    with pytest.raises(hf_vq.UsageError, match=r"subfolder=.*vae, vqvae"):
        hf_vq.VQGANModel.from_pretrained(pipeline_folder)


def test_a_folder_of_the_other_class_is_refused_naming_class_name(pipeline_folder):
    with pytest.raises(hf_vq.UsageError, match="_class_name.*'VQModel'.*'AutoencoderKL'"):
        hf_vq.VAEModel.from_pretrained(pipeline_folder / "vqvae")


def test_an_unsupported_diffusers_field_is_refused_by_name(pipeline_folder, tmp_path):
    folder = shutil.copytree(pipeline_folder / "vqvae", tmp_path / "movq")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "norm_type": "spatial"}))
    with pytest.raises(hf_vq.UsageError, match="norm_type='spatial'"):
        hf_vq.VQGANModel.from_pretrained(folder)


def test_pickled_diffusers_weights_are_never_read(pipeline_folder, tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(pipeline_folder / "vqvae" / "config.json", folder)
    (folder / "diffusion_pytorch_model.bin").write_bytes(b"not to be unpickled")
    with pytest.raises(hf_vq.UsageError, match="diffusion_pytorch_model.safetensors"):
        hf_vq.VQGANModel.from_pretrained(folder)


def test_from_pretrained_reads_a_diffusers_repo_from_the_hub_cache_offline(
    pipeline_folder, diffusers_vq_model, tmp_path
):
    commit = "a" * 40
    repo = tmp_path / "cache" / "models--org--pipeline"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(pipeline_folder, repo / "snapshots" / commit)
    model = hf_vq.VQGANModel.from_pretrained(
        "org/pipeline", subfolder="vqvae", cache_dir=str(tmp_path / "cache"), local_files_only=True
    )
    same_vq_outputs(model, diffusers_vq_model)


# ----- a converted model inside diffusers' AmusedPipeline -----


def test_a_converted_vq_model_decodes_code_indices_in_amused_pipeline():
    torch.manual_seed(0)
    ours = hf_vq.VQGANModel(
        hf_vq.VQGANConfig(
            block_out_channels=[8], layers_per_block=1, norm_num_groups=8, latent_channels=8, num_vq_embeddings=8,
            sample_size=8, mid_block_add_attention=False, lookup_from_codebook=True,
        )
    )  # fmt: skip
    transformer = UVit2DModel(
        hidden_size=8, use_bias=False, hidden_dropout=0.0, cond_embed_dim=8, micro_cond_encode_dim=2,
        micro_cond_embed_dim=10, encoder_hidden_size=8, vocab_size=32, codebook_size=8, in_channels=8,
        block_out_channels=8, num_res_blocks=1, downsample=True, upsample=True, block_num_heads=1,
        num_hidden_layers=1, num_attention_heads=1, attention_dropout=0.0, intermediate_size=8,
    )  # fmt: skip
    pipe = AmusedPipeline(
        vqvae=ours.to_diffusers().eval(), tokenizer=None, text_encoder=None, transformer=transformer.eval(),
        scheduler=AmusedScheduler(mask_token_id=31),
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    image = pipe(
        prompt_embeds=torch.randn(1, 8), encoder_hidden_states=torch.randn(1, 3, 8), guidance_scale=1.0,
        num_inference_steps=2, height=4, width=4, output_type="np", generator=torch.Generator().manual_seed(0),
    ).images  # fmt: skip
    assert image.shape == (1, 4, 4, 3) and np.isfinite(image).all()
    # The pipeline's codes decode to what our model decodes them to.
    codes = torch.randint(0, 8, (1, 4, 4))
    with torch.no_grad():
        theirs = pipe.vqvae.decode(codes, force_not_quantize=True, shape=(1, 4, 4, 8)).sample
        torch.testing.assert_close(theirs, ours.eval().decode_indices(codes))


@pytest.mark.slow
def test_a_diffusers_repo_loads_by_id_through_the_hub_cache_online_then_offline(pipeline_folder, tmp_path):
    """A pipeline repo on a loopback Hub: `vqvae/` and `vae/` load by repo id, then again offline from the cache."""
    from ..hub.conftest import run_python
    from ..hub_server import LoopbackHub

    load = f"""
import torch, hf_vq
from safetensors.torch import load_file
vq = hf_vq.VQGANModel.from_pretrained("org/pipeline", subfolder="vqvae")
vae = hf_vq.VAEModel.from_diffusers("org/pipeline", subfolder="vae")
for model, name in ((vq, "vqvae"), (vae, "vae")):
    expected = load_file({str(pipeline_folder)!r} + "/" + name + "/diffusion_pytorch_model.safetensors")
    assert all(torch.equal(model.state_dict()[key], value) for key, value in expected.items()), name
print("LOADED")
"""
    upload = f"""
from huggingface_hub import HfApi
HfApi().create_repo("org/pipeline")
HfApi().upload_folder(repo_id="org/pipeline", folder_path={str(pipeline_folder)!r})
"""
    with LoopbackHub() as hub:
        uploaded = run_python(upload, hub, tmp_path / "home", cwd=tmp_path)
        assert uploaded.returncode == 0, uploaded.stderr[-3000:]
        online = run_python(load, hub, tmp_path / "home", cwd=tmp_path)
        assert online.returncode == 0 and "LOADED" in online.stdout, online.stderr[-3000:]
    offline = run_python(load, hub, tmp_path / "home", offline=True, cwd=tmp_path)  # the server is gone
    assert offline.returncode == 0 and "LOADED" in offline.stdout, offline.stderr[-3000:]
