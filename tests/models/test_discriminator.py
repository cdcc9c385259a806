import pytest
import torch
from torch import nn
from transformers import AutoConfig, AutoModel

from hf_vq.models.discriminator import PatchDiscriminator, PatchDiscriminatorConfig

from ..conftest import assert_state_dicts_equal

TINY = dict(num_filters=8, num_layers=3)


def make(**overrides) -> PatchDiscriminator:
    return PatchDiscriminator(PatchDiscriminatorConfig(**{**TINY, **overrides}))


@pytest.mark.parametrize(("size", "num_layers", "side"), [(32, 3, 2), (64, 3, 6), (32, 2, 6)])
def test_patch_logits_shape(size, num_layers, side):
    # num_layers halvings, then two stride-1 4x4 convs (padding 1) that each take one off: size / 2**n - 2.
    logits = make(num_layers=num_layers)(torch.randn(2, 3, size, size))
    assert logits.shape == (2, 1, side, side)
    assert logits.dtype == torch.float32


def test_parameter_names_and_shapes_follow_taming_layout():
    shapes = {key: tuple(value.shape) for key, value in make().state_dict().items()}
    bn = lambda c: {"weight": (c,), "bias": (c,), "running_mean": (c,), "running_var": (c,), "num_batches_tracked": ()}  # noqa: E731
    expected = {"main.0.weight": (8, 3, 4, 4), "main.0.bias": (8,), "main.2.weight": (16, 8, 4, 4)}
    expected |= {f"main.3.{name}": shape for name, shape in bn(16).items()}
    expected["main.5.weight"] = (32, 16, 4, 4)
    expected |= {f"main.6.{name}": shape for name, shape in bn(32).items()}
    expected["main.8.weight"] = (64, 32, 4, 4)
    expected |= {f"main.9.{name}": shape for name, shape in bn(64).items()}
    expected |= {"main.11.weight": (1, 64, 4, 4), "main.11.bias": (1,)}
    assert shapes == expected
    main = make().main
    assert [main[i].stride for i in (0, 2, 5, 8, 11)] == [(2, 2), (2, 2), (2, 2), (1, 1), (1, 1)]
    assert all(isinstance(main[i], nn.LeakyReLU) and main[i].negative_slope == 0.2 for i in (1, 4, 7, 10))


def test_channel_multiplier_is_capped():
    model = make(num_layers=4, max_filter_multiplier=4)
    assert [model.main[i].out_channels for i in (0, 2, 5, 8, 11, 14)] == [8, 16, 32, 32, 32, 1]


@pytest.mark.parametrize(
    ("norm_type", "norm_class"), [("group", nn.GroupNorm), ("instance", nn.InstanceNorm2d), ("none", nn.Identity)]
)
def test_other_norms_keep_the_layout_and_put_bias_only_without_norm(norm_type, norm_class):
    model = make(norm_type=norm_type, norm_num_groups=4)
    assert isinstance(model.main[3], norm_class) and isinstance(model.main[9], norm_class)
    assert (model.main[2].bias is not None) == (norm_type == "none")
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 1, 2, 2)
    if norm_type == "instance":
        assert model.main[3].affine


def test_taming_initialization_statistics():
    model = PatchDiscriminator(PatchDiscriminatorConfig())  # taming's defaults: 64 filters, 3 layers, BatchNorm
    big_conv = model.main[8].weight  # (512, 256, 4, 4); PyTorch's default would have std ~0.009
    assert abs(big_conv.std().item() - 0.02) < 5e-4 and abs(big_conv.mean().item()) < 5e-4
    for bias in (model.main[0].bias, model.main[11].bias):
        assert torch.count_nonzero(bias) == 0
    bn = model.main[9]  # (512,)
    assert abs(bn.weight.mean().item() - 1.0) < 5e-3 and 0.01 < bn.weight.std().item() < 0.03
    assert torch.count_nonzero(bn.bias) == 0
    assert torch.equal(bn.running_mean, torch.zeros(512)) and torch.equal(bn.running_var, torch.ones(512))


def test_save_and_load_through_auto_model_is_exact(tmp_path):
    AutoConfig.register(PatchDiscriminatorConfig.model_type, PatchDiscriminatorConfig, exist_ok=True)
    AutoModel.register(PatchDiscriminatorConfig, PatchDiscriminator, exist_ok=True)
    model = make()
    model.train()
    model(torch.randn(4, 3, 32, 32))  # move the BatchNorm running statistics away from their initial values
    model.eval()
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path)
    assert type(loaded) is PatchDiscriminator
    for name in ("in_channels", "num_filters", "num_layers", "norm_type", "norm_num_groups", "max_filter_multiplier"):
        assert getattr(loaded.config, name) == getattr(model.config, name), name
    assert_state_dicts_equal(model, loaded)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded.eval()(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"norm_type": "layer"}, "norm_type"),
        ({"num_layers": 0}, "num_layers"),
        ({"num_filters": 0}, "num_filters"),
        ({"in_channels": "3"}, "in_channels"),
        ({"max_filter_multiplier": 0}, "max_filter_multiplier"),
        ({"norm_type": "group", "norm_num_groups": 3}, "norm_num_groups"),
    ],
)
def test_bad_configs_raise_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        PatchDiscriminatorConfig(**{**TINY, **overrides})


def test_bad_inputs_raise_value_error():
    model = make()
    with pytest.raises(ValueError, match="in_channels=3"):
        model(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="at least 24x24"):
        model(torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match="float"):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="shape"):
        model(torch.randn(3, 32, 32))
