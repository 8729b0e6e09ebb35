"""The window layout of a long video, how it is shared among processes, what it costs, and its `--plan` report.

Nothing here loads a model: `fuse-long --plan` must answer in a second for a video that would take hours, so that
context length, overlap and the number of GPUs can be chosen before the expensive part starts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property

from ..engine.schedulers import scheduler_class_name
from ..engine.sampler_config import SamplerConfig
from ..engine.windows import WindowPlan, padded_length

FULL, PART, EMPTY = "█", "▒", "·"
_DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def split_windows(count: int, processes: int) -> list[range]:
    """Contiguous blocks of window indices, one per process, sizes differing by at most one.

    Contiguous rather than round-robin: neighbouring windows share frames, and a process that owns both computes
    the ControlNet for the shared frames once instead of two processes computing it each.
    """
    if processes < 1:
        raise ValueError(f"processes must be at least 1 (got {processes})")
    base, extra = divmod(count, processes)
    blocks, start = [], 0
    for rank in range(processes):
        size = base + (1 if rank < extra else 0)
        blocks.append(range(start, start + size))
        start += size
    return blocks


@dataclass(frozen=True)
class StepCost:
    """Model passes in one denoising step."""

    unet_frame_passes: int  # frames through the UNet, both guidance halves counted
    controlnet_frames: int
    appearance_passes: int

    def __add__(self, other: StepCost) -> StepCost:
        return StepCost(self.unet_frame_passes + other.unet_frame_passes,
                        self.controlnet_frames + other.controlnet_frames,
                        self.appearance_passes + other.appearance_passes)

    def times(self, steps: int) -> StepCost:
        """The cost of `steps` such steps."""
        return StepCost(self.unet_frame_passes * steps, self.controlnet_frames * steps,
                        self.appearance_passes * steps)


@dataclass(frozen=True)
class Layout:
    """The windows `fuse-long` runs over `frames` motion frames with `config`, split among `processes`."""

    frames: int
    config: SamplerConfig
    processes: int = 1

    @property
    def padded(self) -> int:
        """The video is padded with its last frame to a whole number of windows (the output is trimmed back)."""
        return padded_length(self.frames, self.config.context_frames)

    @cached_property
    def plan(self) -> WindowPlan:
        return self.config.window_plan(self.padded)

    @property
    def overlap(self) -> int:
        return self.plan.overlap

    @cached_property
    def shares(self) -> list[range]:
        return split_windows(len(self.plan.windows), self.processes)

    def frames_of(self, rank: int) -> set[int]:
        """Padded frame indices the windows of `rank` read."""
        return {f for i in self.shares[rank] for f in self.plan.windows[i]}

    def step_cost(self, rank: int | None = None) -> StepCost:
        """One step's work for one process, or for all of them together (`rank=None`)."""
        if rank is None:
            total = StepCost(0, 0, 0)
            for r in range(self.processes):
                total = total + self.step_cost(r)
            return total
        copies = 2 if self.config.guided else 1
        windows = [self.plan.windows[i] for i in self.shares[rank]]
        return StepCost(copies * sum(len(w) for w in windows), len(self.frames_of(rank)), 1 if windows else 0)

    @property
    def wraps(self) -> bool:
        return any(list(w) != sorted(w) for w in self.plan.windows)


def frame_runs(window: tuple[int, ...]) -> str:
    """A window's frames as runs of consecutive indices: `24..31, 0..7`."""
    runs: list[list[int]] = []
    for f in window:
        if runs and f == runs[-1][1] + 1:
            runs[-1][1] = f
        else:
            runs.append([f, f])
    return ", ".join(f"{a}..{b}" if a != b else f"{a}" for a, b in runs)


def render_plan(layout: Layout, width: int = 100) -> str:
    """The `--plan` report: settings, a table of windows, the cost table and a chart at most `width` columns wide."""
    return "\n".join([*_summary(layout), "", *_window_table(layout), "", *_cost_table(layout), "",
                      *_chart(layout, width)]) + "\n"


def plan_record(layout: Layout) -> dict:
    """The `--plan --json` report: the figures of `render_plan` as data, for scripts choosing a layout."""
    c = layout.config
    owner = {i: r for r, share in enumerate(layout.shares) for i in share}
    single = (2 if c.guided else 1) * layout.padded
    total = layout.step_cost()
    cost = {"per_step": asdict(total), "run": asdict(total.times(c.steps)),
            "single_pass_unet_frame_passes_per_step": single,
            "relative_to_single_pass": round(total.unet_frame_passes / single, 4)}
    if layout.processes > 1:
        busiest = max(range(layout.processes), key=lambda r: layout.step_cost(r).unet_frame_passes)
        cost["busiest_process"] = {"process": busiest, "per_step": asdict(layout.step_cost(busiest)),
                                   "run": asdict(layout.step_cost(busiest).times(c.steps))}
    return {
        "frames": layout.frames, "padded": layout.padded, "context_frames": c.context_frames,
        "context_overlap": layout.overlap, "wrap": c.wrap, "wraps": layout.wraps, "fusion": c.fusion,
        "scheduler": c.scheduler, "steps": c.steps, "guidance": c.guidance_scale, "processes": layout.processes,
        "windows": [{"index": i, "frames": list(w), "covers": frame_runs(w), "process": owner[i]}
                    for i, w in enumerate(layout.plan.windows)],
        "coverage": layout.plan.coverage(),
        "cost": cost,
    }


