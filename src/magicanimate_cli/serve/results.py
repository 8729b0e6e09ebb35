"""What a user receives: files named after their inputs and the job, and a sidecar without the server's paths.

Downloads land side by side in a browser's folder, so each job's names differ: `monalisa-running-1a2b3c.mp4`,
its render `monalisa-running-1a2b3c-densepose.mp4` and sidecar `monalisa-running-1a2b3c.mp4.json`. The user's
file names enter those names only as lower-case ASCII letters, digits and dashes (anything else is dropped), so
no name a user typed can reach outside the job's folder. The sidecar the command line writes records absolute
paths; the server's copy records paths relative to the job (`reference.png`) and the weights by their folders'
names, their files' names within them and the repositories' revisions, never a folder of the server.
"""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path, PurePosixPath

SLUG_LIMIT = 32


def slug(name: str, fallback: str) -> str:
    """`Mona Lisa (1).PNG` → `mona-lisa-1`: the stem of a user's file name, safe in any file system."""
    stem = PurePosixPath(name.replace("\\", "/")).stem
    ascii_text = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    text = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:SLUG_LIMIT].strip("-")
    return text or fallback


def result_stem(reference_name: str, motion_name: str, job_id: str) -> str:
    """The shared start of a job's download names: reference, motion, job."""
    return f"{slug(reference_name, 'reference')}-{slug(motion_name, 'motion')}-{job_id}"


def public_sidecar(path: Path, job: Path, weights: list[tuple[Path, str]]) -> None:
    """Rewrite the sidecar at `path` (written by the job in folder `job`) so it names no server folder: paths
    inside the job become relative; each weights folder of `weights` (--weights, --animation-weights) becomes
    its public name, its files their names within it."""
    from ..runtime.atomic import write_json_atomic

    record = json.loads(path.read_text())
    record["weights"] = [{"file": _public_file(entry["path"], weights), "bytes": entry["bytes"]}
                         for entry in record.get("weights", [])]
    replacements = [(str(job) + "/", ""), (str(job), ".")]
    for folder, name in sorted(weights, key=lambda pair: -len(str(pair[0]))):  # the innermost folder first
        replacements += [(str(folder) + "/", f"{name}/"), (str(folder), name)]
    write_json_atomic(path, _scrub(record, replacements))


def _public_file(text: str, weights: list[tuple[Path, str]]) -> str:
    """A weights file as `<name>/<path within its folder>` when it is in the first folder (the --weights one,
    whose name the settings record), else `<name>/...`; just its name if in none."""
    for index, (folder, name) in enumerate(weights):
        try:
            inner = Path(text).relative_to(folder).as_posix()
        except ValueError:
            continue
        return inner if index == 0 else f"{name}/{inner}"
    return Path(text).name


def _scrub(value, replacements: list[tuple[str, str]]):
    """Every string of a JSON value with the server's folders replaced (longest first, as given)."""
    if isinstance(value, str):
        for old, new in replacements:
            value = value.replace(old, new)
        return value
    if isinstance(value, list):
        return [_scrub(v, replacements) for v in value]
    if isinstance(value, dict):
        return {k: _scrub(v, replacements) for k, v in value.items()}
    return value
