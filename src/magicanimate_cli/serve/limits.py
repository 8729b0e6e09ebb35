"""An upload made safe to use: copied under a name the server chooses, checked as the command line checks it.

The user's file name is kept only as text for messages (`Upload.name`); the server's copy is `reference.png`
or `motion.mp4` in the job's folder, so no user-supplied name is ever part of a path the server writes or
reads. Errors are the command line's own `MagicAnimateError` messages, with the server's paths replaced by the
names the user knows.
"""

from __future__ import annotations

import re
import shutil
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from ..media.files import IMAGE_SUFFIXES, MOTION_SUFFIXES
from ..runtime.errors import InputError, SettingsError

NAME_LIMIT = 80

PAGE_NAMES = {"--motion-from-video": "Render DensePose first", "--max-frames": "Frames", "--steps": "Steps",
              "--size": "Size", "--guidance": "Guidance", "--scheduler": "Scheduler", "--align": "Align",
              "--smooth": "Smooth the render", "--fit": "Fit", "--seed": "Seed"}
"""The command line's option names as the page labels them, for messages the CLI's checks write."""


@dataclass(frozen=True)
class Upload:
    """The server's copy of an uploaded file, and what its owner called it (for messages only)."""

    path: Path
    name: str


def display_name(name: str) -> str:
    """A user's file name as safe one-line text: control characters dropped, long names shortened."""
    text = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip() or "upload"
    return text if len(text) <= NAME_LIMIT else text[: NAME_LIMIT - 1] + "…"


def stage_upload(upload: str | Path | None, folder: Path, role: str, what: str) -> Upload:
    """Copy Gradio's upload into `folder` as `<role><suffix>`; the suffix is kept only if it is a known one."""
    if upload is None or str(upload) == "":
        raise InputError(f"no {what} uploaded; choose a file first")
    source = Path(upload)
    name = display_name(source.name)
    suffix = source.suffix.lower()
    known = IMAGE_SUFFIXES if role == "reference" else MOTION_SUFFIXES + IMAGE_SUFFIXES
    target = folder / f"{role}{suffix if suffix in known else ''}"
    try:
        shutil.copyfile(source, target)
    except FileNotFoundError:
        raise InputError(f"{name}: the upload is no longer on the server (it expired); upload it again") from None
    except IsADirectoryError:
        raise InputError(f"{name}: is a folder, not a file") from None
    return Upload(target, name)


def check_reference(upload: Upload) -> None:
    """The command line's image checks (format, damage, size), before the job waits for a device."""
    from ..media.reader import load_reference

    load_reference(upload.path)


def check_frames(frames: int | None, limit: int) -> int:
    """How many motion frames to animate: the page's choice, at most the server's --max-frames."""
    if frames is None:
        return limit
    if frames < 1:
        raise SettingsError(f"frames must be at least 1 (got {frames})")
    if frames > limit:
        raise SettingsError(f"frames {frames}: this server animates at most {limit} frames per job; choose fewer")
    return frames


def check_motion_upload(upload: Upload, frames: int) -> int:
    """The command line's motion checks (a decodable video with frames); returns the frames that will be used."""
    from ..media.reader import open_motion

    if upload.path.suffix in IMAGE_SUFFIXES:
        raise InputError(f"{upload.path}: is a single image; the motion must be a video")
    return len(open_motion(upload.path, max_frames=frames))


def user_message(exc: BaseException | str, uploads: list[Upload], root: Path) -> str:
    """An error (or warning) as one line, naming files as the user named them, showing none of the server's
    folders."""
    text = " ".join(str(exc).split())
    for upload in uploads:
        text = text.replace(str(upload.path), upload.name)
    text = re.sub(r"--[a-z][a-z-]*", lambda m: f"'{PAGE_NAMES[m.group()]}'" if m.group() in PAGE_NAMES
                  else m.group(), text)
    return text.replace(f"{root}/", "").replace(str(root), "server")
