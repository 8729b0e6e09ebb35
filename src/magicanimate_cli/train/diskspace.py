"""Disk full, said plainly: how much a write needed and how much the device holding RUN has free.

A full disk surfaces as whatever the writing library says (torch's zip writer: "unexpected pos 5416896 vs
5416784"; safetensors: an IoError), or as ENOSPC. Every file of a run is written whole or not at all (a temporary,
then a rename), so after a failed write the free space is what the device really has: when it is below what the
write needed, or the error is ENOSPC or EDQUOT, the run says "no space left"; anything else is named as it is.
Before the first checkpoint the run checks that the device can hold one at all.
"""

from __future__ import annotations

import errno
import gc
import shutil
from pathlib import Path

from safetensors import SafetensorError

from ..runtime.atomic import one_line
from ..runtime.errors import OutputError

MiB = 2**20
FULL = (errno.ENOSPC, errno.EDQUOT)
WRITE_ERRORS = (OutputError, OSError, RuntimeError, SafetensorError)
"""What a failed write of a run's files raises: our atomic writers, the OS, torch's zip writer, safetensors."""


class DiskFullError(OutputError):
    """The device holding RUN has no room for what the run must write."""


def free_bytes(path: Path) -> int:
    """Free bytes (for this user) on the device holding `path`, or its nearest existing parent."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def _mib(size: int) -> str:
    return f"{size / MiB:.1f} MiB"


def check_room(run: Path, needed: int, what: str) -> None:
    """Refuse to start when the device holding RUN cannot hold `needed` bytes (one `what`)."""
    free = free_bytes(run)
    if free < needed:
        raise DiskFullError(f"{run}: not enough space on the device holding RUN: {what} needs about {_mib(needed)}, "
                            f"{_mib(free)} free; free some space or choose another -o")


def failure(exc: BaseException) -> tuple[int | None, str]:
    """What `write_failure` needs of an exception: its errno and its text. Taken inside the `except` block, so the
    exception (and the frames of the failed writer, which may hold a deleted file open) can be let go first."""
    return getattr(exc, "errno", None), one_line(exc)


def write_failure(run: Path, target: Path, what: str, needed: int, problem: tuple[int | None, str], advice: str
                  ) -> OutputError:
    """The one-line error for a failed write of `what` (about `needed` bytes) to `target` under RUN. Files the
    failed writer left open are closed first (a collection), so the free space is what the device really has."""
    gc.collect()
    free = free_bytes(target.parent)
    code, text = problem
    if code in FULL or "No space left" in text or free < needed:
        return DiskFullError(f"{target}: no space left on the device holding {run} while writing {what}: it needs "
                             f"about {_mib(needed)}, {_mib(free)} free; {advice}")
    return OutputError(f"{target}: cannot write {what} ({text}); {advice}")
