"""Fetching the files MagicAnimate's engine loads, from the Hugging Face Hub, into the layout it loads them from.

    <root>/stable-diffusion-v1-5/  model_index.json, scheduler/, tokenizer/, text_encoder/, unet/
    <root>/sd-vae-ft-mse/          config.json and the weights
    <root>/MagicAnimate/           appearance_encoder/, densepose_controlnet/, temporal_attention/
    <root>/DensePose/              the DensePose TorchScript model, only with `--pose` (for `magicanimate pose`)

Only the files the engine reads are fetched, chosen from each repository's listing (never the single-file
checkpoints, the SD 1.5 VAE or the safety checker). The SD 1.5 unet weights are fetched last, and only when the
MagicAnimate temporal checkpoint does not already carry every UNet weight.

Why not `hf_hub_download`: it stages each file under a temporary name that it deletes when a transfer fails, so
a dropped connection on a 5 GB file restarts from zero on the next run, and it checks sizes, not content (its
`http_get` also buffers 10 MB before writing). Here `HfApi` lists each repository at one commit, and
huggingface_hub's HTTP session (endpoint, token, redirects, offline switch, typed errors) streams each file into
a partial file under `<root>/.magicanimate-download/` that a dropped connection, or the next run, resumes with a
Range request. A file reaches its final path only by an atomic rename, after its sha256 (LFS files) or git blob
id (small files) matched what the hub lists, so nothing half-written or corrupt ever sits there.
`records.json` in the same folder remembers what was placed, so a re-run transfers (and rehashes) nothing.
Every repository is read at `main` unless `--revision` says otherwise; the commit each one resolved to, and the
files taken from it, are recorded in `<root>/.magicanimate/sources.json` (see sources_manifest.py).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import posixpath
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from . import __version__
from .errors import SettingsError, WeightsError
from .engine.loader import DIFFUSERS_WEIGHTS, MA_DIR, SD_DIR, TEMPORAL_CKPT, TRANSFORMERS_WEIGHTS, VAE_DIR
from .pose.model import MODEL_FILES as POSE_MODELS, MODEL_FOLDER as POSE_DIR  # where `magicanimate pose` reads

DEFAULT_ENDPOINT = "https://huggingface.co"
SD_REPO = "stable-diffusion-v1-5/stable-diffusion-v1-5"
VAE_REPO = "stabilityai/sd-vae-ft-mse"
MA_REPO = "zcxu-eric/MagicAnimate"
POSE_REPO = "LayerNorm/DensePose-TorchScript-with-hint-image"

STATE_DIR = ".magicanimate-download"
VARIANTS = ("fp32", "fp16")
ANIMATION_KEYS = ("sd", "vae", "magicanimate")
SOURCE_KEYS = (*ANIMATION_KEYS, "densepose")
LIBRARY = "magicanimate-cli"
_TRUTHY = {"1", "true", "yes", "on"}


# ---------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Source:
    """One hub repository at one revision, and the folder of the layout it fills."""

    key: str
    repo_id: str
    revision: str
    subdir: str

    @property
    def label(self) -> str:
        return f"{self.repo_id}@{self.revision}"


def default_sources() -> dict[str, Source]:
    return {
        "sd": Source("sd", SD_REPO, "main", SD_DIR),
        "vae": Source("vae", VAE_REPO, "main", VAE_DIR),
        "magicanimate": Source("magicanimate", MA_REPO, "main", MA_DIR),
        "densepose": Source("densepose", POSE_REPO, "main", POSE_DIR),
    }


def parse_revisions(values: Iterable[str]) -> dict[str, str]:
    """`--revision PART=REV` values (PART one of sd, vae, magicanimate, densepose) as a mapping."""
    out: dict[str, str] = {}
    for value in values:
        key, sep, rev = value.partition("=")
        key, rev = key.strip().lower(), rev.strip()
        if not sep or key not in SOURCE_KEYS or not rev:
            raise SettingsError(f"--revision {value}: expected PART=REVISION with PART one of {', '.join(SOURCE_KEYS)}")
        out[key] = rev
    return out


@dataclass(frozen=True)
class HubAccess:
    """How to reach the hub: read from the environment when a command runs, never at import."""

    endpoint: str = DEFAULT_ENDPOINT
    token: str | None = None
    offline: bool = False

    @classmethod
    def from_env(cls, token: str | None = None, environ: Mapping[str, str] | None = None) -> "HubAccess":
        """HF_ENDPOINT (a mirror), HF_TOKEN unless a token is given, HF_HUB_OFFLINE."""
        env = os.environ if environ is None else environ
        endpoint = (env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
        offline = (env.get("HF_HUB_OFFLINE") or env.get("TRANSFORMERS_OFFLINE") or "").strip().lower() in _TRUTHY
        return cls(endpoint=endpoint, token=token or env.get("HF_TOKEN") or None, offline=offline)


@dataclass(frozen=True)
class DownloadSettings:
    """Everything `download-weights` needs to decide what to fetch and from where."""

    root: Path
    sources: Mapping[str, Source] = field(default_factory=default_sources)
    variant: str = "fp32"
    access: HubAccess = field(default_factory=HubAccess)
    pose: str | None = None  # a key of POSE_MODELS: also fetch that DensePose model

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise SettingsError(f"--variant {self.variant}: choose one of {', '.join(VARIANTS)}")
        if self.pose is not None and self.pose not in POSE_MODELS:
            raise SettingsError(f"--pose-backbone {self.pose}: choose one of {', '.join(POSE_MODELS)}")

    @property
    def keys(self) -> tuple[str, ...]:
        """The sources this run reads: the animation weights, and the pose model when asked for."""
        return ANIMATION_KEYS + (("densepose",) if self.pose else ())

    def needs(self, key: str) -> tuple["Need", ...]:
        return (Need((POSE_MODELS[self.pose or "r50"],)),) if key == "densepose" else NEEDS[key]


# ---------------------------------------------------------------------------------------------- what to fetch


@dataclass(frozen=True)
class Need:
    """One thing the engine reads from a repository: the first present of `candidates`, or a whole folder."""

    candidates: tuple[str, ...] = ()
    folder: str | None = None
    weights: bool = False
    unet_weights: bool = False


def _weights(folder: str, names: Sequence[str], unet: bool = False) -> Need:
    return Need(tuple(posixpath.join(folder, n) for n in names), weights=True, unet_weights=unet)


NEEDS: dict[str, tuple[Need, ...]] = {
    "sd": (
        Need(("model_index.json",)),
        Need(folder="scheduler"),
        Need(folder="tokenizer"),
        Need(("text_encoder/config.json",)),
        _weights("text_encoder", TRANSFORMERS_WEIGHTS),
        Need(("unet/config.json",)),
        _weights("unet", DIFFUSERS_WEIGHTS, unet=True),
    ),
    "vae": (Need(("config.json",)), _weights("", DIFFUSERS_WEIGHTS)),
    "magicanimate": (
        Need(("appearance_encoder/config.json",)),
        _weights("appearance_encoder", DIFFUSERS_WEIGHTS),
        Need(("densepose_controlnet/config.json",)),
        _weights("densepose_controlnet", DIFFUSERS_WEIGHTS),
        Need((posixpath.relpath(TEMPORAL_CKPT, MA_DIR),)),
    ),
}
"""Per repository, what the engine loads (see loader.py); weight files in the loader's order of preference."""