def _summary(layout: Layout) -> list[str]:
    c = layout.config
    plan = layout.plan
    lines = [f"motion: {layout.frames} frames"]
    if layout.padded != layout.frames:
        lines[0] += (f", padded to {layout.padded} by repeating the last frame (a multiple of "
                     f"{c.context_frames} context frames; the output keeps {layout.frames})")
    stride = c.context_frames - layout.overlap
    lines.append(f"scheduler: {c.scheduler} ({scheduler_class_name(c.scheduler)}), {c.steps} steps")
    lines.append(f"windows: {len(plan.windows)} of {min(c.context_frames, layout.padded)} frames, overlap "
                 f"{layout.overlap} (a new window every {stride} frames), "
                 + ("wrap: the last window continues onto the first frames" if layout.wraps
                    else "no wrap" if not c.wrap else "wrap (no window needs to wrap here)"))
    if c.fusion == "none" and c.context_overlap:
        lines.append(f"fusion none: windows are laid back to back; --context-overlap {c.context_overlap} "
                     "is not used")
    coverage = plan.coverage()
    low, high = min(coverage), max(coverage)
    spread = f"{low}" if low == high else f"{low} to {high}"
    lines.append(f"fusion {c.fusion}; every frame is in {spread} window{'s' if high > 1 else ''} "
                 f"(mean {sum(coverage) / len(coverage):.2f})")
    guidance = ("2 UNet passes per frame: unconditional and conditional" if c.guided
                else "1 UNet pass per frame: no guidance")
    lines.append(f"{c.steps} steps, guidance {c.guidance_scale:g} ({guidance})")
    if layout.processes > 1:
        lines.append(f"{layout.processes} processes, each taking a contiguous block of windows every step")
    return lines


def _window_table(layout: Layout) -> list[str]:
    ranked = layout.processes > 1
    owner = {i: r for r, share in enumerate(layout.shares) for i in share}
    header = f"{'window':>6}  {'frames':>6}  " + (f"{'process':>7}  " if ranked else "") + "covers"
    rows = [header]
    for i, window in enumerate(layout.plan.windows):
        rank = f"{owner[i]:>7}  " if ranked else ""
        rows.append(f"{i:>6}  {len(window):>6}  {rank}{frame_runs(window)}")
    return rows


def _cost_table(layout: Layout) -> list[str]:
    steps = layout.config.steps
    total = layout.step_cost()
    rows = [("UNet frame-passes", total.unet_frame_passes), ("ControlNet frame-passes", total.controlnet_frames),
            ("appearance-encoder passes", total.appearance_passes)]
    if layout.processes > 1:
        busiest = max(range(layout.processes), key=lambda r: layout.step_cost(r).unet_frame_passes)
        rows.append(("UNet frame-passes, busiest process", layout.step_cost(busiest).unet_frame_passes))
    label = max(len(name) for name, _ in rows)
    lines = [f"{'cost':<{label}}  {'per step':>10}  {f'{steps} steps':>12}"]
    lines += [f"{name:<{label}}  {value:>10,}  {value * steps:>12,}" for name, value in rows]
    single = 2 if layout.config.guided else 1
    lines.append(f"(one pass over the video without overlap would be {single * layout.padded:,} UNet frame-passes "
                 f"per step; this layout costs {total.unet_frame_passes / (single * layout.padded):.2f}×)")
    return lines


def _chart(layout: Layout, width: int) -> list[str]:
    """One line per window marking the frames it covers, then the number of windows on each frame."""
    padded = layout.padded
    per_column = max(1, -(-padded // max(1, width)))
    columns = [range(start, min(start + per_column, padded)) for start in range(0, padded, per_column)]
    unit = "1 column = 1 frame" if per_column == 1 else f"1 column = {per_column} frames"
    lines = [f"chart ({unit}; {FULL} covered" + (f", {PART} partly" if per_column > 1 else "")
             + f", {EMPTY} not)"]
    label = max(len("cover"), len(str(len(layout.plan.windows) - 1)))
    for i, window in enumerate(layout.plan.windows):
        members = set(window)
        marks = "".join(_mark(sum(f in members for f in column), len(column)) for column in columns)
        lines.append(f"{i:>{label}} |{marks}|")
    coverage = layout.plan.coverage()
    counts = "".join(_digit(min(coverage[f] for f in column)) for column in columns)
    lines.append(f"{'cover':>{label}} |{counts}|")
    note = "windows on each frame" if per_column == 1 else "fewest windows on a frame of each column"
    lines.append(f"({note}; 0-9, then A-Z for 10-35)")
    return lines


def _mark(covered: int, size: int) -> str:
    return FULL if covered == size else PART if covered else EMPTY


def _digit(count: int) -> str:
    return _DIGITS[count] if count < len(_DIGITS) else "+"
