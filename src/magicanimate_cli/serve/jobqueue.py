"""The server's one queue: every Animate press waits here, in order, for a device of its own.

The queue is the server's, not Gradio's, so that every user sees the same order (`Place`: 2nd of 3 waiting)
and a job can leave it: Cancel, or its page going away (tab closed or reloaded, connection lost), takes a
waiting job out at once and stops a running one at its next window. A `Ticket` is one job's handle; what its
page is told (its place, progress, the end) goes through `Ticket.tell`, read by the page's handler in order.
"""

from __future__ import annotations

import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from .estimate import Work

MAX_WAITING = 20
"""Most jobs waiting at once: each waiting page holds one of Gradio's worker threads (it has 40)."""


class JobCancelled(Exception):
    """Raised inside a job, at its next window or in the queue, once it was cancelled."""


class QueueFull(Exception):
    """The queue holds MAX_WAITING jobs already."""


@dataclass(frozen=True)
class Slot:
    """One entry of --devices: where a job runs, with models of its own (a device named twice gets two)."""

    index: int
    device: str


@dataclass(frozen=True)
class Place:
    """A waiting job's place: `position` (1 = next) among `waiting`, and the expected wait (None: unknown)."""

    position: int
    waiting: int
    wait_s: float | None


@dataclass(eq=False)
class Ticket:
    """One job, from the press of Animate to its end: its owner (Gradio's session), its work, its messages."""

    session: str
    work: Work
    estimate_s: float | None = None
    id: str = field(default_factory=lambda: secrets.token_hex(3))
    cancelled: threading.Event = field(default_factory=threading.Event)
    started_at: float | None = None
    _messages: queue.Queue = field(default_factory=queue.Queue)

    def tell(self, message: object) -> None:
        """Pass `message` to the job's page (read by `messages`, in order)."""
        self._messages.put(message)

    def messages(self) -> Iterator[object]:
        """What the job says, as it says it (its reader stops at the last, runner.Ended)."""
        while True:
            yield self._messages.get()


class JobQueue:
    """Waiting jobs in order, the devices they run on (each lent to one job at a time), and cancelling."""

    def __init__(self, devices: tuple[str, ...], clock: Callable[[], float] = time.monotonic) -> None:
        self.devices = devices
        self._free = [Slot(index, device) for index, device in enumerate(devices)]
        self._waiting: list[Ticket] = []
        self._running: list[Ticket] = []
        self._cond = threading.Condition()
        self._clock = clock
        self._stopping = False

    def enter(self, ticket: Ticket) -> None:
        """Put `ticket` at the end of the queue (refused when the server is stopping or the queue is full)."""
        with self._cond:
            if self._stopping:
                raise JobCancelled()
            if len(self._waiting) >= MAX_WAITING:
                raise QueueFull()
            self._waiting.append(ticket)
            self._cond.notify_all()

    @contextmanager
    def device(self, ticket: Ticket, moved: Callable[[Place], None]) -> Iterator[Slot]:
        """Wait for `ticket`'s turn and a free device, telling `moved` its place whenever the queue moves; the
        device is given back when the block ends. A cancelled ticket leaves the queue at once (JobCancelled)."""
        slot = self._wait_for_turn(ticket, moved)
        try:
            yield slot
        finally:
            with self._cond:
                self._running.remove(ticket)
                self._free.append(slot)
                self._free.sort(key=lambda s: s.index)
                self._cond.notify_all()

    def _wait_for_turn(self, ticket: Ticket, moved: Callable[[Place], None]) -> Slot:
        told = None
        with self._cond:
            while True:
                if ticket.cancelled.is_set():
                    self._waiting.remove(ticket)
                    self._cond.notify_all()
                    raise JobCancelled()
                if self._free and self._waiting[0] is ticket:
                    self._waiting.pop(0)
                    ticket.started_at = self._clock()
                    self._running.append(ticket)
                    self._cond.notify_all()  # everyone behind moves up
                    return self._free.pop(0)
                place = self._place(ticket)
                if place != told:
                    moved(place)
                    told = place
                self._cond.wait()

    def _place(self, ticket: Ticket) -> Place:
        """Where `ticket` waits, and how long until it starts: what runs and what waits ahead of it, shared
        among the devices (unknown while any of it has no estimate)."""
        position = self._waiting.index(ticket)
        ahead = self._waiting[:position]
        now = self._clock()
        remaining = [None if t.estimate_s is None else max(0.0, t.estimate_s - (now - (t.started_at or now)))
                     for t in self._running]
        remaining += [t.estimate_s for t in ahead]
        wait = None
        if all(r is not None for r in remaining):
            busy = len(self._running) + len(ahead)
            devices = max(1, len(self.devices))
            wait = 0.0 if busy < len(self.devices) else sum(remaining) / devices
        return Place(position + 1, len(self._waiting), None if wait is None else round(wait))

    def cancel(self, which: Callable[[Ticket], bool]) -> tuple[list[Ticket], list[Ticket]]:
        """Cancel every job `which` picks: (those running, which stop at their next window; those waiting, which
        leave the queue now)."""
        with self._cond:
            running = [t for t in self._running if which(t) and not t.cancelled.is_set()]
            waiting = [t for t in self._waiting if which(t) and not t.cancelled.is_set()]
            for ticket in running + waiting:
                ticket.cancelled.set()
            self._cond.notify_all()
        return running, waiting

    def stop(self) -> list[Ticket]:
        """The server is stopping: nothing new enters, every job is cancelled; the ones that were running."""
        with self._cond:
            self._stopping = True
            for ticket in self._running + self._waiting:
                ticket.cancelled.set()
            self._cond.notify_all()
            return list(self._running)