def variant_order(candidates: Sequence[str], variant: str) -> tuple[str, ...]:
    """fp16 files first for `--variant fp16`, full precision first otherwise; either kind is the fallback."""
    half = tuple(c for c in candidates if ".fp16." in posixpath.basename(c))
    full = tuple(c for c in candidates if c not in half)
    return half + full if variant == "fp16" else full + half


@dataclass(frozen=True)
class RemoteFile:
    """A file of a repository at a resolved commit, with what the hub says its content is."""

    source: Source
    path: str
    size: int
    blob_id: str
    sha256: str | None
    commit: str

    @property
    def local(self) -> str:
        return posixpath.join(self.source.subdir, self.path)

    @property
    def digest(self) -> str:
        """`sha256:<hex>` for LFS files, `git:<blob id>` (sha1 of the git blob) for the others."""
        return f"sha256:{self.sha256}" if self.sha256 else f"git:{self.blob_id}"


def list_repository(api: Any, source: Source) -> dict[str, RemoteFile]:
    """Every file of `source` at its revision, resolved to a commit so all files come from the same one."""
    from huggingface_hub.hf_api import RepoFile

    info = api.repo_info(source.repo_id, revision=source.revision)
    commit = info.sha or source.revision
    files = {}
    for entry in api.list_repo_tree(source.repo_id, recursive=True, revision=commit):
        if isinstance(entry, RepoFile):
            lfs = entry.lfs
            files[entry.path] = RemoteFile(source, entry.path, int(lfs.size if lfs else entry.size), entry.blob_id,
                                           lfs.sha256 if lfs else None, commit)
    return files


