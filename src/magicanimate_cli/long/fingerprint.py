"""What decides the numbers of a run, as comparable strings: a checkpoint may only be resumed by an equal run.

The inputs are identified by the sha256 of their files, not by path and modification time: a moved or copied
motion is still the same motion, while a re-exported one with the same name is not. Hashing a motion file is
cheap next to decoding it (a 30-second DensePose mp4 is tens of megabytes). Together with the size, fit and frame
selection this fixes the working-size control frames exactly, before any frame is decoded or model loaded.
Device and process count are left out on purpose: they change the result only within float tolerance.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..animate.settings import AnimateSettings
from ..media.reader import list_frame_files

_CHUNK = 1 << 20


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def motion_digest(path: Path) -> str:
    """A video file's bytes, or a frame folder's frame names and bytes in the order they are read."""
    if not path.is_dir():
        return file_digest(path)
    digest = hashlib.sha256()
    for frame in list_frame_files(path):
        digest.update(frame.name.encode() + b"\0" + file_digest(frame).encode() + b"\n")
    return f"sha256:{digest.hexdigest()}"


def run_fingerprint(settings: AnimateSettings, dtype: str, frames: int, reference: Path,
                    motion: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(fingerprint, labels): entries are named as the options that set them; labels name the hashed files."""
    selection = settings.selection
    fingerprint = {
        "size": str(settings.size), "width": str(settings.width), "height": str(settings.height),
        "fit": settings.fit, "start": str(selection.start), "max-frames": str(selection.max_frames),
        "frame-stride": str(selection.stride), "frames": str(frames), "steps": str(settings.steps),
        "guidance": repr(float(settings.guidance)), "context-frames": str(settings.context_frames),
        "context-overlap": str(settings.context_overlap), "wrap": "wrap" if settings.wrap else "no-wrap",
        "noise": settings.noise, "fusion": settings.fusion, "scheduler": settings.scheduler,
        "dtype": dtype,
        "reference": file_digest(reference), "motion": motion_digest(motion),
    }
    labels = {"reference": str(reference), "motion": str(motion)}
    if settings.animation_weights is not None:  # only then, so checkpoints of runs without it still resume
        fingerprint["animation-weights"] = animation_weights_digest(settings)
        labels["animation-weights"] = str(settings.animation_weights)
    return fingerprint, labels


def animation_weights_digest(settings: AnimateSettings) -> str:
    """`--animation-weights`: the names and bytes of the files the engine reads from that folder, so a resume
    with another fine-tune (or the same folder retrained in place) is refused."""
    from ..engine.loader import animation_files

    root = settings.animation_weights
    digest = hashlib.sha256()
    for path in animation_files(settings.weights, root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + file_digest(path).encode() + b"\n")
    return f"sha256:{digest.hexdigest()}"


def pose_fingerprint(settings) -> dict[str, str]:
    """With --motion-from-video: the DensePose model file and the options that decide the render."""
    from ..densepose.model import model_path

    fingerprint = {"pose-model": file_digest(model_path(settings.model, settings.weights)),
                   "min-score": repr(float(settings.min_score)), "people": settings.people}
    if settings.smooth is not None:  # only then, so checkpoints of runs without --smooth still resume
        fingerprint["smooth"] = repr(sorted(settings.smooth.record().items()))
    return fingerprint
