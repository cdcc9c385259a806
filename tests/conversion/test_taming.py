"""taming-transformers checkpoints convert to VQGANModel key for key and output for output (`hf_vq.conversion.taming`,
`VQGANModel.from_taming` and `scripts/convert_taming_checkpoint.py`).

The reference is a small re-implementation of taming's VQModel generator (its module names, hence its state-dict
layout, and its math: asymmetric-pad downsampling, GroupNorm(32, eps 1e-6), x * sigmoid(x), nearest upsampling,
single-head attention over positions, argmin of squared distances to the codebook).
"""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from transformers import AutoModel

import hf_vq
from hf_vq.conversion.safetensors import save_pretrained_atomically
from hf_vq.conversion.taming import (
    convert_taming_state_dict,
    infer_taming_config,
    load_taming_state_dict,
    taming_config_from_yaml,
    taming_generator_state_dict,
)

from ..conftest import ROOT, load_script

# ch 32 (GroupNorm's 32 groups, as taming hardcodes), three levels (f = 4) of 32, 32, 64 channels: a 32 -> 64
# shortcut in the encoder and a 64 -> 32 one in the decoder; 16 px images, 4x4 latents.
TINY_DDCONFIG = dict(
    ch=32, ch_mult=(1, 1, 2), num_res_blocks=1, resolution=16, z_channels=8, in_channels=3, out_ch=3, dropout=0.0
)
N_EMBED, EMBED_DIM = 32, 4


# ----- the reference: taming's generator, module names as in taming/modules/diffusionmodules/model.py -----


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6)


def _swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


class RefResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.norm1 = _norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = _norm(out_channels)
        self.dropout = nn.Dropout(0.0)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x):
        h = self.conv1(_swish(self.norm1(x)))
        h = self.conv2(self.dropout(_swish(self.norm2(h))))
        shortcut = self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x
        return shortcut + h


class RefAttnBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.norm = _norm(channels)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(channels, channels, 1) for _ in range(4))

    def forward(self, x):
        b, c, height, width = x.shape
        h = self.norm(x)
        q, k, v = (conv(h).flatten(2) for conv in (self.q, self.k, self.v))  # (B, C, N), N = H*W
        weights = torch.softmax(torch.einsum("bci,bcj->bij", q, k) / math.sqrt(c), dim=-1)  # (B, N_query, N_key)
        out = torch.einsum("bij,bcj->bci", weights, v).reshape(b, c, height, width)
        return x + self.proj_out(out)


class RefDownsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # pad right and bottom only


class RefUpsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _mid(channels: int) -> nn.Module:
    mid = nn.Module()
    mid.block_1 = RefResnetBlock(channels, channels)
    mid.attn_1 = RefAttnBlock(channels)
    mid.block_2 = RefResnetBlock(channels, channels)
    return mid


def _run_mid(mid: nn.Module, h: torch.Tensor) -> torch.Tensor:
    return mid.block_2(mid.attn_1(mid.block_1(h)))


class RefEncoder(nn.Module):
    def __init__(self, *, ch, ch_mult, num_res_blocks, attn_resolutions, resolution, z_channels, in_channels, **_):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        self.down = nn.ModuleList()
        channels, size = ch, resolution
        for level, mult in enumerate(ch_mult):
            down = nn.Module()
            down.block, down.attn = nn.ModuleList(), nn.ModuleList()
            for _ in range(num_res_blocks):
                down.block.append(RefResnetBlock(channels, ch * mult))
                channels = ch * mult
                if size in attn_resolutions:
                    down.attn.append(RefAttnBlock(channels))
            if level != len(ch_mult) - 1:
                down.downsample = RefDownsample(channels)
                size //= 2
            self.down.append(down)
        self.mid = _mid(channels)
        self.norm_out = _norm(channels)
        self.conv_out = nn.Conv2d(channels, z_channels, 3, padding=1)

    def forward(self, x):
        h = self.conv_in(x)
        for down in self.down:
            for i, block in enumerate(down.block):
                h = block(h)
                if len(down.attn):
                    h = down.attn[i](h)
            if hasattr(down, "downsample"):
                h = down.downsample(h)
        return self.conv_out(_swish(self.norm_out(_run_mid(self.mid, h))))


