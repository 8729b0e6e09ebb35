"""`download-weights`: make a folder hold every file the engine loads, in the layout it loads them from.

This is the run itself: plan, check the space, transfer under a lock, record the sources, then let the engine's
loader check the result. The SD 1.5 unet weights come last and only when the MagicAnimate temporal checkpoint
does not already carry every UNet weight, which only that checkpoint, once on disk, can tell.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path

from ..engine.loader import SD_DIR, TEMPORAL_CKPT
from ..runtime.errors import WeightsError
from .check import check_directory
from .plan import DownloadReport, PlannedFile, plan_weights
from .records import file_digest, finish_state
from .settings import DownloadSettings
from .sizes import check_space, human
from .transfer import Observer, acquire_lock, hub_request_headers, raise_failures, run_plan


def download_weights(settings: DownloadSettings, observer: Observer | None = None,
                     dry_run: bool = False) -> DownloadReport:
    """Make `settings.root` hold every file the engine loads; raise WeightsError naming what could not be done."""
    from ..engine.loader import check_weights

    observer = observer or Observer()
    root = settings.root.expanduser()
    settings = replace(settings, root=root)
    if settings.access.offline and not dry_run:
        return _offline(settings, observer)
    plan, records = plan_weights(settings, dry_run)
    for item in plan:
        if item.unet_weights and item.status != "present":
            item.status = "if not covered"
    report = DownloadReport(root, plan, dry_run=dry_run)
    if dry_run:
        _decide_unet_if_known(plan, root)
        observer.planned(plan)
        return report
    check_space(root, report.to_transfer)
    observer.planned(plan)
    lock = acquire_lock(root)
    try:
        headers = hub_request_headers(settings.access)
        run_plan(plan, root, records, lambda _item: headers, observer, settings.access,
             decide=partial(_unet_needed, root=root, observer=observer))
    finally:
        lock.release()
    finish_state(root)
    raise_failures(report)
    record_placed_sources(root, plan)
    problems = check_weights(root)
    if settings.motion_module:
        from .check import check_motion_module

        problems += check_motion_module(root)
    if problems:
        raise WeightsError(f"{root}: fetched, but the engine cannot load it: {problems[0]}"
                           + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""))
    return report


def _unet_needed(item: PlannedFile, root: Path, observer: Observer) -> bool:
    """For the SD 1.5 unet weights: fetch them only if temporal_attention.ckpt does not set every UNet key."""
    from ..engine.loader import checkpoint_covers_unet

    if not item.unet_weights:
        return True
    try:
        covered = checkpoint_covers_unet(root)
    except WeightsError as exc:
        item.status = f"failed: not decided, {exc}"
        return False
    if covered:
        item.status = "skipped: covered"
        observer.note(f"{TEMPORAL_CKPT} carries every UNet weight: skipping {item.local} ({human(item.size)})")
        return False
    observer.note(f"{TEMPORAL_CKPT} holds only part of the UNet: fetching {item.local} ({human(item.size)})")
    item.status = "resume" if item.have else "fetch"
    check_space(root, item.remaining)
    return True


def _decide_unet_if_known(plan: list[PlannedFile], root: Path) -> None:
    """In a dry run the checkpoint may already be on disk: then the unet weights are known to be (not) needed."""
    from ..engine.loader import checkpoint_covers_unet

    layout_ready = (root / TEMPORAL_CKPT).is_file() and (root / SD_DIR / "unet" / "config.json").is_file()
    for item in plan:
        if item.unet_weights and item.status == "if not covered" and layout_ready:
            try:
                covered = checkpoint_covers_unet(root)
            except WeightsError:
                return
            item.status = "skipped: covered" if covered else ("resume" if item.have else "fetch")


def _offline(settings: DownloadSettings, observer: Observer) -> DownloadReport:
    """HF_HUB_OFFLINE: nothing can be fetched; succeed only if the directory already loads."""
    problems = check_directory(settings.root, settings.pose, settings.motion_module)
    if problems:
        raise WeightsError(f"HF_HUB_OFFLINE is set, so nothing can be fetched, and {settings.root} is incomplete: "
                           f"{problems[0]}" + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""))
    observer.note(f"HF_HUB_OFFLINE is set: nothing fetched; {settings.root} already holds everything the engine loads")
    return DownloadReport(settings.root, [])


def record_placed_sources(root: Path, plan: Sequence[PlannedFile]) -> Path:
    """Write `.magicanimate/sources.json` for the repositories of this run: commit, and each file in place.

    LFS files are recorded with the sha256 the hub listed (they were checked against it before placing); small
    files, checked by git blob id, are hashed here (kilobytes). A skipped SD 1.5 unet is not listed.
    """
    from ..engine.sources import record_sources

    updates: dict[str, dict] = {}
    for item in plan:
        if item.source is None or not (root / item.local).is_file():
            continue
        entry = updates.setdefault(item.source.key, {"repo": item.source.repo_id, "requested": item.source.revision,
                                                     "commit": item.commit, "files": {}})
        digest = item.digest if item.digest and item.digest.startswith("sha256:") else file_digest(root / item.local,
                                                                                                    "sha256")
        entry["files"][item.local] = {"bytes": (root / item.local).stat().st_size, "sha256": digest.partition(":")[2]}
    return record_sources(root, updates)
