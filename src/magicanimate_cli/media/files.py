"""The files a run reads and writes, by kind: which suffixes are which, where an output's sidecar and grid go, and
whether an output can be written at all (checked before the long part of a run).

Every feature that writes a video or a render shares these, so they live below the features."""

from __future__ import annotations

import os
from pathlib import Path

from ..runtime.errors import OutputError, SettingsError

VIDEO_SUFFIXES = (".mp4", ".webm", ".gif")
"""What a run can write as a video; a path without a suffix (or a folder) is a folder of PNG frames."""
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
"""What a reference image may be."""
MOTION_SUFFIXES = (".mp4", ".mov", ".webm", ".avi", ".gif", ".mkv")
"""What a motion video may be (a folder of frames is a motion too)."""


def output_kind(path: Path) -> str:
    """`video` for .mp4/.webm/.gif, `frames` for a folder of PNGs; anything else is refused up front."""
    text = str(path)
    if path.is_dir() or text.endswith(("/", os.sep)) or path.suffix == "":
        return "frames"
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return "video"
    raise SettingsError(
        f"{path}: cannot write {path.suffix!r} files; use .mp4, .webm, .gif or a folder for PNG frames"
    )


def sidecar_path(output: Path) -> Path:
    """OUTPUT.json beside the output (out.mp4 → out.mp4.json, frames/ → frames.json)."""
    return output.parent / f"{output.name}.json"


def grid_path(output: Path) -> Path:
    """Where `--grid` writes the reference | motion | result video (out.mp4 → out.grid.mp4)."""
    if output_kind(output) == "frames":
        return output.parent / f"{output.name}-grid"
    return output.with_name(f"{output.stem}.grid{output.suffix}")


def check_output_writable(output: Path) -> None:
    """Fail before the long part if the output cannot be created there."""
    output_kind(output)
    folder = output.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create the output folder ({exc.strerror or exc})") from None
    probe = folder / f".{output.name}.write-test"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"{folder}: output folder is not writable ({exc.strerror or exc})") from None
