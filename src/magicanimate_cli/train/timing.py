"""RUN/timing.jsonl: how long each step waited for its data and how long it computed, one JSON object a step.

Kept apart from metrics.jsonl on purpose: metrics hold only what follows from the settings and the data, so a
resumed run writes them byte for byte as an uninterrupted one; timings differ from run to run. A resumed run
appends to this file, so a step redone after a resume appears twice (the later line is the redo).
"""

from __future__ import annotations

import json
from pathlib import Path

TIMING = "timing.jsonl"


class TimingLog:
    def __init__(self, run: Path) -> None:
        self.path = Path(run) / TIMING

    def append(self, step: int, data_wait_s: float, compute_s: float) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": step, "data_wait_s": round(data_wait_s, 4),
                                     "compute_s": round(compute_s, 4)}) + "\n")
