"""The plan of a run: every file it places, whether each is present, to resume or to fetch, and how it ended.

Planning (listing the repositories and comparing them with the disk) comes before any transfer, so that a dry
run can show the plan and its size, a real run can check the free space first, and the closing table reports
each file's outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__
from ..runtime.errors import WeightsError
from .hub_errors import hub_error
from .records import Records, digestless_key, in_place, partial_path
from .selection import list_repository, select
from .settings import LIBRARY

if TYPE_CHECKING:
    from .selection import RemoteFile
    from .settings import DownloadSettings, HubAccess
    from .source import Source


@dataclass
class PlannedFile:
    """One file of a run: where it goes, where it comes from, and what happened to it."""

    local: str
    size: int | None
    origin: str
    url: str
    digest: str | None
    status: str = "fetch"
    have: int = 0
    transferred: int = 0
    unet_weights: bool = False
    source: Source | None = None  # the repository and revision asked for; None for metric files
    commit: str | None = None  # the commit that revision resolved to

    @property
    def remaining(self) -> int:
        return max((self.size or 0) - self.have, 0)


@dataclass
class DownloadReport:
    root: Path
    files: list[PlannedFile]
    dry_run: bool = False

    @property
    def transferred(self) -> int:
        return sum(f.transferred for f in self.files)

    @property
    def failed(self) -> list[PlannedFile]:
        return [f for f in self.files if f.status.startswith("failed")]

    @property
    def to_transfer(self) -> int:
        """Bytes a real run would still fetch (files that are certainly needed)."""
        return sum(f.remaining for f in self.files if f.status in ("fetch", "resume"))

    @property
    def conditional(self) -> int:
        return sum(f.remaining for f in self.files if f.status == "if not covered")


def _planned(remote: RemoteFile, access: HubAccess, unet_weights: bool) -> PlannedFile:
    from huggingface_hub import hf_hub_url

    url = hf_hub_url(remote.source.repo_id, remote.path, revision=remote.commit, endpoint=access.endpoint)
    origin = f"{remote.source.repo_id}@{remote.commit[:10]}:{remote.path}"
    return PlannedFile(remote.local, remote.size, origin, url, remote.digest, unet_weights=unet_weights,
                       source=remote.source, commit=remote.commit)


def classify(item: PlannedFile, root: Path, records: Records) -> None:
    """present / resume / fetch, from what is on disk."""
    if in_place(root, item.local, item.digest, item.size, records):
        item.status, item.have = "present", item.size or 0
        return
    part = partial_path(root, item.digest or digestless_key(item.local))
    have = part.stat().st_size if part.is_file() else 0
    if item.size is not None and have > item.size:
        have = 0
    item.status, item.have = ("resume" if have else "fetch"), have


def plan_weights(settings: DownloadSettings, dry_run: bool = False) -> tuple[list[PlannedFile], Records]:
    """List the repositories and decide, file by file, what a run would do. Needs the network."""
    from huggingface_hub import HfApi

    access = settings.access
    if access.offline:
        raise WeightsError("HF_HUB_OFFLINE is set: cannot list the repositories (unset it, or use --check)")
    api = HfApi(endpoint=access.endpoint, token=access.token, library_name=LIBRARY, library_version=__version__)
    records = Records(settings.root, persist=not dry_run)
    plan: list[PlannedFile] = []
    for key in settings.keys:
        source = settings.sources[key]
        try:
            files = list_repository(api, source)
        except Exception as exc:
            raise hub_error(exc, source.label, access) from None
        for remote, unet_weights in select(source, files, settings.variant, settings.needs(key)):
            item = _planned(remote, access, unet_weights)
            classify(item, settings.root, records)
            plan.append(item)
    plan.sort(key=lambda f: f.unet_weights)  # the SD unet weights go last: the checkpoint decides on them
    return plan, records
