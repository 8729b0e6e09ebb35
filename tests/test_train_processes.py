"""Data-parallel training: N processes with batch B equal one process with batch N·B (and one process with
accumulation N), a killed multi-process run resumes exactly, and another process count is refused."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY_BUNDLE, run_cli
from magicanimate_cli.runtime.testhooks import PAUSE_AT, PAUSE_READY
from magicanimate_cli.train.sampling import DataIndex, Mix, plan_step, share
from train_helpers import make_validation
from train_fixtures import TEMPORAL, data, make_trainer, one_thread, settings  # noqa: F401 (fixtures)

RANKS = Path(__file__).parent / "train_ranks.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TOLERANCE = 1e-5  # relative: batch 2 against batch 1 × 2, the first step's loss and gradient norm


WARMUP = 4


def _args(data: Path, run: Path, batch: int, *extra) -> list:
    """Three stage-1 steps (images and frames, half the references dropped), a checkpoint at 2, inside a 4-step
    learning-rate warmup (so every comparison of metrics compares the schedule too)."""
    return ["train", data, "-o", run, "--stage", "1", "--weights", TINY_BUNDLE, "--size", "128", "--steps", "3",
            "--checkpoint-every", "2", "--batch-size", str(batch), "--lr", "1e-4", "--seed", "5",
            "--ref-dropout", "0.5", "--device", "cpu", "--motion-module", TEMPORAL, "--quiet",
            "--lr-warmup", str(WARMUP), *extra]


def _validating(data: Path, run: Path, batch: int, *extra) -> list:
    """`_args` with a validation video (one DDIM step) at step 2: with two processes each animates its share of
    the two pairs."""
    return _args(data, run, batch, "--validate-every", "2", "--validation", data.parent / "validation",
                 "--validation-steps", "1", *extra)


@pytest.fixture(scope="module", autouse=True)
def validation_pairs(data):
    """Two validation pairs beside DATA (one with ground truth, so the scores go to metrics.jsonl)."""
    folder = make_validation(data.parent / "validation")
    for suffix in (".png", ".mp4"):
        shutil.copy(folder / f"dancer{suffix}", folder / f"second{suffix}")
    return folder


def _launch(args: list, folder: Path, processes: int = 2, pause_at: str | None = None) -> list[subprocess.Popen]:
    """`processes` ranks of `magicanimate ARGS`; with `pause_at`, returns once every rank waits at that point."""
    store = (folder / f"store-{uuid.uuid4().hex}").as_uri()
    procs, ready = [], []
    for rank in range(processes):
        env, fds = dict(ENV), ()
        if pause_at:
            read_end, write_end = os.pipe()
            env.update({PAUSE_AT: pause_at, PAUSE_READY: f"/dev/fd/{write_end}"})
            fds = (write_end,)
            ready.append(read_end)
        err = open(folder / f"rank{rank}-{uuid.uuid4().hex[:6]}.err", "w+")
        procs.append(subprocess.Popen([sys.executable, RANKS, str(rank), str(processes), store, *map(str, args)],
                                      env=env, pass_fds=fds, stdout=subprocess.DEVNULL, stderr=err))
        procs[-1].err = err
        if fds:
            os.close(fds[0])
    for read_end, proc in zip(ready, procs):
        with os.fdopen(read_end) as announce:
            reached = announce.readline()
        assert reached == f"{pause_at}\n", _stderr(proc)
    return procs


def _stderr(proc) -> str:
    proc.err.seek(0)
    return proc.err.read()


def _wait(procs: list[subprocess.Popen]) -> list[int]:
    codes = [proc.wait(timeout=300) for proc in procs]
    for proc in procs:
        proc.err.close()
    return codes


def _run_ranks(args: list, folder: Path) -> None:
    procs = _launch(args, folder)
    codes = _wait(procs)
    assert codes == [0, 0], [_stderr(p) for p in procs]


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _steps(run: Path) -> list[dict]:
    """The optimizer steps' records (validation records left out)."""
    return [r for r in _records(run) if "validation" not in r]


