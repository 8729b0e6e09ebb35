"""Byte counts as people read them, and whether the disk has room for what a run still has to fetch.

Every message of a download (progress, a dropped connection, a full disk) names sizes the same way, and a run
that cannot fit stops before it starts rather than part way through a 5 GB file.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..runtime.errors import WeightsError


def check_space(root: Path, needed: int) -> None:
    probe = root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed > free:
        raise WeightsError(f"{root}: the download needs {human(needed)} more, only {human(free)} free; free some "
                           "space or pick another --dir")


def human(n: int | None) -> str:
    from rich.filesize import decimal

    return "unknown" if n is None else decimal(n)
