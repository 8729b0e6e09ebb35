"""Test hooks: stop a run at a named point so that a test can interrupt it exactly there, without racing it.

A test (or a person at a shell) sets two environment variables:

    MAGICANIMATE_TEST_PAUSE_AT=<point>     where to stop
    MAGICANIMATE_TEST_PAUSE_READY=<path>   a FIFO (or /dev/fd/N of a pipe the caller holds) to announce it on

On reaching <point> the run writes "<point>\\n" to <path> and then waits until a signal arrives: SIGINT raises
KeyboardInterrupt there as it would anywhere (Ctrl-C), SIGKILL ends it. The points:

    encode        the first output frame has gone to the encoder: a partial output file exists
    checkpoint:N  (fuse-long) the checkpoint after step N has been saved
    serve:window  (serve) a job's denoising window has finished; the job waits there until it is cancelled
                  (Cancel, its page closed, the server stopping: SIGTERM/SIGINT), announcing every arrival
    train-step:N  (train) step N's metrics line is written, its checkpoint (if due) not yet

Signals reach only a process's main thread, so a point on a worker thread (`hold_point`) waits for an event
that the run sets when it is cancelled, instead of for the signal itself.

Unset, a point costs one dictionary lookup. Nothing else in the package reads these variables.
"""

from __future__ import annotations

import os
import threading

PAUSE_AT = "MAGICANIMATE_TEST_PAUSE_AT"
PAUSE_READY = "MAGICANIMATE_TEST_PAUSE_READY"


def pause_point(point: str) -> None:
    """Wait here for a signal if the environment asks to stop at `point`; otherwise return at once."""
    if os.environ.get(PAUSE_AT) != point:
        return
    _announce_and_wait(point, os.environ.get(PAUSE_READY))


def hold_point(point: str, released: threading.Event) -> None:
    """`pause_point` for a worker thread: announce, then wait until `released` is set; otherwise return at once."""
    if os.environ.get(PAUSE_AT) != point:
        return
    ready = os.environ.get(PAUSE_READY)
    if ready:
        with open(ready, "w") as announce:
            announce.write(f"{point}\n")
    released.wait()


def _announce_and_wait(point: str, ready: str | None) -> None:
    """Announce, then block until a signal arrives.

    The wait reads a pipe that Python's own signal handler writes to (`signal.set_wakeup_fd`), so a signal sent
    the instant the announcement is read, before the wait has begun, still ends it: its byte is already waiting.
    A plain `signal.pause()` would miss such a signal and sleep for ever.
    """
    import signal

    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    previous = signal.set_wakeup_fd(wake_write)
    try:
        if ready:
            with open(ready, "w") as announce:
                announce.write(f"{point}\n")
        os.read(wake_read, 1)  # the handler (KeyboardInterrupt for SIGINT) runs as this returns
    finally:
        signal.set_wakeup_fd(previous)
        os.close(wake_read)
        os.close(wake_write)
