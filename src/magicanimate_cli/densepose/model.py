"""The DensePose model `pose` runs: where it lives, how it is loaded, and its input/output contract.

The model is DensePose R-50-FPN-DL (or R-101) exported to TorchScript by `dajes/DensePose-TorchScript`, as
published on the Hugging Face Hub in `LayerNorm/DensePose-TorchScript-with-hint-image`. What this module relies
on, read from the exporter's public source:

- `run.py`: the image is `cv2.imread` output (BGR, uint8) made a tensor with `torch.from_numpy`; the module is
  `torch.jit.load`ed, moved with `.cuda()` on a GPU and made `.float()` on the CPU, and called on one image.
- `detectron2/engine/defaults.py` (`DefaultPredictor.forward`): the image may be (H, W, 3) or (3, H, W); it is
  taken as BGR and resized inside the model (shorter side 800, longer at most 1333), and the results are scaled
  back to the input's pixels. We pass (3, H, W), the layout the Hub file's users (controlnet_aux,
  sd-webui-forge) pass, which both forms of the exporter's forward accept.
- `detectron2/modeling/postprocessing.py` (`detector_postprocess`): the output is a dict with `pred_boxes`
  (n, 4) xyxy in input pixels, `scores` (n,), `pred_classes`, `pred_densepose_coarse_segm` (n, 2, S, S),
  `pred_densepose_fine_segm` (n, 25, S, S) and `pred_densepose_u`/`_v` (n, 25, S, S).
- `detectron2/modeling/roi_heads/fast_rcnn.py`: boxes are clipped to the image, kept when their score exceeds
  the threshold baked in at export (`export.py --min_score`, 0.8), and ordered by decreasing score (NMS order).

The Hub file's users unpack its output as a tuple `(pred_boxes, coarse_segm, fine_segm, u, v, ...)` without
scores; that form is accepted too, and its people keep the model's (decreasing-confidence) order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..runtime.errors import WeightsError
from ..runtime.model_guard import quiet_warnings, running_model

MODEL_FOLDER = "DensePose"
"""Sub-folder of the weights folder that `download-weights --pose` fills."""

MODEL_FILES = {"r50": "densepose_r50_fpn_dl.torchscript", "r101": "densepose_r101_fpn_dl.torchscript"}

FINE_CHANNELS = 25  # 24 body parts and the background
COARSE_CHANNELS = 2  # background / person
_SEGM_KEYS = ("pred_densepose_coarse_segm", "pred_densepose_fine_segm")


def model_file(choice: str, weights: Path) -> Path:
    """Where `choice` points: `r50`/`r101` name the files in `<weights>/DensePose/`; anything else is a path to a
    TorchScript file. Whether it exists is `model_path`'s question."""
    name = MODEL_FILES.get(choice)
    return weights / MODEL_FOLDER / name if name is not None else Path(choice).expanduser()


def model_path(choice: str, weights: Path) -> Path:
    """The DensePose model file `choice` names, which must exist."""
    name = MODEL_FILES.get(choice)
    path = model_file(choice, weights)
    if not path.is_file():
        if name is not None:
            backbone = "" if choice == "r50" else f" --pose-backbone {choice}"
            raise WeightsError(f"{path}: DensePose model not found; run `magicanimate download-weights --pose"
                               f"{backbone}` to fetch it (or pass --pose-model FILE)")
        raise WeightsError(f"{path}: --pose-model file not found")
    return path


@dataclass
class Detections:
    """One frame's people, as the model gives them (tensors on the model's device)."""

    boxes: torch.Tensor  # (n, 4) float xyxy in input pixels
    scores: torch.Tensor | None  # (n,); None when the model applied its own threshold and gives none
    coarse: torch.Tensor  # (n, 2, S, S) person/background logits
    fine: torch.Tensor  # (n, 25, S, S) part logits, 0 = background

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


