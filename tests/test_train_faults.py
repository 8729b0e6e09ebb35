"""What goes wrong in a long run, injected deterministically: a diverging learning rate, a full disk (a
size-limited tmpfs), a damaged checkpoint (a truncated or altered file), a data file removed mid-run (a step
hook). Each checks the one-line message, the exit code, what is left on disk, and that the continued run ends
bit for bit where the uninterrupted one does."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY_BUNDLE, run_cli
from magicanimate_cli.dataset.reader import DataFolder
from magicanimate_cli.runtime.errors import MagicAnimateError
from magicanimate_cli.train.checkpoint import complete_checkpoints, damage
from magicanimate_cli.train.run import train
from train_fixtures import data, one_thread, settings  # noqa: F401 (fixtures)

DIVERGED = 3


def _args(data: Path, run: Path, *extra) -> list:
    """Four stage-1 steps, a checkpoint every two."""
    return ["train", data, "-o", run, "--stage", "1", "--weights", TINY_BUNDLE, "--size", "128", "--steps", "4",
            "--checkpoint-every", "2", "--lr", "1e-3", "--seed", "5", "--device", "cpu", "--quiet", *extra]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def _all_finite(run: Path) -> bool:
    for folder in complete_checkpoints(run):
        tensors = [*load_file(str(folder / "trainable.safetensors")).values()]
        optimizer = torch.load(folder / "optimizer.pt", weights_only=True)["state"]
        tensors += [t for state in optimizer.values() for t in state.values() if t.is_floating_point()]
        if not all(bool(torch.isfinite(t).all()) for t in tensors):
            return False
    return True


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory):
    """The run every interrupted one must end at: its export and metrics."""
    from conftest import cli_exit_code

    run = tmp_path_factory.mktemp("uninterrupted") / "run"
    assert cli_exit_code(_args(data, run)) == 0
    return _files(run / "export"), (run / "metrics.jsonl").read_bytes()


# ---------------------------------------------------------------------------------------------- divergence


def test_a_diverging_run_stops_at_the_step_keeps_its_good_checkpoint_and_writes_no_export(data, tmp_path, capsys):
    """--lr 1e8: the loss is NaN from step 2. The run stops there in one line naming the step, the loss and the
    last intact checkpoint, exits 3, writes no export and no checkpoint of the bad step; with
    --max-skipped-steps the continued run skips (recorded) and ends where a run skipping from the start ends."""
    run = tmp_path / "run"
    args = _args(data, run, "--lr", "1e8", "--checkpoint-every", "1")
    code, _, err = run_cli(args, capsys)
    line = _one_line(err)
    assert code == DIVERGED
    assert "step 2" in line and "nan" in line and "not finite" in line and str(run / "checkpoints" / "step-1") in line
    assert [p.name for p in complete_checkpoints(run)] == ["step-1"] and _all_finite(run)
    assert not (run / "export").exists()

    code, _, err = run_cli([*args, "--resume", "--max-skipped-steps", "3"], capsys)
    assert code == 0, err
    skipping = tmp_path / "skipping"
    code, _, err = run_cli(_args(data, skipping, "--lr", "1e8", "--checkpoint-every", "1",
                                 "--max-skipped-steps", "3"), capsys)
    assert code == 0, err
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("nonfinite", False) for r in records] == [False, True, True, True]
    assert (run / "metrics.jsonl").read_bytes() == (skipping / "metrics.jsonl").read_bytes()
    assert _files(run / "export") == _files(skipping / "export") and _all_finite(run)
    exported = load_file(str(run / "export" / "densepose_controlnet" / "diffusion_pytorch_model.safetensors"))
    assert all(bool(torch.isfinite(t).all()) for t in exported.values())

    code, _, err = run_cli([*args[:-2], "--checkpoint-every", "1", "--resume", "--steps", "6",
                            "--max-skipped-steps", "3"], capsys)
    assert code == DIVERGED and "step 5" in _one_line(err) and "4 such step(s)" in err
    assert [p.name for p in complete_checkpoints(run)][-1] == "step-4" and _all_finite(run)


# ---------------------------------------------------------------------------------------------- disk full


@contextmanager
def small_disk(folder: Path, mib: int):
    """A tmpfs of `mib` MiB at `folder` (root only; skipped elsewhere): writes past it fail with ENOSPC."""
    folder.mkdir(parents=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mib}m", f"tmpfs-{uuid.uuid4().hex[:8]}",
                           str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"a size-limited tmpfs needs root ({done.stderr.strip()})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_is_one_plain_line_the_earlier_checkpoint_stays_and_the_run_resumes_exactly(
        data, uninterrupted, tmp_path, capsys):
    """RUN on a 40 MiB filesystem: a checkpoint of the tiny run is 23 MiB, so the second one cannot be written.
    The run says so with what it needed and what is free, keeps step-2 intact, leaves no temporary folder and no
    export; with room again, --resume ends with the uninterrupted run's export and metrics."""
    with small_disk(tmp_path / "disk", 40) as disk:
        run = disk / "run"
        code, _, err = run_cli(_args(data, run), capsys)
        line = _one_line(err)
        assert code == 1
        assert "no space left on the device" in line and "needs about" in line and "MiB free" in line
        assert str(run / "checkpoints" / "step-2") in line
        free = float(line.split(" MiB free")[0].rsplit(" ", 1)[1])  # the failed writer's files are closed first
        assert free == pytest.approx(shutil.disk_usage(disk).free / 2**20, abs=0.1)
        assert [p.name for p in complete_checkpoints(run)] == ["step-2"] and damage(run / "checkpoints" / "step-2") \
            is None
        assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-2"]
        assert not (run / "export").exists()
        subprocess.run(["mount", "-o", "remount,size=200m", str(disk)], check=True)
        code, _, err = run_cli([*_args(data, run), "--resume"], capsys)
        assert code == 0, err
        export, metrics = uninterrupted
        assert _files(run / "export") == export and (run / "metrics.jsonl").read_bytes() == metrics