class RefDecoder(nn.Module):
    def __init__(self, *, ch, ch_mult, num_res_blocks, attn_resolutions, resolution, z_channels, out_ch, **_):
        super().__init__()
        channels, size = ch * ch_mult[-1], resolution // 2 ** (len(ch_mult) - 1)
        self.conv_in = nn.Conv2d(z_channels, channels, 3, padding=1)
        self.mid = _mid(channels)
        up_blocks = []
        for level in reversed(range(len(ch_mult))):
            up = nn.Module()
            up.block, up.attn = nn.ModuleList(), nn.ModuleList()
            for _ in range(num_res_blocks + 1):
                up.block.append(RefResnetBlock(channels, ch * ch_mult[level]))
                channels = ch * ch_mult[level]
                if size in attn_resolutions:
                    up.attn.append(RefAttnBlock(channels))
            if level != 0:
                up.upsample = RefUpsample(channels)
                size *= 2
            up_blocks.insert(0, up)  # up[i] is resolution level i, as in taming
        self.up = nn.ModuleList(up_blocks)
        self.norm_out = _norm(channels)
        self.conv_out = nn.Conv2d(channels, out_ch, 3, padding=1)

    def forward(self, z):
        h = _run_mid(self.mid, self.conv_in(z))
        for up in reversed(self.up):
            for i, block in enumerate(up.block):
                h = block(h)
                if len(up.attn):
                    h = up.attn[i](h)
            if hasattr(up, "upsample"):
                h = up.upsample(h)
        return self.conv_out(_swish(self.norm_out(h)))


class RefQuantizer(nn.Module):
    def __init__(self, n_embed: int, embed_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(n_embed, embed_dim)

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        b, c, height, width = z.shape
        rows = z.permute(0, 2, 3, 1).reshape(-1, c)  # (B*H*W, C)
        codes = self.embedding.weight
        distances = (rows**2).sum(1, keepdim=True) + (codes**2).sum(1) - 2 * rows @ codes.t()  # (B*H*W, K)
        return distances.argmin(1).view(b, height, width)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        return self.embedding(indices).permute(0, 3, 1, 2)  # (B, C, h, w)


class RefVQModel(nn.Module):
    def __init__(self, ddconfig: dict, n_embed: int, embed_dim: int):
        super().__init__()
        self.encoder = RefEncoder(**ddconfig)
        self.decoder = RefDecoder(**ddconfig)
        self.quantize = RefQuantizer(n_embed, embed_dim)
        self.quant_conv = nn.Conv2d(ddconfig["z_channels"], embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, ddconfig["z_channels"], 1)

    def encode(self, x):
        return self.quant_conv(self.encoder(x))

    def decode_indices(self, indices):
        return self.decoder(self.post_quant_conv(self.quantize.lookup(indices)))


def make_reference(attn_resolutions=(), seed: int = 0, **ddconfig) -> RefVQModel:
    """A randomly initialized taming VQModel generator; norms and codebook randomized too, so that a weight put in the
    wrong place changes the output."""
    torch.manual_seed(seed)
    model = RefVQModel({**TINY_DDCONFIG, "attn_resolutions": list(attn_resolutions), **ddconfig}, N_EMBED, EMBED_DIM)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.GroupNorm):
                module.weight.normal_(1.0, 0.2)
                module.bias.normal_(0.0, 0.2)
        # Codes spread like the latents, so that the images use many codes (taming's U(-1/K, 1/K) would give few).
        latents = model.encode(images())
        model.quantize.embedding.weight.copy_(torch.randn(N_EMBED, EMBED_DIM) * latents.std() + latents.mean())
    return model.eval()


def images() -> torch.Tensor:
    return torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1


def assert_same_outputs(model: hf_vq.VQGANModel, reference: RefVQModel) -> None:
    x = images()
    with torch.no_grad():
        latents = reference.encode(x)
        indices = reference.quantize.indices(latents)
        decoded = reference.decode_indices(indices)
        assert indices.unique().numel() >= 8, "too few codes used for a meaningful comparison"
        torch.testing.assert_close(model.encode(x), latents, rtol=0, atol=1e-5)
        torch.testing.assert_close(model.encode_indices(x), indices, rtol=0, atol=0)
        torch.testing.assert_close(model.decode_indices(indices), decoded, rtol=0, atol=1e-5)
        output = model(x)
    torch.testing.assert_close(output.indices, indices, rtol=0, atol=0)
    torch.testing.assert_close(output.reconstruction, decoded, rtol=0, atol=1e-5)


