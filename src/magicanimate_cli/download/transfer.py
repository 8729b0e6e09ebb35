"""Moving planned files from the server into their final paths: resumable, verified, placed atomically.

`hf_hub_download` is not used: it deletes its staging file when a transfer fails (a dropped connection on a
5 GB file restarts from zero) and its `http_get` buffers 10 MB before writing. Here huggingface_hub's HTTP
session streams each file into a partial file that a dropped connection, or the next run, resumes with a Range
request; a file reaches its final path only by a rename after its content matched what the hub listed.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..runtime.errors import WeightsError
from .hub_errors import FileFailed, hub_error
from .records import Records, digestless_key, file_digest, partial_path, state_dir
from .settings import LIBRARY
from .sizes import human

if TYPE_CHECKING:
    from .plan import DownloadReport, PlannedFile
    from .settings import HubAccess


class Observer:
    """What a run reports as it goes; the CLI draws it, the default says nothing."""

    def planned(self, files: Sequence[PlannedFile]) -> None: ...

    def started(self, item: PlannedFile) -> None: ...

    def advanced(self, item: PlannedFile, nbytes: int) -> None: ...

    def finished(self, item: PlannedFile) -> None: ...

    def note(self, message: str) -> None: ...


class _WrongSize(Exception):
    def __init__(self, total: int) -> None:
        super().__init__(total)
        self.total = total


@dataclass(frozen=True)
class Retry:
    """How often a dropped connection is resumed within one run before the run gives up (keeping the bytes)."""

    attempts: int = 5
    first_wait: float = 1.0
    max_wait: float = 8.0

    def wait(self, attempt: int) -> float:
        return min(self.first_wait * 2**attempt, self.max_wait)


def _announced_size(response: Any, offset: int) -> int | None:
    """The whole file's size as the server states it (Content-Range total, else offset + Content-Length)."""
    content_range = response.headers.get("Content-Range")
    if content_range and "/" in content_range and not content_range.endswith("/*"):
        return int(content_range.rsplit("/", 1)[1])
    length = response.headers.get("Content-Length")
    if length is None or response.headers.get("Content-Encoding", "identity").lower() != "identity":
        return None
    return int(length) + (offset if response.status_code == 206 else 0)


def _get_into(url: str, handle: Any, headers: Mapping[str, str], expected: int | None,
              on_bytes: Callable[[int], None]) -> None:
    """One GET from the end of `handle` (a Range request when it is not empty), writing bytes as they arrive.

    huggingface_hub's session (its redirects, offline switch and typed errors) does the HTTP; `http_get` is not
    used because it buffers 10 MB before writing, so a drop loses everything since the last 10 MB boundary.
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session, hf_raise_for_status

    offset = handle.tell()
    request = {**headers, "Accept-Encoding": "identity"}
    if offset:
        request["Range"] = f"bytes={offset}-"
    with get_session().stream("GET", url, headers=request, timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT) as response:
        hf_raise_for_status(response)
        if offset and response.status_code == 200:  # the server ignored the Range: it sends the whole file
            handle.seek(0)
            handle.truncate()
            offset = 0
        total = _announced_size(response, offset)
        if expected is not None and total is not None and total != expected:
            raise _WrongSize(total)
        for chunk in response.iter_bytes():
            handle.write(chunk)
            on_bytes(len(chunk))


def transfer(item: PlannedFile, part: Path, headers: Mapping[str, str], on_bytes: Callable[[int], None],
             on_retry: Callable[[str], None], retry: Retry = Retry()) -> int:
    """Append the rest of `item` to `part`, resuming from its length; return the bytes it held before."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    part.parent.mkdir(parents=True, exist_ok=True)
    had = part.stat().st_size if part.is_file() else 0
    if item.size is not None and had > item.size:
        part.unlink()
        had = 0
    restarted = False
    try:
        with part.open("ab") as handle:
            for attempt in range(retry.attempts + 1):
                if item.size is not None and handle.tell() >= item.size:
                    break
                try:
                    _get_into(item.url, handle, headers, item.size, on_bytes)
                    break
                except _WrongSize as exc:
                    raise FileFailed(f"{item.local}: the server has a {exc.total}-byte file where {item.size} "
                                     f"bytes were listed ({item.url}); nothing was placed") from None
                except HfHubHTTPError as exc:
                    if getattr(exc.response, "status_code", None) != 416 or restarted:
                        raise
                    handle.seek(0)  # the server cannot serve the kept bytes' remainder: start this file over
                    handle.truncate()
                    restarted = True
                except (httpx2.TransportError, httpx2.TimeoutException) as exc:
                    handle.flush()
                    if attempt == retry.attempts:
                        raise
                    on_retry(f"{item.local}: connection dropped at {human(handle.tell())} ({type(exc).__name__});"
                             f" resuming in {retry.wait(attempt):g}s ({attempt + 1}/{retry.attempts})")
                    time.sleep(retry.wait(attempt))
            handle.flush()
            os.fsync(handle.fileno())
            got = handle.tell()
    finally:
        if part.is_file() and part.stat().st_size == 0:  # an empty partial is not worth keeping
            part.unlink()
    if got == 0 and item.size != 0:
        raise FileFailed(f"{item.local}: the server sent an empty file ({item.url})")
    if item.size == 0:
        part.touch()
    if item.size is not None and got > item.size:
        part.unlink(missing_ok=True)
        raise FileFailed(f"{item.local}: the server sent more than the {item.size} bytes listed ({item.url}); "
                         "discarded")
    if item.size is not None and got < item.size:
        raise WeightsError(f"{item.local}: the transfer ended early ({human(got)} of {human(item.size)}); "
                           "run again to resume")
    return had


