"""Helpers for the `serve` tests: a gate that holds jobs at named points, free ports, small inputs."""

from __future__ import annotations

import socket
import threading
from collections import Counter
from pathlib import Path

WAIT = 300.0
"""Generous bound on every wait for an event (a loaded 2-core CI machine is slow, never this slow)."""


class Gate:
    """The server's test hooks (serve.runner.Hooks): a job reaching a held point waits there until released.

    Every arrival is counted, so a test knows exactly how far each job got, without timing anything.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._held: set[str] = set()
        self.arrived: Counter[str] = Counter()
        self._released: Counter[str] = Counter()

    def reset(self) -> None:
        with self._cond:
            self._held.clear()
            self.arrived.clear()
            self._released.clear()
            self._cond.notify_all()

    def hold(self, point: str) -> None:
        """From now on, jobs stop at `point` until `release` lets them past one by one (or `open` lets all)."""
        with self._cond:
            self._held.add(point)

    def reached(self, point: str, released: threading.Event | None = None) -> None:
        with self._cond:
            self.arrived[point] += 1
            turn = self.arrived[point]
            self._cond.notify_all()
            self._cond.wait_for(lambda: point not in self._held or self._released[point] >= turn, WAIT)

    def wait_for_arrivals(self, point: str, count: int = 1) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self.arrived[point] >= count, WAIT):
                raise AssertionError(f"no job reached {point!r} {count} time(s) within {WAIT} s")

    def release(self, point: str, count: int = 1) -> None:
        with self._cond:
            self._released[point] += count
            self._cond.notify_all()

    def open(self, point: str) -> None:
        with self._cond:
            self._held.discard(point)
            self._cond.notify_all()


def free_port() -> int:
    """A port nothing listens on right now (the server binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def small_inputs(folder: Path, frames: int = 4, size: int = 128) -> tuple[Path, Path]:
    """The demo's synthetic reference and DensePose motion, small enough for a job of a few seconds."""
    from magicanimate_cli.demo.inputs import write_demo_inputs

    inputs = write_demo_inputs(folder, size=size, frames=frames, seed=3)
    return inputs.reference, inputs.motion