def lightning_checkpoint(reference: nn.Module, **extra) -> dict:
    """A taming training checkpoint as PyTorch Lightning writes it: generator, discriminator, LPIPS, loop state."""
    state_dict = dict(reference.state_dict())
    state_dict["loss.discriminator.main.0.weight"] = torch.randn(64, 3, 4, 4)
    state_dict["loss.perceptual_loss.net.slice1.0.weight"] = torch.randn(64, 3, 3, 3)
    optimizer = {"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 4.5e-6, "params": [0]}]}
    return {"state_dict": state_dict, "global_step": 3, "epoch": 0, "optimizer_states": [optimizer], **extra}


TAMING_YAML = """\
model:
  base_learning_rate: 4.5e-06
  target: taming.models.vqgan.VQModel
  params:
    embed_dim: {embed_dim}
    n_embed: {n_embed}
    ddconfig:
      double_z: false
      z_channels: 8
      resolution: 16
      in_channels: 3
      out_ch: 3
      ch: 32
      ch_mult: [1, 1, 2]
      num_res_blocks: 1
      attn_resolutions: {attn}
      dropout: 0.0
    lossconfig:
      target: taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator
      params:
        disc_start: 10000
        disc_weight: 0.8
        codebook_weight: 1.0
"""


class PickledHyperParameters:
    """A Python object in a checkpoint, as Lightning's saved hyper-parameters often are."""

    def __init__(self):
        self.learning_rate = 4.5e-6


# ----- (a) key for key and output for output -----


@pytest.mark.parametrize("attn_resolutions", [(), (16,), (4,)], ids=["no-attention", "full-res", "lowest-res"])
def test_random_taming_model_converts_key_for_key_and_output_for_output(attn_resolutions):
    reference = make_reference(attn_resolutions)
    taming = reference.state_dict()
    config = hf_vq.VQGANConfig(**infer_taming_config(taming, resolution=16))
    model = hf_vq.VQGANModel(config)
    converted = convert_taming_state_dict(taming, model)

    ours = {k for k in model.state_dict() if not k.startswith(("quantize.initialized", "quantize.ema_"))}
    assert converted.keys() == ours
    assert len(converted) == len(taming)
    # Spot checks of the renaming: shortcut, output norm, 1x1 attention convs squeezed to linears, decoder levels.
    torch.testing.assert_close(
        converted["decoder.up_blocks.1.resnets.0.conv_shortcut.weight"],
        taming["decoder.up.1.block.0.nin_shortcut.weight"],
    )
    torch.testing.assert_close(converted["encoder.conv_norm_out.bias"], taming["encoder.norm_out.bias"])
    torch.testing.assert_close(
        converted["decoder.mid_block.attentions.0.to_out.0.weight"],
        taming["decoder.mid.attn_1.proj_out.weight"][:, :, 0, 0],
    )
    if attn_resolutions == (16,):  # taming's level 0 is the decoder's last up block
        torch.testing.assert_close(
            converted["decoder.up_blocks.2.attentions.1.to_q.weight"],
            taming["decoder.up.0.attn.1.q.weight"][:, :, 0, 0],
        )

    model.load_state_dict(converted, strict=False)
    model.quantize.use_pretrained_codebook()
    assert_same_outputs(model.eval(), reference)


def test_converted_weights_are_all_used_exactly_and_codebook_counts_as_trained(tmp_path):
    """Every taming tensor lands in the model unchanged, and a training config (k-means init, EMA codebook) starts
    from the converted codebook instead of re-initializing it."""
    reference = make_reference((4,))
    path = tmp_path / "model.pt"
    torch.save(reference.state_dict(), path)
    inferred = hf_vq.VQGANConfig(**infer_taming_config(reference.state_dict(), resolution=16))
    config = hf_vq.VQGANConfig(**{**inferred.to_dict(), "vq_kmeans_init": True, "vq_codebook_update": "ema"})
    model = hf_vq.VQGANModel.from_taming(path, config=config)
    state = model.state_dict()
    for key, tensor in convert_taming_state_dict(reference.state_dict(), hf_vq.VQGANModel(config)).items():
        torch.testing.assert_close(state[key], tensor, rtol=0, atol=0, msg=key)
    assert bool(model.quantize.initialized) and not model.training
    codebook = reference.quantize.embedding.weight
    torch.testing.assert_close(model.quantize.ema_embed_sum, codebook, rtol=0, atol=0)


# ----- (b) a Lightning checkpoint through the script, loaded back by AutoModel -----


@pytest.mark.slow
def test_script_converts_lightning_checkpoint_and_automodel_loads_it(tmp_path):
    reference = make_reference((4,))
    checkpoint = tmp_path / "last.ckpt"
    torch.save(lightning_checkpoint(reference), checkpoint)
    output_dir = tmp_path / "converted" / "vqgan"

    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "convert_taming_checkpoint.py"),
            "--checkpoint",
            str(checkpoint),
            "--resolution",
            "16",
            "--output_dir",
            str(output_dir),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert f"wrote {output_dir / 'model.safetensors'}" in result.stdout
    assert sorted(p.name for p in output_dir.iterdir()) == ["config.json", "model.safetensors"]
    assert [p.name for p in output_dir.parent.iterdir()] == ["vqgan"]  # no staging folder left behind

    model = AutoModel.from_pretrained(output_dir)
    assert type(model) is hf_vq.VQGANModel
    assert model.config.block_out_channels == [32, 32, 64] and model.config.sample_size == 16
    assert bool(model.quantize.initialized)
    assert_same_outputs(model, reference)


