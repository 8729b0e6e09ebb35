"""Feature networks load the released file layouts strictly and return features of the documented shape."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from test_eval_support import save_random_lpips_weights

from magicanimate_cli.evaluation import weights
from magicanimate_cli.evaluation.networks import i3d, inception, lpips, resnet3d
from magicanimate_cli.evaluation.networks.checkpoint import load_strict
from magicanimate_cli.runtime.errors import WeightsError


def _as_hara_checkpoint(state: dict[str, torch.Tensor]) -> dict:
    """3D-ResNets-PyTorch saves {'epoch', 'arch', 'state_dict'} with DataParallel's `module.` prefix."""
    return {"epoch": 200, "arch": "resnet-50", "state_dict": {f"module.{k}": v for k, v in state.items()}}


NETWORKS = [
    # (network, loader, released-file wrapper, documented input, documented output shape).
    # FID's InceptionV3 goes through the same checks in test_eval_streaming's FID test, which needs
    # it loaded from a file anyway; at 299x299 per frame it is the costliest network to run here.
    pytest.param(resnet3d.ResNet3D50, resnet3d.load_resnet3d50, _as_hara_checkpoint,
                 (1, 3, resnet3d.CLIP_LENGTH, resnet3d.INPUT_SIZE, resnet3d.INPUT_SIZE), (1, resnet3d.FEATURE_DIM),
                 id="fid-vid-resnet3d50"),
    pytest.param(i3d.InceptionI3d, i3d.load_i3d, dict,
                 (1, 3, i3d.CLIP_LENGTH, i3d.INPUT_SIZE, i3d.INPUT_SIZE), (1, i3d.FEATURE_DIM), id="fvd-i3d"),
]


@pytest.mark.parametrize(("network", "loader", "wrap", "input_shape", "output_shape"), NETWORKS)
def test_network_loads_random_weights_from_its_released_file_format(
    tmp_path: Path, network: type[torch.nn.Module], loader: Callable[[Path], torch.nn.Module],
    wrap: Callable[[dict], dict], input_shape: tuple[int, ...], output_shape: tuple[int, ...],
) -> None:
    torch.manual_seed(0)
    original = network()
    for module in original.modules():  # non-trivial running statistics, so a missed buffer would show
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "weights.pth"
    torch.save(wrap(original.state_dict()), path)

    loaded = loader(path)

    assert not loaded.training
    loaded_state = loaded.state_dict()
    for key, tensor in original.state_dict().items():
        assert torch.equal(loaded_state[key], tensor), key
    with torch.no_grad():
        features = loaded(torch.rand(input_shape) * 2 - 1)
    assert tuple(features.shape) == output_shape
    assert torch.isfinite(features).all()


def test_fid_inception_keys_follow_pytorch_fid_file() -> None:
    keys = inception.FIDInceptionV3().state_dict().keys()
    assert {"Conv2d_1a_3x3.conv.weight", "Mixed_5b.branch_pool.bn.running_var", "Mixed_7c.branch3x3dbl_3b.conv.weight",
            "fc.weight"} <= set(keys)
    assert inception.FIDInceptionV3().fc.out_features == 1008
    assert not any(k.startswith("AuxLogits") for k in keys)


def test_i3d_and_resnet3d_keys_follow_their_released_files() -> None:
    assert {"Conv3d_1a_7x7.conv3d.weight", "Mixed_4f.b3b.bn.running_mean", "logits.conv3d.bias"} <= set(
        i3d.InceptionI3d().state_dict())
    assert {"conv1.weight", "layer1.0.downsample.0.weight", "layer4.2.bn3.running_var", "fc.bias"} <= set(
        resnet3d.ResNet3D50().state_dict())


def test_lpips_loads_torchvision_vgg16_and_lpips_heads_and_returns_one_distance_per_image(tmp_path: Path) -> None:
    save_random_lpips_weights(tmp_path)
    model = lpips.load_lpips(weights.VGG16.path(tmp_path), weights.LPIPS_VGG_HEADS.path(tmp_path))
    a, b = torch.rand(3, 3, 32, 40), torch.rand(3, 3, 32, 40)
    with torch.no_grad():
        same, different = model(a, a), model(a, b)
    assert same.shape == (3,) and torch.equal(same, torch.zeros(3))
    assert (different > 0).all()
    expected = {f"lin{i}.model.1.weight" for i in range(5)}
    assert set(torch.load(weights.LPIPS_VGG_HEADS.path(tmp_path))) == expected


def test_missing_weights_file_error_names_the_file_and_the_download_command(tmp_path: Path) -> None:
    with pytest.raises(WeightsError) as error:
        weights.require_file(weights.I3D_KINETICS, tmp_path)
    message = str(error.value)
    assert str(tmp_path / "metrics" / "i3d_pretrained_400.pt") in message
    assert "magicanimate download-weights --metrics" in message


def test_weights_file_with_a_missing_key_is_refused_naming_file_and_key(tmp_path: Path) -> None:
    heads = lpips.LPIPSHeads().state_dict()
    del heads["lin3.model.1.weight"]
    path = tmp_path / "heads.pth"
    torch.save(heads, path)
    with pytest.raises(WeightsError, match=r"heads\.pth: does not fit LPIPSHeads: missing lin3\.model\.1\.weight"):
        load_strict(lpips.LPIPSHeads(), path)


def test_weights_file_with_a_reshaped_tensor_is_refused(tmp_path: Path) -> None:
    heads = lpips.LPIPSHeads().state_dict()
    heads["lin0.model.1.weight"] = torch.zeros(1, 32, 1, 1)
    path = tmp_path / "heads.pth"
    torch.save(heads, path)
    with pytest.raises(WeightsError, match=r"heads\.pth: .*wrong shape lin0\.model\.1\.weight \(1, 32, 1, 1\)"):
        load_strict(lpips.LPIPSHeads(), path)


def test_unreadable_weights_file_is_a_weights_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="broken.pth: cannot read the weights: not a PyTorch checkpoint"):
        i3d.load_i3d(path)


def test_weights_spec_places_every_file_under_metrics(tmp_path: Path) -> None:
    for spec in weights.METRIC_WEIGHT_FILES:
        assert spec.path(tmp_path) == tmp_path / "metrics" / spec.filename
        assert spec.url.startswith("https://")
    assert {m for spec in weights.METRIC_WEIGHT_FILES for m in spec.metrics} == {"lpips", "fid", "fid-vid", "fvd"}


def test_default_weights_dir_is_magicanimate_home_else_user_cache(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    monkeypatch.setenv("MAGICANIMATE_HOME", str(tmp_path))
    assert weights.default_weights_dir() == tmp_path
    monkeypatch.delenv("MAGICANIMATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert weights.default_weights_dir() == tmp_path / "home" / ".cache" / "magicanimate"
