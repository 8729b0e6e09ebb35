"""`<weights>/.magicanimate/sources.json`: which commit of which repository each part of a weights folder came from.

A branch such as `main` names different files over time; what a folder holds is only known by the commit it was
resolved to when the files were fetched. `download-weights` records, per source (sd, vae, magicanimate, densepose):
the repository, the revision asked for, the commit it resolved to, and every file placed with its size and sha256.
`download-weights --check` and the animate sidecar name those commits, so a result can be traced to exact weights.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

MANIFEST = Path(".magicanimate") / "sources.json"
VERSION = 1


def manifest_path(root: Path) -> Path:
    return Path(root).expanduser() / MANIFEST


def read_sources(root: Path) -> dict[str, dict[str, Any]]:
    """The recorded sources by key; empty when the folder was not filled by `download-weights` (or the file is bad)."""
    try:
        data = json.loads(manifest_path(root).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    sources = data.get("sources") if isinstance(data, dict) else None
    return {k: v for k, v in sources.items() if isinstance(v, dict)} if isinstance(sources, dict) else {}


def record_sources(root: Path, updates: Mapping[str, Mapping[str, Any]]) -> Path:
    """Merge `updates` (key -> {repo, requested, commit, files}) into the manifest, written atomically.

    Sources not in `updates` keep their entries: a run without `--pose` does not forget the pose model's origin.
    """
    from ..runtime.atomic import write_json_atomic

    sources = {**read_sources(root), **{k: dict(v) for k, v in updates.items()}}
    record = {"version": VERSION, "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "sources": dict(sorted(sources.items()))}
    path = manifest_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_json_atomic(path, record)


def source_summary(root: Path) -> dict[str, dict[str, str]]:
    """Key -> {repo, requested, commit}: what a sidecar or a check names (the file list stays in the manifest)."""
    return {key: {name: str(entry.get(name, "")) for name in ("repo", "requested", "commit")}
            for key, entry in read_sources(root).items()}
