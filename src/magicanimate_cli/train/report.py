"""RUN/report.png: one sheet to look at while a run goes and after it: is it learning, and what does it use?

Six panels against the step: the training loss (each step faint, an exponential moving average over it), the
held-out loss with its standard error, the held-out loss per timestep band, the three condition gains with their
standard errors, the learning rate, and the speed (samples/s and the seconds a step waited for data, from
RUN/timings.jsonl). Several runs share one sheet, one colour each, to compare them.

Drawn with matplotlib's object API on an Agg canvas (no pyplot state, no display) and written through a temporary
file and a rename, so a reader never sees half a picture.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..runtime.atomic import write_atomic
from ..runtime.errors import InputError
from .metrics import METRICS
from .timings import TIMINGS

REPORT = "report.png"
CONFIG = "config.json"
SMOOTHING = 0.9
"""Weight of the past in the smoothed training loss (as the progress line)."""
GAIN_STYLES = {"ref_gain": ("o", "-"), "pose_gain": ("s", "--"), "temporal_gain": ("^", ":")}


@dataclass
class RunSeries:
    """What a run's files say, as columns to plot."""

    name: str
    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    val_steps: list[int] = field(default_factory=list)
    val: list[dict] = field(default_factory=list)
    timing_steps: list[int] = field(default_factory=list)
    samples_per_s: list[float] = field(default_factory=list)
    data_s: list[float] = field(default_factory=list)


def read_run(run: Path) -> RunSeries:
    """A run folder's series; a folder that is not a run, or an unreadable line, is one error naming the file."""
    run = Path(run)
    if not (run / CONFIG).is_file():
        raise InputError(f"{run}: not a training run (no {CONFIG}); pass the -o folder of `magicanimate train`")
    series = RunSeries(run.resolve().name)
    for record in _lines(run / METRICS):
        if "val" in record:
            series.val_steps.append(int(record["step"]))
            series.val.append(record["val"])
        elif "loss" in record:
            series.steps.append(int(record["step"]))
            series.loss.append(float(record["loss"]))
            series.lr.append(float(record["lr"]))
    for record in _lines(run / TIMINGS):
        series.timing_steps.append(int(record["step"]))
        series.samples_per_s.append(float(record["samples_per_s"]))
        series.data_s.append(float(record["data_wait_s"]))
    return series


def _lines(path: Path) -> list[dict]:
    """The JSON lines of a file (none when it is missing); a running run's half-written last line is left out."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    out = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            if number == len(lines):
                break
            raise InputError(f"{path}: line {number} is not JSON") from None
        if not isinstance(record, dict) or "step" not in record:
            raise InputError(f"{path}: line {number} is not a step record")
        out.append(record)
    return out


def smoothed(values: list[float], weight: float = SMOOTHING) -> list[float]:
    """An exponential moving average, started at the first value."""
    out: list[float] = []
    for value in values:
        out.append(value if not out else weight * out[-1] + (1 - weight) * value)
    return out


def draw(runs: list[RunSeries]):
    """The report's figure (a matplotlib Figure on an Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(15, 8.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, 3)
    colours = [f"C{i % 10}" for i in range(len(runs))]
    for run, colour in zip(runs, colours):
        _losses(axes[0, 0], run, colour, len(runs) > 1)
        _bands(axes[0, 1], run, colour, len(runs) > 1)
        _gains(axes[0, 2], run, colour, len(runs) > 1)
        if run.steps:
            axes[1, 0].plot(run.steps, run.lr, color=colour, label=run.name)
        if run.timing_steps:
            axes[1, 1].plot(run.timing_steps, run.samples_per_s, color=colour, label=run.name)
            axes[1, 2].plot(run.timing_steps, run.data_s, color=colour, label=run.name)
    titles = (("loss", "training loss (smoothed) and held-out loss ± s.e."), ("held-out loss", "held-out loss per "
              "timestep band"), ("gain", "condition gains ± s.e. (> 0: the model uses it)"),
              ("learning rate", "learning rate"), ("samples/s", "speed"), ("seconds", "data wait per step"))
    for ax, (label, title) in zip(axes.flat, titles):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        elif not ax.lines and not ax.collections:
            ax.text(0.5, 0.5, "nothing recorded yet", ha="center", va="center", transform=ax.transAxes,
                    color="grey")
    axes[0, 2].axhline(0.0, color="black", linewidth=0.8)
    figure.suptitle(" vs ".join(r.name for r in runs), fontsize=12)
    return figure


def _losses(ax, run: RunSeries, colour: str, named: bool) -> None:
    prefix = f"{run.name}: " if named else ""
    if run.steps:
        ax.plot(run.steps, run.loss, color=colour, alpha=0.25, linewidth=0.8, label=f"{prefix}training (each step)")
        ax.plot(run.steps, smoothed(run.loss), color=colour, label=f"{prefix}training (EMA {SMOOTHING})")
    if run.val:
        ax.errorbar(run.val_steps, [v["loss"] for v in run.val], yerr=[v.get("loss_se", 0.0) for v in run.val],
                    color=colour, marker="o", linestyle="--", capsize=3, label=f"{prefix}held-out")


BAND_STYLES = (("v", ":"), ("s", "-."), ("D", "--"), ("^", "-"))
"""Marker and line per timestep band, low noise to high (the run keeps its colour)."""


def _bands(ax, run: RunSeries, colour: str, named: bool) -> None:
    bands = sorted({b for v in run.val for b in v.get("bands", {})}, key=lambda b: int(b[1:].split("-")[0]))
    for k, band in enumerate(bands):
        points = [(s, v["bands"][band]) for s, v in zip(run.val_steps, run.val) if band in v.get("bands", {})]
        marker, style = BAND_STYLES[k % len(BAND_STYLES)]
        ax.plot(*zip(*points), color=colour, marker=marker, linestyle=style, markersize=4,
                label=f"{run.name}: {band}" if named else band)


def _gains(ax, run: RunSeries, colour: str, named: bool) -> None:
    for gain, (marker, style) in GAIN_STYLES.items():
        points = [(s, v[gain], v.get(f"{gain}_se", 0.0)) for s, v in zip(run.val_steps, run.val) if gain in v]
        if points:
            steps, values, errors = zip(*points)
            ax.errorbar(steps, values, yerr=errors, color=colour, marker=marker, linestyle=style, capsize=3,
                        label=f"{run.name}: {gain}" if named else gain)


def write_report(runs: list[RunSeries], path: Path) -> Path:
    """Draw and write the PNG atomically (temporary file, then rename)."""
    figure = draw(runs)
    return write_atomic(Path(path), lambda temp: figure.savefig(temp, format="png", dpi=100))
