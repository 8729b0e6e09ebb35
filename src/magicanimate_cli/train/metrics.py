"""RUN/metrics.jsonl: one JSON object per optimizer step, appended as the run goes.

Only values that follow from the run's settings and data are written (no timings), so an interrupted and resumed
run writes the same file, byte for byte, as an uninterrupted one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..runtime.atomic import write_atomic
from .diskspace import failure, write_failure

METRICS = "metrics.jsonl"


@dataclass(frozen=True)
class StepRecord:
    step: int  # 1-based: optimizer steps done after this one
    loss: float
    lr: float
    branch: str
    grad_norm: float
    epoch: int
    samples: list[str] = field(default_factory=list)
    skipped: bool | None = None  # --mixed-precision fp16: the loss scaler skipped this update (inf/nan gradients)
    nonfinite: bool | None = None  # the loss or gradients were not finite: no update (--max-skipped-steps)

    def line(self) -> str:
        record = asdict(self)
        for key in ("skipped", "nonfinite"):  # only fp16 runs can skip; only a diverging step is non-finite
            if record[key] is None:
                del record[key]
        return json.dumps(record, ensure_ascii=False)


class MetricsLog:
    """Appends records; on resume drops what a killed run wrote after its last checkpoint."""

    def __init__(self, run: Path) -> None:
        self.path = Path(run) / METRICS

    def truncate_after(self, step: int) -> None:
        """Keep the records of steps <= `step` (atomically: temp file, then rename)."""
        if not self.path.is_file():
            return
        kept = [line for line in self.path.read_text(encoding="utf-8").splitlines()
                if line.strip() and _step(line) is not None and _step(line) <= step]
        text = "".join(f"{line}\n" for line in kept)
        write_atomic(self.path, lambda temp: temp.write_text(text, encoding="utf-8"))

    def append(self, record: StepRecord | dict) -> None:
        """Add one line; a failed write (a full disk) is one line naming the file and the free space."""
        line = record.line() if isinstance(record, StepRecord) else json.dumps(record, ensure_ascii=False)
        problem = None
        try:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")
                handle.flush()
        except OSError as exc:
            problem = failure(exc)
        if problem is not None:
            raise write_failure(self.path.parent, self.path, "metrics.jsonl", len(line) + 1, problem,
                                "free some space, then continue with --resume")

    def records(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _step(line: str) -> int | None:
    """A record's step; a half-written last line (the run was killed mid-write) has none and is dropped."""
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None
