"""RUN/timings.jsonl: how fast each step went (the wait for data, compute, samples/s), one object per step.

Kept apart from metrics.jsonl, which holds only what follows from the settings and data (so that a resumed run
writes it byte for byte as an uninterrupted one); wall-clock figures differ from run to run and live here. The
report draws its speed panels from this file. A resumed run truncates it to its checkpoint's step, like
metrics.jsonl, so each step has one line.
"""

from __future__ import annotations

TIMINGS = "timings.jsonl"


def timing_record(step: int, data_s: float, compute_s: float, global_batch: int) -> dict:
    """One step's line: the wait for data (reading and fitting frames the workers had not ready), the compute, the
    whole step, and samples per second over all processes."""
    seconds = data_s + compute_s
    return {"step": step, "data_wait_s": round(data_s, 6), "compute_s": round(compute_s, 6),
            "step_s": round(seconds, 6),
            "samples_per_s": round(global_batch / seconds, 6) if seconds > 0 else 0.0}
