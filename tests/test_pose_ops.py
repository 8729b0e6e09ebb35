"""torchvision's detection ops for the TorchScript DensePose model, with or without torchvision.

Golden data (tests/data/pose_ops/*.npz) holds seeded inputs and the outputs of torchvision 0.29.1's CPU kernels
(torch 2.14.1), made in a separate environment: ROIs tiny, malformed, huge, partly and wholly outside the map, on
a second image; aligned on and off; sampling ratio adaptive, 2 and 3; pooled 7, 14, 28 and 5x3; spatial scales
1/2..1/32; NMS with score ties, heavy overlap, suppression chains, zero-area boxes, batched_nms level offsets and
IoUs exactly at the threshold.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from magicanimate_cli.densepose.ops import ensure_detection_ops
from magicanimate_cli.densepose import ops

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")
"""The DensePose model ships as TorchScript; torch's advice to move to torch.export does not apply to it."""

GOLDEN = Path(__file__).parent / "data" / "pose_ops"
ROI_ALIGN = np.load(GOLDEN / "roi_align.npz")
NMS = np.load(GOLDEN / "nms.npz")

ROI_ALIGN_ATOL = 1e-5
"""Outputs are averages of bilinear samples of N(0, 1) features, |value| < 4, where a float32 ulp is <= 4.8e-7.
Our kernel sums the same products in the same order, rounding its running sums differently (embedding_bag's
vectorised multiply-adds), so it lands within a few ulps of torchvision: 4.8e-7 at most on this data. 1e-5 leaves
room for another build's rounding, while each wrong rule tried (samples 0.1 bin off, the -1 boundary at -0.5, no
edge clamp, no 1x1 minimum, no aligned offset) fails these tests by orders of magnitude more."""


def _cases(golden) -> list[str]:
    return sorted({key.split("/")[0] for key in golden.files if not key.startswith("meta/")})


def _roi_align_args(case: str) -> tuple:
    scale, pooled_h, pooled_w, sampling_ratio, aligned = ROI_ALIGN[f"{case}/params"].tolist()
    features = torch.from_numpy(ROI_ALIGN[f"{case}/input"])
    rois = torch.from_numpy(ROI_ALIGN[f"{case}/rois"])
    return features, rois, scale, int(pooled_h), int(pooled_w), int(sampling_ratio), bool(aligned)


def _nms_args(case: str) -> tuple:
    boxes = torch.from_numpy(NMS[f"{case}/boxes"])
    scores = torch.from_numpy(NMS[f"{case}/scores"])
    return boxes, scores, float(NMS[f"{case}/threshold"])


def _torchvision_usable() -> bool:
    try:
        import torchvision  # noqa: F401
    except Exception:
        return False
    return all(
        torch._C._dispatch_has_kernel_for_dispatch_key(f"torchvision::{name}", "CPU") for name in ("nms", "roi_align")
    )


@pytest.fixture(scope="module")
def backend() -> str:
    return ensure_detection_ops()


def test_the_backend_is_torchvision_exactly_when_torchvision_works(backend):
    assert backend == ("torchvision" if _torchvision_usable() else "builtin")


def test_the_ops_are_reachable_through_the_dispatcher_with_torchvisions_schemas(backend):
    for name, schema in ops._SCHEMAS.items():
        packet = getattr(torch.ops.torchvision, name)
        assert str(packet.default._schema) == f"torchvision::{name}{schema}"


