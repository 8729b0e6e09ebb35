"""A failed hub call as one line that says what to do: a token for 401/403, the name of what is missing for 404.

huggingface_hub raises typed errors with long messages; a user needs the repository or file, the reason and the
remedy. `FileFailed` marks a failure of one file only (wrong content, not on the server), so a run records it
and goes on with the others, where any other error ends the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..runtime.errors import SettingsError, WeightsError
from .sizes import human

if TYPE_CHECKING:
    from .settings import HubAccess


class FileFailed(Exception):
    """This one file cannot be placed (wrong content, not on the server); the others can still be."""


def hub_error(exc: Exception, where: str, access: HubAccess, url: str | None = None,
              resumable: Path | None = None) -> Exception:
    """One line for a failed hub call: the token for 401/403, the name of what is missing for 404."""
    import httpx2
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, OfflineModeIsEnabled, RemoteEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

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
