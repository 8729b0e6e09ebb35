"""The server's one temporary folder, and the only place it writes.

    <root>/weights/         --demo: the tiny model (never served)
    <root>/served/          Gradio's upload and cache folder (GRADIO_TEMP_DIR): everything the page may fetch
    <root>/served/examples/ --demo: the synthetic inputs offered as examples (kept until exit)
    <root>/served/jobs/ID/  one job's inputs, results and scratch; ID is random, never a user's name
    <root>/served/<other>/  Gradio's own folders (uploads, copies it makes)

Results live inside Gradio's cache folder so that Gradio serves them where they are instead of copying them:
removing a job folder removes the only copy. A finished job is kept for `keep` seconds after it ended, then
`sweep` removes it; Gradio's upload folders expire the same way; a job still running is never touched.
`remove` deletes everything (at exit). Time is passed in (`now`), so expiry is tested without waiting.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import threading
from pathlib import Path

KEPT = ("examples", "jobs")
"""Folders of `served/` that `sweep` does not age as a whole (examples stay; jobs are aged one by one)."""


class Workspace:
    """The temporary folder of one server run: job folders handed out, expired and removed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.served = root / "served"
        self.jobs = self.served / "jobs"
        self.examples = self.served / "examples"
        self.weights = root / "weights"
        self.jobs.mkdir(parents=True, exist_ok=True)
        self._active: set[Path] = set()
        self._lock = threading.Lock()

    @classmethod
    def create(cls, parent: Path | None = None) -> "Workspace":
        """A fresh folder under the system's temporary folder (or `parent`), readable by this user only."""
        return cls(Path(tempfile.mkdtemp(prefix="magicanimate-serve-", dir=parent)).resolve())

    def new_job(self) -> Path:
        """A new, empty job folder with a random name; `sweep` leaves it alone until `finish`."""
        folder = self.jobs / secrets.token_hex(12)
        folder.mkdir()
        with self._lock:
            self._active.add(folder)
        return folder

    def finish(self, folder: Path, keep: bool) -> None:
        """The job ended: keep its files (their time to live starts now) or remove them at once."""
        with self._lock:
            self._active.discard(folder)
        if keep:
            os.utime(folder)
        else:
            shutil.rmtree(folder, ignore_errors=True)

    def sweep(self, now: float, keep: float) -> list[Path]:
        """Remove finished jobs and Gradio's upload folders last touched more than `keep` seconds before `now`."""
        with self._lock:
            active = set(self._active)
        candidates = [p for p in _entries(self.jobs) if p not in active]
        candidates += [p for p in _entries(self.served) if p.name not in KEPT]
        removed = []
        for path in candidates:
            if _last_touched(path) + keep < now:
                _remove(path)
                removed.append(path)
        return removed

    def remove(self) -> None:
        """Delete the whole workspace (the server is stopping)."""
        shutil.rmtree(self.root, ignore_errors=True)


def _entries(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except FileNotFoundError:
        return []


def _last_touched(path: Path) -> float:
    """The newest modification time of `path` and, for a folder, of what it holds directly (Gradio touches a
    cached file, not its folder, when it hands the file out again); a vanished path counts as new."""
    try:
        times = [path.stat().st_mtime]
        if path.is_dir():
            times += [child.stat().st_mtime for child in path.iterdir()]
    except FileNotFoundError:
        return float("inf")
    return max(times)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class Sweeper:
    """Calls `workspace.sweep` every `every` seconds on a background thread, until `stop`."""

    def __init__(self, workspace: Workspace, keep: float, every: float, clock) -> None:
        self._workspace, self._keep, self._every, self._clock = workspace, keep, every, clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="magicanimate-sweeper", daemon=True)

    def start(self) -> "Sweeper":
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self._workspace.sweep(self._clock(), self._keep)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
