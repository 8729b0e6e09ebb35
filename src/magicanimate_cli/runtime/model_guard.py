"""Running a network that the user supplies or downloads (the DensePose TorchScript model, the metric networks).

Such a network fails in ways we cannot foresee — an assertion on its input, a shape error deep inside — and
TorchScript reports them as a page of interpreter traceback. The user needs one line: which model file, on which
frame of which video, and why. The warnings its code raises while it runs (torch's `meshgrid` notice, every frame)
are not the user's business either; they go to the debug log, shown with `--debug`. Warnings raised by our own
code in the meantime (our detection ops run inside the model) still reach the terminal.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import MagicAnimateError

LOG = logging.getLogger("magicanimate_cli.models")
_PACKAGE_DIR = str(Path(__file__).resolve().parent)


class ModelRunError(MagicAnimateError):
    """A network raised while running; the traceback stays on the exception's cause (printed with --debug)."""


def failure_reason(exc: BaseException) -> str:
    """The line that says why: for TorchScript, the original exception's line that closes its report."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if lines[0].startswith("The following operation failed in the TorchScript interpreter"):
        reason = lines[-1]
        return reason.removeprefix("RuntimeError: ") if reason.count(": ") > 1 else reason
    return lines[0] if lines[0].startswith(type(exc).__name__) else f"{type(exc).__name__}: {lines[0]}"


@contextmanager
def quiet_warnings(seen: set[str] | None = None) -> Iterator[None]:
    """Third-party warnings raised inside this block go to the debug log, each text once per `seen` set (the
    caller's, one per loaded model, so a warning raised on every frame is logged once); ours are raised again."""
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        _route(caught, seen if seen is not None else set())


@contextmanager
def running_model(model: Path | str, where: str, seen: set[str] | None = None) -> Iterator[None]:
    """Run a foreign network's call inside this block, its warnings quiet (see quiet_warnings).

    An exception from it becomes ModelRunError "MODEL: failed on WHERE: REASON" (our own MagicAnimateErrors and
    Ctrl-C pass unchanged).
    """
    try:
        with quiet_warnings(seen):
            yield
    except MagicAnimateError:
        raise
    except Exception as exc:
        raise ModelRunError(f"{model}: failed on {where}: {failure_reason(exc)}") from exc


def _route(caught: list[warnings.WarningMessage], seen: set[str]) -> None:
    for message in caught:
        if str(Path(message.filename).resolve()).startswith(_PACKAGE_DIR):
            warnings.warn_explicit(message.message, message.category, message.filename, message.lineno)
            continue
        text = f"{message.category.__name__}: {message.message}"
        if text not in seen:
            seen.add(text)
            LOG.debug("warning from a model's code (%s:%s): %s", message.filename, message.lineno, text)