def select(source: Source, files: Mapping[str, RemoteFile], variant: str,
           needs: Sequence[Need] | None = None) -> list[tuple[RemoteFile, bool]]:
    """The files the engine needs from one repository, each with whether it is the SD 1.5 unet weights."""
    chosen: list[tuple[RemoteFile, bool]] = []
    for need in NEEDS[source.key] if needs is None else needs:
        if need.folder is not None:
            inside = sorted(p for p in files if posixpath.dirname(p) == need.folder)
            if not inside:
                raise WeightsError(f"{source.label}: no files in {need.folder}/ in the repository")
            chosen += [(files[p], False) for p in inside]
            continue
        names = variant_order(need.candidates, variant) if need.weights else need.candidates
        path = next((p for p in names if p in files), None)
        if path is None:
            wanted = names[0] if len(names) == 1 else f"any of {', '.join(names)}"
            raise WeightsError(f"{source.label}: {wanted} not found in the repository "
                               f"(pick another revision with --revision {source.key}=REV)")
        chosen.append((files[path], need.unet_weights))
    return chosen


# ---------------------------------------------------------------------------------------------- local state


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


# ---------------------------------------------------------------------------------------------- the plan


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


class Observer:
    """What a run reports as it goes; the CLI draws it, the default says nothing."""

    def planned(self, files: Sequence[PlannedFile]) -> None: ...

    def started(self, item: PlannedFile) -> None: ...

    def advanced(self, item: PlannedFile, nbytes: int) -> None: ...

    def finished(self, item: PlannedFile) -> None: ...

    def note(self, message: str) -> None: ...


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


def _classify(item: PlannedFile, root: Path, records: Records) -> None:
    """present / resume / fetch, from what is on disk."""
    if in_place(root, item.local, item.digest, item.size, records):
        item.status, item.have = "present", item.size or 0
        return
    part = partial_path(root, item.digest or _digestless_key(item.local))
    have = part.stat().st_size if part.is_file() else 0
    if item.size is not None and have > item.size:
        have = 0
    item.status, item.have = ("resume" if have else "fetch"), have


def _digestless_key(local: str) -> str:
    return "path:" + hashlib.sha1(local.encode()).hexdigest()


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
            _classify(item, settings.root, records)
            plan.append(item)
    plan.sort(key=lambda f: f.unet_weights)  # the SD unet weights go last: the checkpoint decides on them
    return plan, records


# ---------------------------------------------------------------------------------------------- transfer


class FileFailed(Exception):
    """This one file cannot be placed (wrong content, not on the server); the others can still be."""


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
    part = partial_path(root, item.digest or _digestless_key(item.local))
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


def _check_space(root: Path, needed: int) -> None:
    probe = root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed > free:
        raise WeightsError(f"{root}: the download needs {human(needed)} more, only {human(free)} free; free some "
                           "space or pick another --dir")


def human(n: int | None) -> str:
    from rich.filesize import decimal

    return "unknown" if n is None else decimal(n)


def _hub_headers(access: HubAccess) -> dict[str, str]:
    from huggingface_hub.utils import build_hf_headers

    return build_hf_headers(token=access.token, library_name=LIBRARY, library_version=__version__)


