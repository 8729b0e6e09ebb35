"""`train --data-workers`: the worker count never changes a run (its steps, its held-out figures, its export), and a
run read by workers resumes bit for bit."""

from __future__ import annotations

import json
import os
from pathlib import Path

from conftest import TINY_BUNDLE, run_cli, start_paused_at
from train_fixtures import TEMPORAL, data, one_thread  # noqa: F401 (fixtures)

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _args(data: Path, run: Path, workers: int, *extra) -> list:
    """Three stage-1 steps with a checkpoint at 2 (images and videos mixed: both readers are fed), the held-out set
    (DATA itself, 2 items) measured at every step."""
    return ["train", data, "-o", run, "--stage", "1", "--weights", TINY_BUNDLE, "--size", "128", "--steps", "3",
            "--checkpoint-every", "2", "--lr", "1e-3", "--seed", "7", "--device", "cpu",
            "--motion-module", TEMPORAL, "--data-workers", str(workers), "--val-data", data, "--val-every", "1",
            "--val-items", "2", "--quiet", *extra]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_two_workers_killed_and_resumed_end_with_the_export_of_a_run_read_in_process(data, tmp_path, capsys):
    alone = tmp_path / "alone"
    code, _, err = run_cli(_args(data, alone, 0), capsys)
    assert code == 0, err
    timings = [json.loads(line) for line in (alone / "timings.jsonl").read_text().splitlines()]
    assert [t["step"] for t in timings] == [1, 2, 3] and all(t["data_wait_s"] >= 0 for t in timings)
    run = tmp_path / "workers"
    proc = start_paused_at("train-step:3", _args(data, run, 2), env=ENV)  # step 3 done, its checkpoint not
    proc.kill()
    proc.communicate(timeout=60)
    assert not (run / "export").exists()
    code, _, err = run_cli(_args(data, run, 2, "--resume"), capsys)
    assert code == 0, err
    held_out = [r["step"] for r in map(json.loads, (alone / "metrics.jsonl").read_text().splitlines()) if "val" in r]
    assert held_out == [0, 1, 2, 3]
    assert (run / "metrics.jsonl").read_bytes() == (alone / "metrics.jsonl").read_bytes()
    assert _files(run / "export") == _files(alone / "export")
