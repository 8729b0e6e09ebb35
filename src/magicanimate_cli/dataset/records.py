"""What `prepare-data` remembers per source, and the manifest built from it.

Each source's outcome (its manifest entry, or why it was skipped) is written, atomically, to
`DATA/.prepare/<videos|images>/NAME.json` as soon as its files are published. The manifest is then rebuilt from
these records under a lock. So a run that is killed keeps every finished item, and processes working on
different `--shard`s of one SOURCE never lose each other's entries: whichever finishes last rebuilds the manifest
from every record, its own and the others'. The records are hidden (a dot folder), so `train` never sees them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..runtime.atomic import write_json_atomic
from ..runtime.errors import OutputError
from .layout import MANIFEST_VERSION, DataLayout
from .sources import Source

RECORDS = ".prepare"
LOCK_TIMEOUT_S = 600.0
"""How long a process waits for another to finish rebuilding the manifest (a rebuild takes milliseconds)."""

VIDEO_KIND, IMAGE_KIND = "videos", "images"


@dataclass(frozen=True)
class Outcome:
    """One source's result: its manifest entry when it was kept, else the reason it was skipped."""

    source: Path
    entry: dict | None = None
    reason: str | None = None

    @property
    def kept(self) -> bool:
        return self.entry is not None

    def skipped(self) -> dict:
        return {"source": str(self.source), "reason": self.reason}


def record_path(root: Path, kind: str, name: str) -> Path:
    return root / RECORDS / kind / f"{name}.json"


def write_record(root: Path, kind: str, name: str, outcome: Outcome) -> None:
    write_json_atomic(record_path(root, kind, name),
                      {"source": str(outcome.source), "entry": outcome.entry, "reason": outcome.reason})


def read_record(root: Path, kind: str, source: Source) -> Outcome | None:
    """The recorded outcome of `source`, or None when there is none for this very source file (a record left by
    another file that had the same NAME, or a damaged one, counts as none)."""
    path = record_path(root, kind, source.name)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("source") != str(source.path):
        return None
    return Outcome(source.path, record.get("entry"), record.get("reason"))


def build_manifest(root: Path, clips: list[Source], images: list[Source], collisions: list[dict]) -> dict:
    """The manifest of every listed source that has a record, plus the NAME collisions found while listing."""
    videos, photos, skipped = [], [], list(collisions)
    for kind, sources, kept in ((VIDEO_KIND, clips, videos), (IMAGE_KIND, images, photos)):
        for source in sources:
            outcome = read_record(root, kind, source)
            if outcome is None:
                continue
            if outcome.kept:
                kept.append(outcome.entry)
            else:
                skipped.append(outcome.skipped())
    return {"version": MANIFEST_VERSION, "videos": videos, "images": photos, "skipped": skipped}


def rebuild_manifest(root: Path, clips: list[Source], images: list[Source], collisions: list[dict]) -> dict:
    """Read every record and write the manifest from them, both under the lock: the last process to rebuild sees
    every record written before it took the lock, so the final manifest misses nothing."""
    from filelock import FileLock, Timeout

    lock_file = root / RECORDS / "lock"
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(str(lock_file), timeout=LOCK_TIMEOUT_S):
            manifest = build_manifest(root, clips, images, collisions)
            if manifest["videos"] or manifest["images"]:
                write_json_atomic(DataLayout(root).manifest, manifest)
            return manifest
    except Timeout:
        raise OutputError(f"{lock_file}: another prepare-data process has held the manifest lock for "
                          f"{LOCK_TIMEOUT_S:.0f} s") from None