def _lock(root: Path):
    from filelock import FileLock, Timeout

    state_dir(root).mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(state_dir(root) / "lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise WeightsError(f"{root}: another `magicanimate download-weights` is writing here") from None
    return lock


def _run(plan: list[PlannedFile], root: Path, records: Records, headers_for: Callable[[PlannedFile], Mapping],
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


def _raise_failures(report: DownloadReport) -> None:
    failed = report.failed
    if failed:
        first = failed[0].status.removeprefix("failed: ")
        more = f" (+{len(failed) - 1} more, listed above)" if len(failed) > 1 else ""
        raise WeightsError(f"{len(failed)} of {len(report.files)} files could not be placed: {first}{more}")


def _finish_state(root: Path) -> None:
    """Drop the partial folder once a run has nothing left in it."""
    folder = state_dir(root) / "partial"
    try:
        folder.rmdir()
    except OSError:
        pass


# ---------------------------------------------------------------------------------------------- weights


def download_weights(settings: DownloadSettings, observer: Observer | None = None,
                     dry_run: bool = False) -> DownloadReport:
    """Make `settings.root` hold every file the engine loads; raise WeightsError naming what could not be done."""
    from .engine.loader import check_weights

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
    _check_space(root, report.to_transfer)
    observer.planned(plan)
    lock = _lock(root)
    try:
        headers = _hub_headers(settings.access)
        _run(plan, root, records, lambda _item: headers, observer, settings.access,
             decide=partial(_unet_needed, root=root, observer=observer))
    finally:
        lock.release()
    _finish_state(root)
    _raise_failures(report)
    record_placed_sources(root, plan)
    problems = check_weights(root)
    if problems:
        raise WeightsError(f"{root}: fetched, but the engine cannot load it: {problems[0]}"
                           + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""))
    return report


def record_placed_sources(root: Path, plan: Sequence[PlannedFile]) -> Path:
    """Write `.magicanimate/sources.json` for the repositories of this run: commit, and each file in place.

    LFS files are recorded with the sha256 the hub listed (they were checked against it before placing); small
    files, checked by git blob id, are hashed here (kilobytes). A skipped SD 1.5 unet is not listed.
    """
    from .sources_manifest import record_sources

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


def _unet_needed(item: PlannedFile, root: Path, observer: Observer) -> bool:
    """For the SD 1.5 unet weights: fetch them only if temporal_attention.ckpt does not set every UNet key."""
    from .engine.loader import checkpoint_covers_unet

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
    _check_space(root, item.remaining)
    return True


def _decide_unet_if_known(plan: list[PlannedFile], root: Path) -> None:
    """In a dry run the checkpoint may already be on disk: then the unet weights are known to be (not) needed."""
    from .engine.loader import checkpoint_covers_unet

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
    problems = check_directory(settings.root, settings.pose)
    if problems:
        raise WeightsError(f"HF_HUB_OFFLINE is set, so nothing can be fetched, and {settings.root} is incomplete: "
                           f"{problems[0]}" + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""))
    observer.note(f"HF_HUB_OFFLINE is set: nothing fetched; {settings.root} already holds everything the engine loads")
    return DownloadReport(settings.root, [])


def pose_model_path(root: Path, backbone: str = "r50") -> Path:
    """Where `download-weights --pose` puts the DensePose model (and `magicanimate pose` looks for it)."""
    return Path(root).expanduser() / POSE_DIR / POSE_MODELS[backbone]


def check_pose_model(root: Path, backbone: str) -> list[str]:
    """The DensePose model is in place and is a whole zip archive (the TorchScript format); no network."""
    import zipfile

    path = pose_model_path(root, backbone)
    if not path.is_file():
        return [f"{path}: file not found; run `magicanimate download-weights --pose"
                + ("" if backbone == "r50" else f" --pose-backbone {backbone}") + "`"]
    try:
        with zipfile.ZipFile(path) as archive:  # its directory sits at the end: a truncated file has none
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        return [f"{path}: not a whole TorchScript archive ({exc}); the file is truncated or corrupt, fetch it again"]
    if not any(name.endswith("/data.pkl") for name in names) or not any("/code/" in name for name in names):
        return [f"{path}: a zip archive, but not a TorchScript model (no data.pkl and code/ in it)"]
    return []


def check_directory(root: Path, pose: str | None = None) -> list[str]:
    """Problems with a weights directory, without the network: the engine's own check, plus recorded sizes.

    The recorded sizes catch a truncated file the engine's header check cannot see (a tokenizer file, say).
    With `pose` (a backbone), the DensePose model must be there too.
    """
    from .engine.loader import check_weights

    root = Path(root).expanduser()
    problems = check_weights(root)
    if pose is not None:
        problems += check_pose_model(root, pose)
    records = Records(root)
    for local, record in sorted(records.files.items()):
        path = root / local
        if local.startswith("metrics/") or not path.is_file():
            continue
        size = path.stat().st_size
        if size != record.get("size"):
            problem = f"{path}: {size} bytes, but {record.get('size')} were placed; the file was truncated or changed"
            if not any(str(path) in p for p in problems):
                problems.append(problem)
    return problems


# ---------------------------------------------------------------------------------------------- metric weights


