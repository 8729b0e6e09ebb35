"""Whether a weights folder is complete, without the network (`download-weights --check`, `HF_HUB_OFFLINE`).

The engine's own header check cannot see a truncated small file (a tokenizer file, say); the sizes recorded
when the files were placed can, and the DensePose model is checked to be a whole TorchScript archive.
"""

from __future__ import annotations

from pathlib import Path

from ..densepose.model import MODEL_FILES as POSE_MODELS
from ..densepose.model import MODEL_FOLDER as POSE_DIR
from .records import Records


def pose_model_path(root: Path, backbone: str = "r50") -> Path:
    """Where `download-weights --pose` puts the DensePose model (and `magicanimate pose` looks for it)."""
    return Path(root).expanduser() / POSE_DIR / POSE_MODELS[backbone]


def check_pose_model(root: Path, backbone: str) -> list[str]:
    """The DensePose model is in place and is a whole zip archive (the TorchScript format); no network."""
    import zipfile

    path = pose_model_path(root, backbone)
    if not path.is_file():
        return [f"{path}: file not found; run `magicanimate download-weights --pose"
                + ("" if backbone == "r50" else f" --pose-backbone {backbone}") + "`"]
    try:
        with zipfile.ZipFile(path) as archive:  # its directory sits at the end: a truncated file has none
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        return [f"{path}: not a whole TorchScript archive ({exc}); the file is truncated or corrupt, fetch it again"]
    if not any(name.endswith("/data.pkl") for name in names) or not any("/code/" in name for name in names):
        return [f"{path}: a zip archive, but not a TorchScript model (no data.pkl and code/ in it)"]
    return []


def check_motion_module(root: Path) -> list[str]:
    """AnimateDiff's motion module is in place, readable, and holds motion-module weights; no network."""
    from ..engine.loader import MOTION_MODULE, checkpoint_shapes
    from ..runtime.errors import WeightsError

    path = Path(root).expanduser() / MOTION_MODULE
    if not path.is_file():
        return [f"{path}: file not found; run `magicanimate download-weights --motion-module`"]
    try:
        keys = checkpoint_shapes(path)
    except WeightsError as exc:
        return [str(exc)]
    if not any("motion_modules." in key for key in keys):
        return [f"{path}: holds no motion-module weights (no `motion_modules.` key among its {len(keys)} entries); "
                "is it AnimateDiff's mm_sd_v15.ckpt?"]
    return []


def check_directory(root: Path, pose: str | None = None, motion_module: bool = False) -> list[str]:
    """Problems with a weights directory, without the network: the engine's own check, plus recorded sizes.

    The recorded sizes catch a truncated file the engine's header check cannot see (a tokenizer file, say).
    With `pose` (a backbone), the DensePose model must be there too; with `motion_module`, AnimateDiff's.
    """
    from ..engine.loader import check_weights

    root = Path(root).expanduser()
    problems = check_weights(root)
    if pose is not None:
        problems += check_pose_model(root, pose)
    if motion_module:
        problems += check_motion_module(root)
    records = Records(root)
    for local, record in sorted(records.files.items()):
        path = root / local
        if local.startswith("metrics/") or not path.is_file():
            continue
        size = path.stat().st_size
        if size != record.get("size"):
            problem = f"{path}: {size} bytes, but {record.get('size')} were placed; the file was truncated or changed"
            if not any(str(path) in p for p in problems):
                problems.append(problem)
    return problems
