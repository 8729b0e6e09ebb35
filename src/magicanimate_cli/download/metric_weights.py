"""`download-weights --metrics`: the evaluation networks' weight files, fetched into `<root>/metrics/`.

They come from their publishers (or a mirror), not from a hub repository, so there is no listing to plan from:
the files and their sizes and sha256 are known in `evaluation/weights.py`. The transfer is the same as for the
animation weights (resumed, checked, placed atomically); only the hub's own URLs carry the hub's headers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from ..runtime.errors import WeightsError
from .plan import DownloadReport, PlannedFile, classify
from .records import Records, finish_state
from .settings import DEFAULT_ENDPOINT, LIBRARY, HubAccess
from .sizes import check_space
from .transfer import Observer, acquire_lock, hub_request_headers, raise_failures, run_plan


def metric_url(spec: Any, mirror: str | None, access: HubAccess) -> str:
    """Where to get one metric file: `<mirror>/<filename>`, else its publisher (hub URLs follow HF_ENDPOINT)."""
    if mirror:
        return f"{mirror.rstrip('/')}/{spec.filename}"
    url = spec.url
    if url.startswith(DEFAULT_ENDPOINT + "/") and access.endpoint != DEFAULT_ENDPOINT:
        url = access.endpoint + url[len(DEFAULT_ENDPOINT):]
    return url


def download_metric_weights(root: Path, access: HubAccess, mirror: str | None = None,
                            observer: Observer | None = None, dry_run: bool = False, *,
                            specs: Sequence[Any]) -> DownloadReport:
    """Fetch the evaluation networks' weight files (`specs`, which the eval feature lists) into `<root>/metrics/`
    (resumed, checked, placed atomically)."""
    observer = observer or Observer()
    root = Path(root).expanduser()
    records = Records(root, persist=not dry_run)
    plan = []
    for spec in specs:
        local = Path(spec.relative_path).as_posix()
        digest = f"sha256:{spec.sha256}" if spec.sha256 else None
        item = PlannedFile(local, spec.size, metric_url(spec, mirror, access), metric_url(spec, mirror, access),
                           digest)
        classify(item, root, records)
        plan.append(item)
    report = DownloadReport(root, plan, dry_run=dry_run)
    if access.offline and not dry_run:
        missing = [f.local for f in plan if f.status != "present"]
        if missing:
            raise WeightsError(f"HF_HUB_OFFLINE is set, so nothing can be fetched, and {root / missing[0]} is missing"
                               + (f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""))
        observer.note("HF_HUB_OFFLINE is set: nothing fetched; every metric weight file is in place")
        return report
    observer.planned(plan)
    if dry_run:
        return report
    check_space(root, report.to_transfer)
    lock = acquire_lock(root)
    hub_headers = hub_request_headers(access)
    plain_headers = {"user-agent": f"{LIBRARY}/{__version__}"}
    try:
        run_plan(plan, root, records,
             lambda item: hub_headers if item.url.startswith(access.endpoint + "/") else plain_headers,
             observer, access)
    finally:
        lock.release()
    finish_state(root)
    raise_failures(report)
    return report


def check_metric_weights(root: Path, specs: Sequence[Any]) -> list[str]:
    """Missing or wrongly sized metric weight files (`specs`), without the network."""
    root = Path(root).expanduser()
    records = Records(root)
    problems = []
    for spec in specs:
        path = spec.path(root)
        local = Path(spec.relative_path).as_posix()
        if not path.is_file():
            problems.append(f"{path}: file not found; run `magicanimate download-weights --metrics`")
            continue
        size = path.stat().st_size
        expected = spec.size if spec.size is not None else records.files.get(local, {}).get("size")
        if expected is not None and size != expected:
            problems.append(f"{path}: {size} bytes, expected {expected}; the file was truncated or changed")
    return problems