def test_an_export_that_does_not_fit_leaves_the_checkpoint_and_is_written_by_resume(data, uninterrupted, tmp_path,
                                                                                   capsys):
    """28 MiB: the one checkpoint (step 4, 23 MiB) fits, the export after it does not. One plain line, exit 1, no
    export or temporary left, the checkpoint intact; with room again, --resume (no step left) writes the export the
    uninterrupted run wrote."""
    with small_disk(tmp_path / "disk", 28) as disk:
        run = disk / "run"
        args = _args(data, run, "--checkpoint-every", "4", "--keep-checkpoints", "1")
        code, _, err = run_cli(args, capsys)
        line = _one_line(err)
        assert code == 1 and "no space left on the device" in line and "while writing the export" in line
        assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.json", "metrics.jsonl", "timing.jsonl"]
        assert damage(run / "checkpoints" / "step-4") is None
        subprocess.run(["mount", "-o", "remount,size=200m", str(disk)], check=True)
        code, _, err = run_cli([*args, "--resume"], capsys)
        assert code == 0, err
        export, metrics = uninterrupted
        assert _files(run / "export") == export and (run / "metrics.jsonl").read_bytes() == metrics


def test_a_disk_that_cannot_hold_one_checkpoint_is_refused_before_training(data, tmp_path, capsys):
    with small_disk(tmp_path / "disk", 16) as disk:
        code, _, err = run_cli(_args(data, disk / "run"), capsys)
        line = _one_line(err)
        assert code == 1 and "not enough space" in line and "needs about" in line and "MiB free" in line
        assert not (disk / "run").exists() or not any((disk / "run").iterdir())


# ---------------------------------------------------------------------------------------------- damaged checkpoints


def test_a_damaged_newest_checkpoint_is_named_set_aside_and_the_run_continues_from_an_intact_one(
        data, uninterrupted, tmp_path, capsys):
    """A run stopped after step 3 (checkpoints 2 and 3); step-3's optimizer file cut short. --resume names it,
    continues from step-2 and ends with the uninterrupted run's export and metrics. When no checkpoint is intact
    (one file truncated, one altered in place), --resume says so in one line."""
    run = tmp_path / "run"
    code, _, err = run_cli([*_args(data, run), "--steps", "3"], capsys)
    assert code == 0, err
    damaged = run / "checkpoints" / "step-3" / "optimizer.pt"
    damaged.write_bytes(damaged.read_bytes()[:1000])
    code, _, err = run_cli([*_args(data, run), "--resume"], capsys)
    assert code == 0, err
    assert str(damaged) in err and "damaged" in err and "step-2" in err
    export, metrics = uninterrupted
    assert _files(run / "export") == export and (run / "metrics.jsonl").read_bytes() == metrics
    assert (run / "checkpoints" / "damaged-step-3").is_dir()

    for folder in complete_checkpoints(run):
        weights = folder / "trainable.safetensors"
        altered = bytearray(weights.read_bytes())
        altered[-1] ^= 0xFF
        weights.write_bytes(bytes(altered))
    code, _, err = run_cli([*_args(data, run), "--resume"], capsys)
    line = _one_line(err)
    assert code != 0 and "no intact checkpoint" in line and "checksum" in line


# ---------------------------------------------------------------------------------------------- data removed


def test_a_data_file_removed_mid_run_stops_with_its_name_and_the_run_resumes_exactly(data, tmp_path):
    """Held since before: a video removed while the run goes on (a step hook, after step 2's checkpoint) stops the
    next step that reads it, naming the file; put back, the run resumes to the uninterrupted result."""
    copy = shutil.copytree(data, tmp_path / "data")
    folder = DataFolder(copy)
    contents = folder.check()
    away = tmp_path / "away"

    def go(run: Path, resume: bool = False, on_step=None):
        s = settings(copy, run, steps=6, checkpoint_every=2)
        return train(s, folder, contents.videos, contents.images, contents.fingerprint, resume=resume,
                     on_step=on_step)

    whole = go(tmp_path / "whole")

    def remove(record, timing):
        if record.step == 2:
            shutil.move(copy / "videos", away)

    run = tmp_path / "run"
    with pytest.raises(MagicAnimateError) as failure:
        go(run, on_step=remove)
    assert str(copy / "videos") in str(failure.value) and len(str(failure.value).splitlines()) == 1
    assert complete_checkpoints(run)[-1].name == "step-2" and not (run / "export").exists()
    shutil.move(away, copy / "videos")
    go(run, resume=True)
    assert _files(run / "export") == _files(whole.export)
    assert (run / "metrics.jsonl").read_bytes() == (tmp_path / "whole" / "metrics.jsonl").read_bytes()
