"""The metric catalogue: names, what each needs, and which can run with the weights on disk."""

from __future__ import annotations

from pathlib import Path

from ..runtime.errors import SettingsError
from .weights import DOWNLOAD_COMMAND, files_for_metric, require_file

ALIGN_CHOICES = ("strict", "truncate")
PROTOCOL_CHOICES = ("gt-size", "disco")
CLIP_CHOICES = ("16", "video", "sliding")
"""The words of eval's --align, --protocol and --clips (here, beside the metric names, so the command line can
offer them without importing torch)."""

FRAME_METRICS = ("l1", "psnr", "ssim", "lpips")
"""Computed per frame, averaged per video and over all frames."""
SET_METRICS = ("fid", "fid-vid", "fvd")
"""Distances between feature distributions: only over the whole evaluation set."""
METRICS = FRAME_METRICS + SET_METRICS

HIGHER_IS_BETTER = frozenset({"psnr", "ssim"})
"""The others are distances or errors: lower is better."""


def parse_metrics(text: str) -> tuple[str, ...] | None:
    """`all` (None: every metric the weights allow) or a comma-separated subset, in catalogue order."""
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not names or names == ["all"]:
        return None
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        raise SettingsError(f"--metrics: unknown metric {', '.join(unknown)}; choose from all, {', '.join(METRICS)}")
    return tuple(metric for metric in METRICS if metric in names)


def plan_metrics(requested: tuple[str, ...] | None, weights_dir: Path) -> tuple[list[str], dict[str, str]]:
    """Metrics to compute and, for a default run, those skipped with the reason.

    A metric the user named explicitly must run: its missing weight file is an error. With the
    default, a metric whose weights are absent is skipped and the report says which file is missing.
    """
    if requested is not None:
        for metric in requested:
            for spec in files_for_metric(metric):
                require_file(spec, weights_dir)
        return list(requested), {}
    chosen: list[str] = []
    skipped: dict[str, str] = {}
    for metric in METRICS:
        missing = [spec.path(weights_dir) for spec in files_for_metric(metric) if not spec.path(weights_dir).is_file()]
        if missing:
            skipped[metric] = f"missing {', '.join(str(p) for p in missing)} (run `{DOWNLOAD_COMMAND}`)"
        else:
            chosen.append(metric)
    return chosen, skipped
