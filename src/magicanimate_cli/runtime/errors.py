"""Errors that reach the user as one line, without a traceback."""

from __future__ import annotations

from pathlib import Path


class MagicAnimateError(Exception):
    """A problem the user can fix: the CLI prints it as one line and exits non-zero."""

    exit_code: int = 1


class WeightsError(MagicAnimateError):
    """A weights directory is incomplete, unreadable or does not fit the models."""


class InputError(MagicAnimateError):
    """An input file (image, motion video, frame folder) cannot be used."""


class OutputError(MagicAnimateError):
    """An output path cannot be written."""


class SettingsError(MagicAnimateError):
    """A combination of settings that cannot work."""


def missing_weights(path: Path) -> WeightsError:
    """The error for a weights file that is not where the official layout puts it."""
    return WeightsError(
        f"{path}: file not found; run `magicanimate download-weights` to fetch the weights"
    )
