"""Presenting an evaluation: a rich table for people, JSON and CSV for scripts.

JSON stays strict (no bare `Infinity`): an infinite PSNR is written as the string "inf", and a
metric with no value for a row is null (JSON) or empty (CSV).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from rich.table import Table

from ..runtime.errors import OutputError
from .metrics import FRAME_METRICS, HIGHER_IS_BETTER, METRICS
from .runner import EvalReport

_FORMATS = {"l1": "{:.3e}", "psnr": "{:.2f}", "ssim": "{:.4f}", "lpips": "{:.4f}",
            "fid": "{:.2f}", "fid-vid": "{:.2f}", "fvd": "{:.2f}"}
_TITLES = {"l1": "L1", "psnr": "PSNR", "ssim": "SSIM", "lpips": "LPIPS",
           "fid": "FID", "fid-vid": "FID-VID", "fvd": "FVD"}
AGGREGATE = "aggregate"


def _json_value(value: float | None) -> float | str | None:
    if value is not None and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _text(metric: str, value: float | None) -> str:
    if value is None:
        return ""
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return _FORMATS[metric].format(value)


def _columns(report: EvalReport) -> list[str]:
    return [m for m in METRICS if m in report.metrics]


def to_json(report: EvalReport) -> dict:
    """The whole report as plain JSON types."""
    columns = _columns(report)
    return {
        "protocol": report.protocol,
        "psnr": report.psnr_mode,
        "clips": report.clips,
        "metrics": columns,
        "skipped": report.skipped,
        "notes": report.notes,
        "videos": [
            {"name": v.name, "generated": str(v.generated), "ground_truth": str(v.truth), "frames": v.frames,
             **{m: _json_value(v.values.get(m)) for m in columns}}
            for v in report.videos
        ],
        AGGREGATE: {"videos": len(report.videos), "frames": report.frames,
                    **{m: _json_value(report.aggregate.get(m)) for m in columns}},
    }


def write_json(report: EvalReport, path: Path) -> None:
    try:
        path.write_text(json.dumps(to_json(report), indent=2, allow_nan=False) + "\n")
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the JSON report ({exc.strerror or exc})") from exc


def write_csv(report: EvalReport, path: Path) -> None:
    """One row per video, then the aggregate row; distribution metrics exist only in the last."""
    columns = _columns(report)
    rows = [[v.name, v.frames, *(_text_raw(v.values.get(m)) for m in columns)] for v in report.videos]
    rows.append([AGGREGATE, report.frames, *(_text_raw(report.aggregate.get(m)) for m in columns)])
    try:
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["video", "frames", *columns])
            writer.writerows(rows)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the CSV report ({exc.strerror or exc})") from exc


def _text_raw(value: float | None) -> str:
    """Full precision for CSV; `inf` spelled out, missing values empty."""
    if value is None:
        return ""
    return "inf" if math.isinf(value) and value > 0 else repr(float(value))


def table(report: EvalReport) -> Table:
    """Videos as rows, metrics as columns, the aggregate last."""
    columns = _columns(report)
    title = f"MagicAnimate evaluation, {report.protocol} protocol"
    if report.clips != "16":
        title += f", {report.clips} clips"
    if report.psnr_mode != "standard":
        title += f", {report.psnr_mode} PSNR"
    result = Table(title=title, min_width=len(title) + 4)
    result.add_column("video")
    result.add_column("frames", justify="right")
    for metric in columns:
        arrow = "↑" if metric in HIGHER_IS_BETTER else "↓"
        result.add_column(f"{_TITLES[metric]} {arrow}", justify="right")
    for video in report.videos:
        result.add_row(video.name, str(video.frames),
                       *(_text(m, video.values.get(m)) if m in FRAME_METRICS else "" for m in columns))
    result.add_section()
    result.add_row(AGGREGATE, str(report.frames), *(_text(m, report.aggregate.get(m)) for m in columns),
                   style="bold")
    return result
