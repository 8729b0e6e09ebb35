"""How long a job will take on this server: the work it asks for, times the device's measured speed.

A job's cost is counted in the units the engine works in: denoising windows × steps, then decoded frames, each
scaled by the working area (a window at 1024² costs four of 512²). The first job on the server measures how
many seconds each unit takes (`SpeedBook.record`), and every later estimate multiplies. Until then there is no
estimate, and nothing is refused for being too long: a guess would be wrong by orders of magnitude between a
CPU and a GPU. The models' one-time loading is not part of the speed (it is not part of any later job).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

AREA_UNIT = 512 * 512
"""The released model's working area: one unit of work is a window step (or a frame) at 512²."""


@dataclass(frozen=True)
class Work:
    """What one job asks the device for."""

    frames: int
    windows: int
    steps: int
    width: int
    height: int

    @property
    def area(self) -> float:
        return self.width * self.height / AREA_UNIT

    @property
    def window_steps(self) -> float:
        """Denoising, in window steps at 512²."""
        return self.windows * self.steps * self.area

    @property
    def frame_units(self) -> float:
        """Decoding and encoding, in frames at 512²."""
        return self.frames * self.area


def work_of(settings, frames: int) -> Work:
    """The work of animating `frames` motion frames with `settings` (the job's own window plan)."""
    from ..engine.windows import padded_length

    plan = settings.sampler_config().window_plan(padded_length(frames, settings.context_frames))
    return Work(frames, len(plan.windows), settings.steps, settings.size, settings.size)


@dataclass(frozen=True)
class Speed:
    """Seconds per unit, as measured on this server."""

    per_window_step: float
    per_frame: float

    def seconds(self, work: Work) -> float:
        return work.window_steps * self.per_window_step + work.frame_units * self.per_frame


class SpeedBook:
    """The measured speed of this server's devices: the newest measurement of each, shared by every estimate."""

    def __init__(self) -> None:
        self._speeds: dict[str, Speed] = {}
        self._lock = threading.Lock()

    def record(self, device: str, work: Work, denoise_s: float, decode_s: float) -> None:
        """A job on `device` finished: its denoising took `denoise_s`, its decoding `decode_s`."""
        if work.window_steps <= 0 or work.frame_units <= 0:
            return
        speed = Speed(denoise_s / work.window_steps, decode_s / work.frame_units)
        with self._lock:
            self._speeds[device] = speed

    def estimate(self, work: Work) -> float | None:
        """Seconds `work` takes on the slowest measured device; None until a job has measured one."""
        with self._lock:
            speeds = list(self._speeds.values())
        if not speeds:
            return None
        return max(speed.seconds(work) for speed in speeds)


def say_duration(seconds: float) -> str:
    """`12 s`, `3 min 20 s`, `1 h 5 min`: a duration as people read it, rounded to what matters."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{max(1, seconds)} s"
    minutes, rest = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {rest} s" if rest and minutes < 10 else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"