# ----- (c) LDM's first_stage_model. prefix, from safetensors -----


def test_first_stage_model_prefix_is_stripped_and_the_rest_dropped(tmp_path):
    reference = make_reference((8,))
    state_dict = {f"first_stage_model.{k}": v.contiguous() for k, v in reference.state_dict().items()}
    state_dict["model.diffusion_model.input_blocks.0.0.weight"] = torch.randn(8, 4, 3, 3)
    state_dict["cond_stage_model.embedding.weight"] = torch.randn(10, 4)
    state_dict["first_stage_model.loss.logvar"] = torch.zeros(())
    path = tmp_path / "ldm.safetensors"
    save_file(state_dict, path)

    loaded = load_taming_state_dict(path)
    assert loaded.keys() == reference.state_dict().keys()
    assert_same_outputs(hf_vq.VQGANModel.from_taming(path, resolution=16), reference)


# ----- (d) pickled Python objects need --allow_unsafe_pickle -----


def test_pickled_object_fails_clearly_and_loads_with_allow_unsafe_pickle(tmp_path):
    reference = make_reference()
    path = tmp_path / "last.ckpt"
    torch.save(lightning_checkpoint(reference, hyper_parameters={"config": PickledHyperParameters()}), path)

    with pytest.raises(ValueError, match="--allow_unsafe_pickle") as error:
        load_taming_state_dict(path)
    assert "arbitrary code" in str(error.value)
    assert_same_outputs(hf_vq.VQGANModel.from_taming(path, resolution=16, allow_unsafe_pickle=True), reference)


def test_allow_unsafe_pickle_tolerates_classes_that_are_not_installed(tmp_path, monkeypatch):
    """Lightning checkpoints pickle pytorch_lightning / omegaconf classes; converting must not need them installed."""
    module = type(sys)("not_installed_lightning")

    class ModelCheckpoint:
        def __init__(self):
            self.monitor = "val/rec_loss"

    class AttributeDict(dict):
        pass

    for cls in (ModelCheckpoint, AttributeDict):
        cls.__module__, cls.__qualname__ = module.__name__, cls.__name__
        setattr(module, cls.__name__, cls)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    reference = make_reference()
    path = tmp_path / "last.ckpt"
    callbacks = {ModelCheckpoint: {"best": ModelCheckpoint()}}
    torch.save(lightning_checkpoint(reference, callbacks=callbacks, hyper_parameters=AttributeDict(lr=1.0)), path)
    monkeypatch.delitem(sys.modules, module.__name__)

    with pytest.raises(ValueError, match="--allow_unsafe_pickle") as error:
        load_taming_state_dict(path)
    assert "not_installed_lightning." in str(error.value)  # names the refused class
    assert_same_outputs(hf_vq.VQGANModel.from_taming(path, resolution=16, allow_unsafe_pickle=True), reference)