def place(item: PlannedFile, root: Path, part: Path, records: Records) -> None:
    """Check the finished partial against the expected content, then rename it onto the final path."""
    if item.digest is not None:
        got = file_digest(part, item.digest.partition(":")[0])
        if got != item.digest:
            part.unlink(missing_ok=True)
            kind, _, want = item.digest.partition(":")
            name = "sha256" if kind == "sha256" else "git blob id"
            raise FileFailed(f"{item.local}: {name} mismatch (expected {want[:16]}…, got {got.partition(':')[2][:16]}…)"
                             f"; the download was discarded and nothing was placed")
    final = root / item.local
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(part, final)
    records.put(item.local, item.digest or file_digest(final, "sha256"), item.origin)


def fetch_one(item: PlannedFile, root: Path, records: Records, headers: Mapping[str, str], observer: Observer,
              access: HubAccess) -> None:
    """Transfer, verify and place one file; a resumed file that fails verification is fetched once afresh."""
    part = partial_path(root, item.digest or digestless_key(item.local))
    observer.started(item)

    def on_bytes(n: int) -> None:
        item.transferred += n
        observer.advanced(item, n)

    for attempt in range(2):
        try:
            had = transfer(item, part, headers, on_bytes, observer.note)
        except FileFailed:
            raise
        except Exception as exc:  # huggingface_hub's HTTP errors are OSErrors too: only ENOSPC means the disk
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                raise WeightsError(f"{root}: disk full while writing {item.local}; free some space and run again "
                                   "to resume") from None
            raise hub_error(exc, item.local, access, url=item.url, resumable=part) from None
        try:
            place(item, root, part, records)
        except FileFailed:
            if had and attempt == 0:  # the kept partial was bad: start over once
                continue
            raise
        item.status = "resumed" if had else "fetched"
        item.have = item.size or item.transferred
        return


def hub_request_headers(access: HubAccess) -> dict[str, str]:
    from huggingface_hub.utils import build_hf_headers

    return build_hf_headers(token=access.token, library_name=LIBRARY, library_version=__version__)


def acquire_lock(root: Path):
    from filelock import FileLock, Timeout

    state_dir(root).mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(state_dir(root) / "lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise WeightsError(f"{root}: another `magicanimate download-weights` is writing here") from None
    return lock


def run_plan(plan: list[PlannedFile], root: Path, records: Records, headers_for: Callable[[PlannedFile], Mapping],
             observer: Observer, access: HubAccess, decide: Callable[[PlannedFile], bool] | None = None) -> None:
    """Fetch every planned file in order; per-file failures are recorded and the rest go on."""
    for item in plan:
        if item.status == "present":
            observer.finished(item)
            continue
        if decide is not None and not decide(item):
            observer.finished(item)
            continue
        try:
            fetch_one(item, root, records, headers_for(item), observer, access)
        except FileFailed as exc:
            item.status = f"failed: {exc}"
        observer.finished(item)


def raise_failures(report: DownloadReport) -> None:
    failed = report.failed
    if failed:
        first = failed[0].status.removeprefix("failed: ")
        more = f" (+{len(failed) - 1} more, listed above)" if len(failed) > 1 else ""
        raise WeightsError(f"{len(failed)} of {len(report.files)} files could not be placed: {first}{more}")
