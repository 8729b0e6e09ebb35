"""What a weights folder remembers of the downloads into it, so that a re-run transfers and rehashes nothing.

`<root>/.magicanimate-download/` holds `records.json` (each placed file's digest, size and mtime) and the
partial files a dropped connection leaves, named by the content they should become so that a changed upstream
file is never resumed into. The provenance of a finished run (which commit each file came from) goes to
`<root>/.magicanimate/sources.json`, written through `sources_manifest.py`, which animate's sidecar also reads.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

STATE_DIR = ".magicanimate-download"


def state_dir(root: Path) -> Path:
    return root / STATE_DIR


def partial_path(root: Path, digest: str) -> Path:
    """Partial files are named by their expected content, so a changed upstream file is never resumed into."""
    return state_dir(root) / "partial" / (digest.replace(":", "-") + ".part")


class Records:
    """`records.json`: what was placed at each final path, so a re-run needs neither the network nor rehashing."""

    def __init__(self, root: Path, persist: bool = True) -> None:
        self.path = state_dir(root) / "records.json"
        self.root = root
        self.persist = persist  # a dry run keeps what it learns in memory: it writes nothing
        try:
            self.files: dict[str, dict] = json.loads(self.path.read_text(encoding="utf-8")).get("files", {})
        except (OSError, ValueError, AttributeError):
            self.files = {}

    def matches(self, local: str, digest: str) -> bool:
        """The file at `local` is the one recorded with `digest`, untouched since (same size and mtime)."""
        record = self.files.get(local)
        try:
            stat = (self.root / local).stat()
        except OSError:
            return False
        return bool(record and record.get("digest") == digest and record.get("size") == stat.st_size
                    and record.get("mtime_ns") == stat.st_mtime_ns)

    def put(self, local: str, digest: str, origin: str) -> None:
        stat = (self.root / local).stat()
        self.files[local] = {"digest": digest, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "origin": origin}
        if not self.persist:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"version": 1, "files": self.files}, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.path)


def file_digest(path: Path, kind: str) -> str:
    """`sha256:<hex>` or `git:<hex>` (sha1 over `blob <size>\\0` + content, the hub's id for non-LFS files)."""
    hasher = hashlib.sha256() if kind == "sha256" else hashlib.sha1()
    if kind == "git":
        hasher.update(b"blob %d\0" % path.stat().st_size)
    with path.open("rb") as handle:
        while chunk := handle.read(8 << 20):
            hasher.update(chunk)
    return f"{kind}:{hasher.hexdigest()}"


def in_place(root: Path, local: str, digest: str | None, size: int | None, records: Records) -> bool:
    """Whether the final path already holds the wanted file; an unrecorded file is hashed once, then recorded."""
    path = root / local
    if not path.is_file():
        return False
    if digest is not None and records.matches(local, digest):
        return True
    if size is not None and path.stat().st_size != size:
        return False
    if digest is None:  # nothing to compare with: a file at a final path was placed whole
        return True
    if file_digest(path, digest.partition(":")[0]) != digest:
        return False
    records.put(local, digest, "found on disk")
    return True


def digestless_key(local: str) -> str:
    return "path:" + hashlib.sha1(local.encode()).hexdigest()



def finish_state(root: Path) -> None:
    """Drop the partial folder once a run has nothing left in it."""
    folder = state_dir(root) / "partial"
    try:
        folder.rmdir()
    except OSError:
        pass