class PoseModel:
    """A loaded DensePose TorchScript module that turns one RGB frame into `Detections`."""

    def __init__(self, module: torch.jit.ScriptModule, path: Path, device: torch.device, ops_backend: str) -> None:
        self.module = module
        self.path = path
        self.device = device
        self.ops_backend = ops_backend
        self.warnings_seen: set[str] = set()  # the model's own warnings, logged once per loaded model

    @classmethod
    def load(cls, path: Path, device: torch.device) -> PoseModel:
        """Load through the same path for the released file and any stand-in with the contract.

        The detection ops the model calls (`torchvision::nms`, `roi_align`) must be registered before loading,
        or TorchScript refuses the file; `ensure_detection_ops` registers torchvision's or our own.
        """
        from .ops import ensure_detection_ops

        ops_backend = ensure_detection_ops()
        try:
            with quiet_warnings():  # torch's own notices about TorchScript are not the user's business
                module = torch.jit.load(str(path), map_location=device)
        except Exception as exc:  # TorchScript raises RuntimeError, ValueError or zip errors for foreign files
            reason = _one_line(exc)
            if "Unknown builtin op" in reason or "Unknown type name" in reason:
                raise WeightsError(f"{path}: the model needs an operator this PyTorch lacks ({reason})") from None
            raise WeightsError(f"{path}: not a TorchScript model ({reason})") from None
        module.eval()
        if device.type == "cpu":
            module = module.float()  # the exporter's run.py does the same off the GPU
        return cls(module, path, device, ops_backend)

    def detect(self, frame: np.ndarray, where: str = "a frame") -> Detections:
        """People in one RGB uint8 (H, W, 3) frame; `where` names it ("frame 12 of clip.mp4") if the model fails."""
        bgr = torch.from_numpy(np.ascontiguousarray(frame[:, :, ::-1].transpose(2, 0, 1)))
        with torch.no_grad(), running_model(self.path, where, self.warnings_seen):
            raw = self.module(bgr.to(self.device))
        return parse_output(raw, self.path)

    def describe(self) -> dict:
        """What a sidecar records about the model."""
        stat = self.path.stat()
        return {"path": str(self.path), "bytes": stat.st_size, "modified": int(stat.st_mtime),
                "device": str(self.device), "ops": self.ops_backend}


def parse_output(raw: object, path: Path) -> Detections:
    """Check the model's output against the contract and keep what the render needs (not U/V)."""
    if isinstance(raw, dict):
        missing = [k for k in ("pred_boxes", *_SEGM_KEYS) if k not in raw]
        if missing:
            raise _contract_error(path, f"its output dict lacks {', '.join(missing)}")
        boxes, coarse, fine, scores = raw["pred_boxes"], raw[_SEGM_KEYS[0]], raw[_SEGM_KEYS[1]], raw.get("scores")
    elif isinstance(raw, (tuple, list)) and len(raw) >= 5 and all(isinstance(t, torch.Tensor) for t in raw[:5]):
        boxes, coarse, fine, scores = raw[0], raw[1], raw[2], None
    else:
        raise _contract_error(path, f"it returned {type(raw).__name__}, not a dict or tuple of tensors")
    if not isinstance(boxes, torch.Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4:
        raise _contract_error(path, f"pred_boxes has shape {_shape(boxes)}, expected (n, 4)")
    count = boxes.shape[0]
    for name, tensor, channels in (("coarse", coarse, COARSE_CHANNELS), ("fine", fine, FINE_CHANNELS)):
        if not isinstance(tensor, torch.Tensor) or tensor.dim() != 4 or tuple(tensor.shape[:2]) != (count, channels):
            raise _contract_error(path, f"{name} segmentation has shape {_shape(tensor)}, "
                                        f"expected ({count}, {channels}, S, S)")
    if scores is not None and (not isinstance(scores, torch.Tensor) or tuple(scores.shape) != (count,)):
        raise _contract_error(path, f"scores has shape {_shape(scores)}, expected ({count},)")
    return Detections(boxes.float(), None if scores is None else scores.float(), coarse.float(), fine.float())


def _contract_error(path: Path, what: str) -> WeightsError:
    return WeightsError(f"{path}: not a DensePose model with the expected output ({what})")


def _shape(value: object) -> str:
    return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