def test_script_reports_unsafe_pickle_without_traceback_and_writes_nothing(tmp_path):
    path = tmp_path / "last.ckpt"
    torch.save(lightning_checkpoint(make_reference(), hyper_parameters=PickledHyperParameters()), path)
    output_dir = tmp_path / "out"
    args = ["--checkpoint", str(path), "--resolution", "16", "--output_dir", str(output_dir)]

    with pytest.raises(hf_vq.UsageError, match="--allow_unsafe_pickle"):
        load_script("convert_taming_checkpoint").main(args)
    assert not output_dir.exists()

    assert load_script("convert_taming_checkpoint").main([*args, "--allow_unsafe_pickle"]) == 0
    assert (output_dir / "model.safetensors").is_file()
    with pytest.raises(hf_vq.UsageError, match="not an empty folder"):  # never overwrites
        load_script("convert_taming_checkpoint").main([*args, "--allow_unsafe_pickle"])


def test_failed_save_leaves_no_partial_model(tmp_path):
    class FailingModel:
        def save_pretrained(self, directory):
            (Path(directory) / "config.json").write_text("{}")
            raise OSError("disk full")

    output_dir = tmp_path / "out"
    with pytest.raises(OSError, match="disk full"):
        save_pretrained_atomically(FailingModel(), output_dir)
    assert list(tmp_path.iterdir()) == []


# ----- (e) the YAML config and shape inference agree -----


@pytest.mark.parametrize("attn_resolutions", [(), (16,)])
def test_yaml_config_equals_inferred_config(tmp_path, attn_resolutions):
    reference = make_reference(attn_resolutions)
    yaml_path = tmp_path / "model.yaml"
    yaml_path.write_text(TAMING_YAML.format(embed_dim=EMBED_DIM, n_embed=N_EMBED, attn=list(attn_resolutions)))

    from_yaml = hf_vq.VQGANConfig(**taming_config_from_yaml(yaml_path))
    inferred = hf_vq.VQGANConfig(**infer_taming_config(reference.state_dict(), resolution=16))
    assert from_yaml.to_dict() == inferred.to_dict()
    assert from_yaml.block_out_channels == [32, 32, 64]
    assert (from_yaml.layers_per_block, from_yaml.latent_channels) == (1, 8)
    assert (from_yaml.num_vq_embeddings, from_yaml.vq_embed_dim, from_yaml.sample_size) == (N_EMBED, EMBED_DIM, 16)
    attention = [16 in attn_resolutions, False, False]
    assert from_yaml.down_block_types == ["AttnDownEncoderBlock2D" if a else "DownEncoderBlock2D" for a in attention]
    assert from_yaml.up_block_types == ["AttnUpDecoderBlock2D" if a else "UpDecoderBlock2D" for a in attention[::-1]]
    path = tmp_path / "model.ckpt"
    torch.save(lightning_checkpoint(reference), path)
    assert_same_outputs(hf_vq.VQGANModel.from_taming(path, config=yaml_path), reference)


def test_ldm_yaml_reads_first_stage_config(tmp_path):
    ldm_yaml = "model:\n  target: ldm.models.diffusion.ddpm.LatentDiffusion\n  params:\n    first_stage_config:\n"
    ldm_yaml += "\n".join("    " + line for line in TAMING_YAML.splitlines()[1:] if "base_learning_rate" not in line)
    path = tmp_path / "ldm.yaml"
    path.write_text(ldm_yaml.format(embed_dim=EMBED_DIM, n_embed=N_EMBED, attn=[]))
    config = hf_vq.VQGANConfig(**taming_config_from_yaml(path))
    assert config.block_out_channels == [32, 32, 64] and config.num_vq_embeddings == N_EMBED


# ----- (f) what does not convert fails with the names -----


