"""The start-up check of DATA, once per machine: the first training process on a machine checks (reader.py) and
leaves the result in the machine's temporary folder; the others, and later starts while no file of DATA changed,
read it back.

The result is keyed by every DATA file's name, size and mtime (stat calls: they grow with the files, not the
frames), so a file added, replaced or removed makes the next start check again. The key lives on the machine, not
in DATA: a shared file system seen by several machines gives each its own check, and nothing is written into
DATA by `train`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from ..runtime.atomic import write_json_atomic
from .layout import DENSEPOSE, IMAGES, IMAGES_DENSEPOSE, VIDEOS
from .reader import DataContents, DataFolder
from .store import READY

CHECKS = "magicanimate-data-checks"
LOCK_TIMEOUT_S = 3600.0
"""How long a process waits for another on the same machine to finish checking DATA (a full --verify-data of a
large DATA may take this long; a header check takes seconds)."""


def check_once(folder: DataFolder, verify: bool = False, cache: Path | None = None) -> DataContents:
    """`folder.check(verify)`, done by one process per machine while DATA's files stay as they are."""
    from filelock import FileLock

    root = folder.layout.root.resolve()
    cache = cache or Path(tempfile.gettempdir()) / CHECKS
    cache.mkdir(parents=True, exist_ok=True)
    where = cache / hashlib.sha256(str(root).encode()).hexdigest()[:16]
    with FileLock(str(where.with_suffix(".lock")), timeout=LOCK_TIMEOUT_S):
        key = files_key(root)
        if not verify:
            contents = _cached(where.with_suffix(".json"), key)
            if contents is not None:
                folder.use(contents)
                return contents
        contents = folder.check(verify)
        write_json_atomic(where.with_suffix(".json"), {"key": key, "videos": [list(v) for v in contents.videos],
                                                       "images": list(contents.images),
                                                       "fingerprint": contents.fingerprint,
                                                       "ready": list(contents.ready)})
        return contents


def files_key(root: Path) -> str:
    """A digest of the name, size and mtime of every file DATA's readers look at."""
    digest = hashlib.sha256()
    for sub in (VIDEOS, DENSEPOSE, IMAGES, IMAGES_DENSEPOSE, READY):
        for base, dirs, files in sorted(os.walk(root / sub)):
            dirs.sort()
            for name in sorted(files):
                stat = os.stat(os.path.join(base, name))
                digest.update(f"{os.path.relpath(os.path.join(base, name), root)} {stat.st_size} "
                              f"{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _cached(path: Path, key: str) -> DataContents | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("key") != key:
            return None
        return DataContents(tuple((str(n), int(c)) for n, c in record["videos"]), tuple(record["images"]),
                            str(record["fingerprint"]), tuple(record["ready"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