def _assert_same_run(run: Path, reference: Path) -> None:
    """Byte for byte the same metrics and export, and the export trained (ControlNet's zeroed convolutions
    moved)."""
    assert (run / "metrics.jsonl").read_bytes() == (reference / "metrics.jsonl").read_bytes()
    for part in ("appearance_encoder", "densepose_controlnet"):
        name = f"{part}/diffusion_pytorch_model.safetensors"
        assert (run / "export" / name).read_bytes() == (reference / "export" / name).read_bytes()
    zero_conv = load_file(run / "export" / "densepose_controlnet" / "diffusion_pytorch_model.safetensors")
    assert zero_conv["controlnet_down_blocks.0.weight"].abs().max() > 0


@pytest.fixture(scope="module")
def one_process(data, tmp_path_factory):
    """One process, batch 2: the reference every split of the same global batch must equal."""
    run = tmp_path_factory.mktemp("one") / "run"
    from test_train_cli import _InProcess

    code, _, err = _InProcess()(_args(data, run, 2))
    assert code == 0, err
    return run


@pytest.fixture(scope="module")
def accumulated(data, tmp_path_factory):
    """One process, batch 1 × accumulation 2."""
    run = tmp_path_factory.mktemp("accumulated") / "run"
    from test_train_cli import _InProcess

    code, _, err = _InProcess()(_validating(data, run, 1, "--gradient-accumulation", "2"))
    assert code == 0, err
    return run


@pytest.fixture(scope="module")
def two_processes(data, tmp_path_factory):
    """Two processes (gloo), batch 1 each."""
    folder = tmp_path_factory.mktemp("two")
    _run_ranks(_validating(data, folder / "run", 1), folder)
    return folder / "run"


def test_every_process_takes_its_own_share_of_the_same_step():
    """Each process plans the whole step (one branch, one frame count) and takes a disjoint slice."""
    data = DataIndex((("a", 12), ("b", 9), ("c", 30)), ("p0", "p1"))
    for step in range(20):
        plan = plan_step(step, 7, data, Mix(2, 0, 0.2, 0.5), 2 * 3 * 2, 4, 1)
        shares = [share(plan, rank, 3, micro, 2) for micro in range(2) for rank in range(3)]
        assert all(s.branch == plan.branch and len(s.samples) == 2 for s in shares)
        assert tuple(x for s in shares for x in s.samples) == plan.samples


def test_two_processes_equal_one_process_with_the_same_global_batch(two_processes, accumulated):
    """Two processes with batch 1 take exactly the steps of one process with batch 1 × accumulation 2 (the same
    per-sample arithmetic; only where the two gradients are summed differs), bit for bit on the CPU."""
    _assert_same_run(two_processes, accumulated)
    validated = [r for r in _records(two_processes) if "validation" in r]
    assert [r["validation"] for r in validated] == ["dancer", "second"] and "psnr" in validated[0]
    assert sorted(p.name for p in (two_processes / "validation" / "step-2").iterdir()) == ["dancer.mp4", "second.mp4"]
    batch = json.loads((two_processes / "config.json").read_text())["batch"]
    assert batch == {"batch_size": 1, "processes": 2, "gradient_accumulation": 1, "global_batch": 2}
    assert [p.name for p in sorted((two_processes / "checkpoints").iterdir())] == ["step-2", "step-3"]
    rng = torch.load(two_processes / "checkpoints" / "step-3" / "rng.pt", weights_only=True)
    assert len(rng["processes"]) == 2


def test_the_learning_rate_schedule_steps_once_per_optimizer_step_whatever_the_process_count(two_processes,
                                                                                            accumulated):
    """accelerate's prepared scheduler steps once per process at every optimizer step (a warmup N times too fast
    with N processes); the run's schedule is stepped by the loop, once, and survives a checkpoint the same."""
    want = [1e-4 * step / WARMUP for step in (1, 2, 3)]
    for run in (two_processes, accumulated):
        assert [r["lr"] for r in _steps(run)] == pytest.approx(want, rel=1e-12)
    schedule = torch.load(two_processes / "checkpoints" / "step-3" / "lr_schedule.pt", weights_only=True)
    assert schedule["last_epoch"] == 3