def test_a_second_call_registers_nothing(backend, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("registered an op twice")

    monkeypatch.setattr(torch.library, "define", forbidden)
    monkeypatch.setattr(torch.library, "impl", forbidden)
    assert ensure_detection_ops() == backend


@pytest.mark.parametrize("case", _cases(ROI_ALIGN))
def test_roi_align_through_the_dispatcher_matches_torchvision(backend, case):
    out = torch.ops.torchvision.roi_align(*_roi_align_args(case))
    expected = torch.from_numpy(ROI_ALIGN[f"{case}/output"])
    assert out.dtype == expected.dtype and out.shape == expected.shape
    torch.testing.assert_close(out, expected, rtol=0, atol=ROI_ALIGN_ATOL)


@pytest.mark.parametrize("case", _cases(ROI_ALIGN))
def test_our_roi_align_matches_torchvision_even_where_torchvision_serves_the_op(case):
    out = ops.roi_align(*_roi_align_args(case))
    torch.testing.assert_close(out, torch.from_numpy(ROI_ALIGN[f"{case}/output"]), rtol=0, atol=ROI_ALIGN_ATOL)


@pytest.mark.parametrize("case", _cases(NMS))
def test_nms_through_the_dispatcher_keeps_exactly_torchvisions_boxes_in_its_order(backend, case):
    keep = torch.ops.torchvision.nms(*_nms_args(case))
    assert keep.dtype == torch.int64
    assert keep.tolist() == NMS[f"{case}/keep"].tolist()


@pytest.mark.parametrize("case", _cases(NMS))
def test_our_nms_keeps_exactly_torchvisions_boxes_even_where_torchvision_serves_the_op(case):
    assert ops.nms(*_nms_args(case)).tolist() == NMS[f"{case}/keep"].tolist()


def test_nms_compares_the_float32_iou_with_the_threshold_in_double_like_torchvision():
    scores = torch.tensor([0.9, 0.8])
    # IoU 3/10 rounds to float32 0.30000001, above 0.3: the lower-scored box is suppressed.
    assert ops.nms(torch.tensor([[0.0, 0.0, 10.0, 1.0], [0.0, 0.0, 3.0, 1.0]]), scores, 0.3).tolist() == [0]
    # IoU 7/10 rounds to float32 0.69999999, not above 0.7: both stay.
    assert ops.nms(torch.tensor([[0.0, 0.0, 10.0, 1.0], [0.0, 0.0, 7.0, 1.0]]), scores, 0.7).tolist() == [0, 1]


def test_roi_align_gradients_reach_the_features():
    features = torch.randn(1, 2, 9, 11, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0.0, 1.3, 2.1, 7.7, 6.2], [0.0, -2.0, 0.5, 4.0, 12.0]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda f: ops.roi_align(f, rois, 1.0, 3, 2, 2, True), (features,))


def test_misshapen_inputs_fail_loudly():
    with pytest.raises(ValueError, match="rois"):
        ops.roi_align(torch.zeros(1, 1, 4, 4), torch.zeros(3, 4), 1.0, 2, 2, 2, False)
    with pytest.raises(ValueError, match="scores"):
        ops.nms(torch.zeros(3, 4), torch.zeros(2), 0.5)


class _Detector(torch.nn.Module):
    """The two calls the DensePose model makes, scripted the way its exporter scripted them."""

    def forward(self, features: torch.Tensor, rois: torch.Tensor, boxes: torch.Tensor, scores: torch.Tensor):
        pooled = torch.ops.torchvision.roi_align(features, rois, 0.25, 7, 7, 2, False)
        keep = torch.ops.torchvision.nms(boxes, scores, 0.7)
        return pooled, keep


def _script_inputs() -> tuple:
    features, rois, *_ = _roi_align_args("case00")
    boxes, scores, _ = _nms_args("clusters_0.7")
    return features, rois, boxes, scores


@pytest.fixture(scope="module")
def scripted_model(backend, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("scripted") / "detector.pt"
    torch.jit.save(torch.jit.script(_Detector()), str(path))
    return path


def _run_python(code: str, tmp_path: Path, broken_torchvision: bool) -> subprocess.CompletedProcess:
    """A fresh interpreter, as a user's: optionally with a torchvision that fails halfway through its import."""
    env_path = [str(Path(ops.__file__).parents[2])]
    if broken_torchvision:
        fake = tmp_path / "fake" / "torchvision"
        fake.mkdir(parents=True)
        # A CUDA torchvision beside a CPU torch: its C extension defines nothing, then its import raises.
        (fake / "__init__.py").write_text(
            "import torch\n"
            f"torch.library.define('torchvision::nms', {ops._SCHEMAS['nms']!r})\n"
            "raise RuntimeError('operator torchvision::roi_align does not exist')\n"
        )
        env_path.insert(0, str(fake.parent))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(env_path)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=300
    )


def test_a_scripted_model_loads_and_runs_in_a_fresh_process_after_ensure(scripted_model, tmp_path):
    inputs = _script_inputs()
    expected = torch.jit.load(str(scripted_model))(*inputs)
    torch.save(inputs, tmp_path / "inputs.pt")
    code = f"""
        import torch
        from magicanimate_cli.densepose.ops import ensure_detection_ops
        print(ensure_detection_ops())
        model = torch.jit.load({str(scripted_model)!r})
        torch.save(model(*torch.load({str(tmp_path / "inputs.pt")!r})), {str(tmp_path / "out.pt")!r})
    """
    result = _run_python(code, tmp_path, broken_torchvision=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["builtin"]
    pooled, keep = torch.load(tmp_path / "out.pt")
    torch.testing.assert_close(pooled, expected[0], rtol=0, atol=ROI_ALIGN_ATOL)
    assert keep.tolist() == expected[1].tolist()


def test_a_scripted_model_does_not_load_without_the_ops(scripted_model, tmp_path):
    code = f"import torch; torch.jit.load({str(scripted_model)!r})"
    result = _run_python(code, tmp_path, broken_torchvision=True)
    assert result.returncode != 0
    assert "torchvision::" in result.stderr