def metric_url(spec: Any, mirror: str | None, access: HubAccess) -> str:
    """Where to get one metric file: `<mirror>/<filename>`, else its publisher (hub URLs follow HF_ENDPOINT)."""
    if mirror:
        return f"{mirror.rstrip('/')}/{spec.filename}"
    url = spec.url
    if url.startswith(DEFAULT_ENDPOINT + "/") and access.endpoint != DEFAULT_ENDPOINT:
        url = access.endpoint + url[len(DEFAULT_ENDPOINT):]
    return url


def download_metric_weights(root: Path, access: HubAccess, mirror: str | None = None,
                            observer: Observer | None = None, dry_run: bool = False,
                            specs: Sequence[Any] | None = None) -> DownloadReport:
    """Fetch the evaluation networks' weight files into `<root>/metrics/` (resumed, checked, placed atomically)."""
    from .evaluation.weights import METRIC_WEIGHT_FILES

    observer = observer or Observer()
    root = Path(root).expanduser()
    specs = METRIC_WEIGHT_FILES if specs is None else specs
    records = Records(root, persist=not dry_run)
    plan = []
    for spec in specs:
        local = Path(spec.relative_path).as_posix()
        digest = f"sha256:{spec.sha256}" if spec.sha256 else None
        item = PlannedFile(local, spec.size, metric_url(spec, mirror, access), metric_url(spec, mirror, access),
                           digest)
        _classify(item, root, records)
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
    _check_space(root, report.to_transfer)
    lock = _lock(root)
    hub_headers = _hub_headers(access)
    plain_headers = {"user-agent": f"{LIBRARY}/{__version__}"}
    try:
        _run(plan, root, records,
             lambda item: hub_headers if item.url.startswith(access.endpoint + "/") else plain_headers,
             observer, access)
    finally:
        lock.release()
    _finish_state(root)
    _raise_failures(report)
    return report


def check_metric_weights(root: Path, specs: Sequence[Any] | None = None) -> list[str]:
    """Missing or wrongly sized metric weight files, without the network."""
    from .evaluation.weights import METRIC_WEIGHT_FILES

    root = Path(root).expanduser()
    records = Records(root)
    problems = []
    for spec in METRIC_WEIGHT_FILES if specs is None else specs:
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


# ---------------------------------------------------------------------------------------------- errors


def hub_error(exc: Exception, where: str, access: HubAccess, url: str | None = None,
              resumable: Path | None = None) -> Exception:
    """One line for a failed hub call: the token for 401/403, the name of what is missing for 404."""
    import httpx2
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(exc, (WeightsError, SettingsError, FileFailed)):
        return exc
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    token_hint = ("pass a token with read access (--token or HF_TOKEN; for a gated model, first accept its "
                  f"conditions at {access.endpoint})")
    kept = ""
    if resumable is not None and resumable.is_file() and resumable.stat().st_size:
        kept = f"; {human(resumable.stat().st_size)} kept, run again to resume"
    if isinstance(exc, GatedRepoError):
        return WeightsError(f"{where}: gated repository, access refused ({status}); {token_hint}")
    if isinstance(exc, RemoteEntryNotFoundError):
        if url is None:
            return WeightsError(f"{where}: not found on the server ({status})")
        return FileFailed(f"{where}: not found on the server ({status}, {url})")
    if isinstance(exc, RevisionNotFoundError):
        return WeightsError(f"{where}: revision not found in the repository ({status}); check --revision")
    if isinstance(exc, RepositoryNotFoundError) or (isinstance(exc, HfHubHTTPError) and status in (401, 403)):
        if status in (401, 403):
            return WeightsError(f"{where}: access refused ({status}): the repository is private or gated (or does "
                                f"not exist); {token_hint}")
        return WeightsError(f"{where}: repository not found at {access.endpoint} ({status}); check the repository "
                            "id, or pass a token if it is private")
    if isinstance(exc, HfHubHTTPError):
        if status == 404 and url is not None:
            return FileFailed(f"{where}: not found on the server (404, {url})")
        return WeightsError(f"{where}: the server answered {status} ({url or access.endpoint}){kept}")
    if isinstance(exc, OfflineModeIsEnabled):
        return WeightsError(f"{where}: HF_HUB_OFFLINE is set, so nothing can be fetched")
    if isinstance(exc, (httpx2.TransportError, httpx2.TimeoutException)):
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return WeightsError(f"{where}: cannot reach {url or access.endpoint} ({reason}){kept}; check the "
                            "connection, or point HF_ENDPOINT at a mirror")
    return exc
