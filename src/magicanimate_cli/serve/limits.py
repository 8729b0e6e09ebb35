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


def whole_number(value: str | float | None, field: str) -> int | None:
    """A number field's text (or an API client's number) as an int; None when left empty. Anything else, a
    fraction or a word, is refused naming the field: never truncated, never read as empty (which would silently
    mean "all frames" or "a random seed")."""
    text = "" if value is None else str(value).strip()
    if text == "":
        return None
    try:
        number = float(text)
    except ValueError:
        raise SettingsError(f"{field}: must be a whole number (got \"{display_name(text)}\")") from None
    if not number.is_integer():
        raise SettingsError(f"{field}: must be a whole number (got {text})")
    return int(number)


def check_frames(frames: str | float | None, limit: int) -> int:
    """How many motion frames to animate: the page's choice (empty: all, up to --max-frames), at most the limit."""
    count = whole_number(frames, "Frames")
    if count is None:
        return limit
    if count < 1:
        raise SettingsError(f"Frames: must be at least 1 (got {count})")
    if count > limit:
        raise SettingsError(f"Frames: this server animates at most {limit} frames per job (got {count}); "
                            "choose fewer")
    return count


def check_motion_upload(upload: Upload, frames: int) -> int:
    """The command line's motion checks (a decodable video with frames); returns the frames that will be used."""
    from ..media.reader import open_motion

    check_motion_kind(upload)
    return len(open_motion(upload.path, max_frames=frames))


def check_motion_kind(upload: Upload) -> None:
    """Refuse a still image as the motion, by its name or by its content (a PNG renamed .mp4 decodes as a video
    of one frame): what it is, in words, and what the motion must be."""
    kind = still_image_kind(upload.path)
    if kind is None:
        return
    suffix = Path(upload.name).suffix.lower()
    named = f" (named {suffix})" if suffix in MOTION_SUFFIXES else ""
    raise InputError(f"{upload.path}: a {kind} image{named}, not a video; the motion must be a video "
                     f"({', '.join(MOTION_SUFFIXES[:-1])} or {MOTION_SUFFIXES[-1]})")


def still_image_kind(path: Path) -> str | None:
    """`PNG`, `JPEG`, `WebP`... when the file is one still image, by its name or by its content (FFmpeg reads it
    with an image demuxer, `<format>_pipe`, whatever its name); None for anything else, a file FFmpeg cannot
    open included (the video checks then say why)."""
    import av

    if path.suffix.lower() in IMAGE_SUFFIXES:
        return IMAGE_FORMAT_NAMES.get(path.suffix.lower().lstrip("."))
    try:
        with av.open(str(path)) as container:
            demuxer = container.format.name
    except (av.FFmpegError, OSError):
        return None
    if demuxer.endswith("_pipe"):
        image_format = demuxer.removesuffix("_pipe")
        return IMAGE_FORMAT_NAMES.get(image_format, image_format.upper())
    return "still" if demuxer == "image2" else None


IMAGE_FORMAT_NAMES = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WebP", "gif": "GIF", "bmp": "BMP",
                      "tiff": "TIFF"}
"""Image formats by the names people know them by (FFmpeg's demuxers and the files' suffixes)."""


def motion_look(upload: Upload, reporter) -> None:
    """Animate's check of an uploaded motion, for Preview: `reporter` hears a warning when its first frame does
    not look like a DensePose render (the user likely meant 'Render DensePose first')."""
    from ..animate.job import motion_format
    from ..media.reader import open_motion

    first = next(iter(open_motion(upload.path, max_frames=1)))
    motion_format(first, upload.path, reporter)


NOT_A_RENDER = re.compile(r"(?P<name>.+?): does not look like a DensePose render\b")
"""The command line's warning about a motion that is not a render (animate.job.motion_format), as it reads after
`user_message`."""


def page_warning(message: str, renders: bool) -> str:
    """A warning in the page's words: the command line's "not a DensePose render" one names a colour map and an
    option; the page's says what a render looks like and offers 'Render DensePose first' only where this server
    can do it (`renders`)."""
    found = NOT_A_RENDER.match(message)
    if found is None:
        return message
    said = (f"{found['name']}: does not look like a DensePose render (a figure of coloured body parts on a dark "
            "purple background, which is what the model follows)")
    if renders:
        return f"{said}; if it is an ordinary video of a person, tick 'Render DensePose first'"
    return (f"{said}, so the animation will hardly follow it; this server cannot make a render from an ordinary "
            "video: upload a DensePose render instead")


def user_message(exc: BaseException | str, uploads: list[Upload], root: Path) -> str:
    """An error (or warning) as one line, naming files as the user named them, showing none of the server's
    folders."""
    text = " ".join(str(exc).split())
    for upload in uploads:
        text = text.replace(str(upload.path), upload.name)
    leading = re.match(r"(--[a-z][a-z-]*) (must|may) ", text)
    if leading and leading.group(1) in PAGE_NAMES:  # "--steps must be ..." → "Steps: must be ..."
        text = f"{PAGE_NAMES[leading.group(1)]}: {text[len(leading.group(1)) + 1:]}"
    text = re.sub(r"--[a-z][a-z-]*", lambda m: f"'{PAGE_NAMES[m.group()]}'" if m.group() in PAGE_NAMES
                  else m.group(), text)
    return text.replace(f"{root}/", "").replace(str(root), "server")
