"""Files written whole or not at all: a hidden temporary beside the target, then one rename.

Every output of the tool (videos, frames, sidecars, records, checkpoints) goes through these, so a reader never
sees half a file and an interrupted run leaves no partial output."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .errors import OutputError


def make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create the output folder ({one_line(exc)})") from None
    if not folder.is_dir():
        raise OutputError(f"{folder}: cannot create the output folder (a file has that name)")


def temp_file(path: Path) -> Path:
    """A hidden, unique temporary beside `path`, so the final rename stays on one file system."""
    try:
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial" + path.suffix)
    except OSError as exc:
        raise OutputError(f"{path.parent}: cannot write in the output folder ({one_line(exc)})") from None
    os.close(handle)
    default_permissions(Path(name), 0o666)
    return Path(name)


def default_permissions(path: Path, mode: int) -> None:
    """Temporaries are created private (0600/0700); the final file should get the usual umask'd mode."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


def remove_file(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write JSON via a temporary and a rename, so readers never see half a sidecar.

    Fractions are written as "num/den" strings (exact, and what `Fraction(str)` reads back);
    paths as strings; numpy values as Python numbers or lists.
    """
    target = Path(path)
    text = json.dumps(obj, indent=2, default=json_value, ensure_ascii=False) + "\n"
    return write_atomic(target, lambda temp: temp.write_text(text, encoding="utf-8"))


def write_atomic(target: Path, write: Any) -> Path:
    make_folder(target.parent)
    temp = temp_file(target)
    try:
        write(temp)
        os.replace(temp, target)
    except OSError as exc:
        remove_file(temp)
        raise OutputError(f"{target}: cannot write the file ({one_line(exc)})") from None
    except BaseException:
        remove_file(temp)
        raise
    return target


def json_value(value: Any) -> Any:
    if isinstance(value, Fraction):
        return f"{value.numerator}/{value.denominator}"
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def write_folder_atomic(target: Path, fill: Callable[[Path], None], what: str) -> Path:
    """Fill a hidden temporary folder beside `target` with `fill(temp)`, then swap it in whole (replacing an
    earlier `target`): a reader, or a run resumed after a kill, sees the old folder or the new one, never a mix.
    A failure removes the temporary and says, in one line, that the `what` could not be written."""
    temp = target.with_name(f".tmp-{target.name}")
    old = target.with_name(f".old-{target.name}")
    shutil.rmtree(temp, ignore_errors=True)
    try:
        temp.mkdir(parents=True)
        fill(temp)
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            os.replace(target, old)
        os.replace(temp, target)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(temp, ignore_errors=True)
        raise OutputError(f"{target}: cannot write the {what} ({one_line(exc)})") from None
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return target