def test_unknown_key_raises_value_error_naming_it():
    taming = make_reference().state_dict()
    model = hf_vq.VQGANModel(hf_vq.VQGANConfig(**infer_taming_config(taming, resolution=16)))
    with pytest.raises(ValueError, match=r"encoder\.down\.0\.block\.0\.temb_proj\.weight"):
        convert_taming_state_dict({**taming, "encoder.down.0.block.0.temb_proj.weight": torch.zeros(32, 512)}, model)
    with pytest.raises(ValueError, match="model_ema.decay"):
        convert_taming_state_dict({**taming, "model_ema.decay": torch.tensor(0.999)}, model)


def test_missing_and_misplaced_weights_raise_value_error():
    taming = make_reference().state_dict()
    config = hf_vq.VQGANConfig(**infer_taming_config(taming, resolution=16))
    incomplete = {k: v for k, v in taming.items() if k != "decoder.up.0.block.1.conv2.weight"}
    with pytest.raises(ValueError, match=r"lacks .*decoder\.up_blocks\.2\.resnets\.1\.conv2\.weight"):
        convert_taming_state_dict(incomplete, hf_vq.VQGANModel(config))
    # The same weights against a config with attention at full resolution: attention weights are missing.
    with_attention = hf_vq.VQGANConfig(**infer_taming_config(make_reference((16,)).state_dict(), resolution=16))
    with pytest.raises(ValueError, match="lacks .*attentions"):
        convert_taming_state_dict(taming, hf_vq.VQGANModel(with_attention))
    # A config with another codebook size: the shape check names the taming key.
    other = hf_vq.VQGANConfig(**{**config.to_dict(), "num_vq_embeddings": 2 * N_EMBED})
    with pytest.raises(ValueError, match=r"quantize\.embedding\.weight \(32, 4\)"):
        convert_taming_state_dict(taming, hf_vq.VQGANModel(other))


def test_unsupported_quantizers_and_layouts_say_so(tmp_path):
    taming = make_reference().state_dict()
    config = hf_vq.VQGANConfig(**infer_taming_config(taming, resolution=16))
    gumbel = {k: v for k, v in taming.items() if not k.startswith("quantize.")}
    gumbel |= {"quantize.proj.weight": torch.zeros(N_EMBED, 8, 1, 1), "quantize.embed.weight": torch.zeros(N_EMBED, 4)}
    with pytest.raises(ValueError, match="GumbelQuantize"):
        convert_taming_state_dict(gumbel, hf_vq.VQGANModel(config))
    ema = {
        **taming,
        "quantize.embedding.cluster_size": torch.zeros(N_EMBED),
        "quantize.embedding.embed_avg": taming["quantize.embedding.weight"],
    }
    with pytest.raises(ValueError, match="EMA"):
        infer_taming_config(ema, resolution=16)
    with pytest.raises(ValueError, match="ch_mult"):
        infer_taming_config(make_reference(ch_mult=(2, 2, 4)).state_dict(), resolution=16)
    yaml_path = tmp_path / "gumbel.yaml"
    yaml_path.write_text(
        TAMING_YAML.format(embed_dim=4, n_embed=32, attn=[]).replace("vqgan.VQModel", "vqgan.GumbelVQ")
    )
    with pytest.raises(ValueError, match="GumbelQuantize"):
        taming_config_from_yaml(yaml_path)
    with pytest.raises(ValueError, match="plain nearest-neighbour"):
        l2_config = hf_vq.VQGANConfig(**{**config.to_dict(), "vq_use_l2_norm": True})
        convert_taming_state_dict(taming, hf_vq.VQGANModel(l2_config))


def test_generator_state_dict_and_argument_errors(tmp_path):
    state_dict = taming_generator_state_dict(lightning_checkpoint(make_reference()))
    assert not any(key.startswith("loss.") for key in state_dict)
    with pytest.raises(ValueError, match="global_step"):
        taming_generator_state_dict({"global_step": 3, "encoder.conv_in.weight": torch.zeros(1)})
    path = tmp_path / "model.pt"
    torch.save(state_dict, path)
    with pytest.raises(ValueError, match="resolution"):
        hf_vq.VQGANModel.from_taming(path)
    with pytest.raises(ValueError, match="unknown checkpoint format"):
        load_taming_state_dict(path.rename(tmp_path / "model.npz"))