def test_one_process_with_batch_two_matches_the_same_global_batch_split_in_two(accumulated, one_process):
    """Batch 2 versus batch 1 × accumulation 2: the same samples and draws; the losses and gradient norms of the
    first step (before any update) agree within float noise (the network sees a batch of 2 instead of 1)."""
    got, want = _steps(accumulated), _steps(one_process)
    assert [(r["step"], r["branch"], r["samples"], r["lr"]) for r in got] == \
        [(r["step"], r["branch"], r["samples"], r["lr"]) for r in want]
    assert got[0]["loss"] == pytest.approx(want[0]["loss"], rel=TOLERANCE)
    assert got[0]["grad_norm"] == pytest.approx(want[0]["grad_norm"], rel=TOLERANCE)


def test_gradient_accumulation_gives_the_update_of_the_whole_batch(data, tmp_path):
    """The accumulated gradients of batch 1 × 2 micro-batches equal batch 2's within float32 noise: 5e-4 of the
    gradient's norm measured on the tiny bundle, where batch 1 and batch 2 predictions differ by 1.3e-6 (2e-15
    in float64: arithmetic order, not a difference in what is computed). A lost 1/N scaling or micro-batch would
    be off by 50-100%."""
    grads = {}
    for batch, accumulation in ((2, 1), (1, 2)):
        trainer = make_trainer(settings(data, tmp_path / f"run{batch}", batch_size=batch,
                                        gradient_accumulation=accumulation, ref_dropout=0.5))
        assert trainer.global_batch == 2
        trainer.accumulate_gradients()
        grads[batch] = {n: p.grad.clone() for n, p in trainer.state.trainable.items()}
    difference = sum(float((grads[1][n] - g).norm()) ** 2 for n, g in grads[2].items()) ** 0.5
    norm = sum(float(g.norm()) ** 2 for g in grads[2].values()) ** 0.5
    assert norm > 0 and difference <= 2e-3 * norm


def test_a_killed_two_process_run_resumes_to_the_uninterrupted_run_bit_for_bit(two_processes, data, tmp_path):
    """Both processes stopped after step 3's metrics (before its checkpoint) and killed; resumed from step 2."""
    args = _validating(data, tmp_path / "run", 1)
    procs = _launch(args, tmp_path, pause_at="train-step:3")
    for proc in procs:
        proc.send_signal(signal.SIGKILL)
    _wait(procs)
    assert not (tmp_path / "run" / "export").exists()
    _run_ranks([*args, "--resume"], tmp_path)
    run = tmp_path / "run"
    assert (run / "metrics.jsonl").read_bytes() == (two_processes / "metrics.jsonl").read_bytes()
    for part in ("appearance_encoder", "densepose_controlnet"):
        name = f"{part}/diffusion_pytorch_model.safetensors"
        assert (run / "export" / name).read_bytes() == (two_processes / "export" / name).read_bytes()


def test_resuming_with_another_number_of_processes_is_refused_in_one_line(two_processes, data, capsys):
    before = {p: p.read_bytes() for p in two_processes.rglob("*") if p.is_file()}
    code, _, err = run_cli(_args(data, two_processes, 1, "--resume"), capsys)
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1, err
    assert "1 process(es)" in lines[0] and "started with 2" in lines[0]
    assert {p: p.read_bytes() for p in two_processes.rglob("*") if p.is_file()} == before


def test_a_checkpoint_the_main_process_cannot_write_stops_every_process_without_a_hang(data, tmp_path):
    """RUN on a small tmpfs: the main process's second checkpoint fails for want of space. It says so in one line;
    the other process, waiting for that checkpoint, learns it through one all-reduce and stops too (no collective
    left waiting); step-2 stays intact."""
    from test_train_faults import small_disk
    from magicanimate_cli.train.checkpoint import complete_checkpoints, damage

    with small_disk(tmp_path / "disk", 40) as disk:
        run = disk / "run"
        procs = _launch(_args(data, run, 1), tmp_path)
        codes = [proc.wait(timeout=300) for proc in procs]
        errors = [_stderr(proc).strip().splitlines() for proc in procs]
        _wait(procs)
        assert codes == [1, 1], errors
        assert "no space left on the device" in errors[0][-1] and "another process" in errors[1][-1]
        assert [p.name for p in complete_checkpoints(run)] == ["step-2"]
        assert damage(run / "checkpoints" / "step-2") is None and not (run / "export").exists()
