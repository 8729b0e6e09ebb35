"""Reading a PyTorch checkpoint (`torch.save` output) safely, and saying plainly why one cannot be read.

Only tensors and plain containers are ever unpickled (`weights_only=True`). When that fails, torch's own message
suggests re-running with `weights_only=False`, which executes whatever code the pickle names: for a corrupt or
hostile download that is the worst possible advice, so it is never passed on. Instead the file is looked at
(its size and first bytes) to say what it is: empty, a Git LFS pointer, a truncated or damaged zip archive (the
format of `torch.save` since PyTorch 1.6), a truncated pickle (the older format), a pickle that would run code,
or none of these.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

from .errors import WeightsError

ZIP_MAGIC = b"PK\x03\x04"
PICKLE_PROTO = 0x80  # every pickle of protocol 2 or later, and so every legacy torch.save file, starts with it
LFS_POINTER = b"version https://git-lfs"


def load_torch_file(path: Path) -> Any:
    """`torch.load(path)` restricted to tensors, memory-mapped when the format allows (zip archives).

    Raises WeightsError naming `path` and what is wrong with it; never one that suggests weights_only=False.
    """
    import torch

    head = _head(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=head.startswith(ZIP_MAGIC))
    except Exception as exc:
        raise WeightsError(f"{path}: cannot read the weights: {why_unreadable(path, exc)}") from None


def _head(path: Path, size: int = 64) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read(size)
    except OSError as exc:
        raise WeightsError(f"{path}: cannot open ({exc.strerror or exc})") from None


def why_unreadable(path: Path, exc: BaseException) -> str:
    """What a file that `torch.load(weights_only=True)` refused is, from its bytes; `exc` only adds detail."""
    size = path.stat().st_size
    head = _head(path)
    if size == 0:
        return "the file is empty (0 bytes); fetch it again"
    if head.startswith(LFS_POINTER):
        return "it is a Git LFS pointer (a small text file), not the weights; fetch the real file"
    if head.startswith(ZIP_MAGIC):
        return _zip_problem(path, size) or _pickle_problem(exc, size, "zip archive")
    if head[:1] == bytes([PICKLE_PROTO]):
        return _pickle_problem(exc, size, "pickle")
    return (f"not a PyTorch checkpoint: neither a zip archive nor a pickle ({size} bytes starting "
            f"{head[:8].hex(' ')}); the file is corrupt or of another kind")


def _zip_problem(path: Path, size: int) -> str | None:
    """What is wrong with the archive itself; None when it is whole (then its pickle is the problem)."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except zipfile.BadZipFile:
        return (f"truncated zip archive: it starts like a PyTorch checkpoint but its end (the zip directory) is "
                f"missing after {size} bytes; the download was cut short, fetch it again")
    except (OSError, EOFError, ValueError) as exc:
        return f"damaged zip archive ({type(exc).__name__}); fetch it again"
    if bad is not None:
        return f"damaged zip archive: member {bad} fails its CRC check; fetch it again"
    return None


def _pickle_problem(exc: BaseException, size: int, kind: str) -> str:
    # torch wraps the unpickler's own short error (kept as __context__) in its long advice; only the former is read.
    inner = exc.__context__ if isinstance(exc.__context__, pickle.UnpicklingError) else None
    detail = str(inner).strip().splitlines()[0] if inner is not None and str(inner).strip() else ""
    needs = re.search(r"GLOBAL ([\w.]+)", detail)
    if needs:
        return (f"a {kind} whose pickle runs code when loaded (it calls {needs[1]}), not just tensors; it was "
                "not loaded. Use a checkpoint from a source you trust")
    if isinstance(exc, EOFError) or isinstance(exc.__context__, EOFError):
        return f"truncated pickle: it ends after {size} bytes; fetch it again"
    return f"a damaged {kind}, or one that holds something other than tensors" + (f" ({detail})" if detail else "")
