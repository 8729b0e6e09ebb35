"""What the engine reads from each repository, and how those files are picked from a repository's listing.

A repository holds more than the engine loads (single-file checkpoints, the SD 1.5 VAE, the safety checker);
only the files `engine/loader.py` reads are fetched. This module is that table (`NEEDS`), the hub listing at one
resolved commit (`RemoteFile`, `list_repository`) and the choice between them (`select`), so that what is
fetched and what the loader expects are stated in one place.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..engine.loader import DIFFUSERS_WEIGHTS, MA_DIR, TEMPORAL_CKPT, TRANSFORMERS_WEIGHTS
from ..runtime.errors import WeightsError
from .source import Source


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
