"""The released VGG16 and LPIPS v0.1 files convert into the one safetensors file `LPIPS` loads
(`hf_vq.conversion.lpips` through `scripts/convert_lpips_weights.py`)."""

import re

import pytest
import torch

from hf_vq import UsageError
from hf_vq.modules.lpips import LPIPS

from ..conftest import load_script, random_lpips


def test_convert_script_builds_the_safetensors_file_from_fake_released_files(tmp_path, capsys):
    source = random_lpips(seed=7).state_dict()
    # torchvision's VGG16 state dict: features.* plus a classifier (tiny fakes here; it is dropped).
    vgg16 = {key: value for key, value in source.items() if key.startswith("features.")}
    vgg16 |= {"classifier.0.weight": torch.zeros(4, 2), "classifier.0.bias": torch.zeros(4)}
    # LPIPS v0.1 vgg.pth: the five heads only.
    heads = {key: value for key, value in source.items() if key.startswith("lin")}
    torch.save(vgg16, tmp_path / "vgg16.pth")
    torch.save(heads, tmp_path / "vgg.pth")
    output = tmp_path / "out" / "lpips_vgg16.safetensors"
    script = load_script("convert_lpips_weights")
    argv = ["--vgg16", str(tmp_path / "vgg16.pth"), "--lpips", str(tmp_path / "vgg.pth"), "--output", str(output)]
    assert script.main(argv) == 0
    assert "wrote 31 tensors" in capsys.readouterr().out
    loaded = LPIPS.from_pretrained(output)
    for key, value in loaded.state_dict().items():
        torch.testing.assert_close(value, source[key], rtol=0, atol=0, msg=key)

    del heads["lin4.model.1.weight"]
    torch.save(heads, tmp_path / "vgg_incomplete.pth")
    argv[3] = str(tmp_path / "vgg_incomplete.pth")
    with pytest.raises(UsageError, match=re.escape("missing keys ['lin4.model.1.weight']")):
        script.main(argv)


class _NotATensor:
    pass


def test_convert_script_refuses_pickled_objects(tmp_path):
    torch.save({"features.0.weight": _NotATensor()}, tmp_path / "evil.pth")
    torch.save({}, tmp_path / "vgg.pth")
    argv = [
        "--vgg16",
        str(tmp_path / "evil.pth"),
        "--lpips",
        str(tmp_path / "vgg.pth"),
        "--output",
        str(tmp_path / "x.safetensors"),
    ]
    with pytest.raises(UsageError, match="--vgg16: .*evil.pth holds Python objects other than tensors"):
        load_script("convert_lpips_weights").main(argv)
    assert not (tmp_path / "x.safetensors").exists()
