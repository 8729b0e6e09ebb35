"""A run with a held-out set: the measurements in metrics.jsonl, the --json summary and the trackers; the same
figures bit for bit across a kill and resume and between one process with accumulation 2 and two processes;
report.png, `train-report`, and the export's model card."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import TINY_BUNDLE, run_cli, start_paused_at
from test_train_cli import _InProcess, _files
from test_train_processes import _run_ranks
from train_fixtures import TEMPORAL, data, one_thread  # noqa: F401 (fixtures)

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
PNG = b"\x89PNG\r\n\x1a\n"


def _args(data: Path, run: Path, batch: int = 1, *extra) -> list:
    """Three stage-1 steps, a checkpoint at 2, the held-out set (DATA itself, 4 items) measured every step."""
    return ["train", data, "-o", run, "--stage", "1", "--weights", TINY_BUNDLE, "--size", "128", "--steps", "3",
            "--checkpoint-every", "2", "--batch-size", str(batch), "--lr", "1e-3", "--seed", "5",
            "--ref-dropout", "0.5", "--device", "cpu", "--motion-module", TEMPORAL, "--val-data", data,
            "--val-every", "1", "--val-items", "4", "--quiet", *extra]


@pytest.fixture(scope="module")
def accumulated(data, tmp_path_factory):
    """One process, batch 1 × accumulation 2, uninterrupted, with its --json summary and a tracker."""
    run = tmp_path_factory.mktemp("accumulated") / "run"
    code, out, err = _InProcess()(_args(data, run, 1, "--gradient-accumulation", "2", "--json", "--log",
                                        "tensorboard"))
    assert code == 0, err
    return run, json.loads(out.strip().splitlines()[-1])


def _held_out(run: Path) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "val" in r]


def test_the_held_out_set_is_measured_at_step_zero_every_n_steps_and_in_the_summary(accumulated):
    run, summary = accumulated
    records = _held_out(run)
    assert [r["step"] for r in records] == [0, 1, 2, 3]
    first, last = records[0]["val"], records[-1]["val"]
    assert first["items"] == 4 and set(first["bands"]) == {"t0-249", "t250-499", "t500-749", "t750-999"}
    assert first["pose_gain"] == 0.0  # SD 1.5's zeroed ControlNet outputs: no render changes anything yet
    assert last["pose_gain"] != 0.0 and last["loss"] != first["loss"]
    assert summary["val"] == last
    config = json.loads((run / "config.json").read_text())
    assert config["val"]["fingerprint"] and config["settings"]["val_items"] == 4
    assert (run / "report.png").read_bytes().startswith(PNG)
    assert [json.loads(x)["step"] for x in (run / "timings.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_two_processes_measure_exactly_what_one_process_with_accumulation_two_does(accumulated, data, tmp_path):
    _run_ranks(_args(data, tmp_path / "run", 1), tmp_path)
    run, _ = accumulated
    assert (tmp_path / "run" / "metrics.jsonl").read_bytes() == (run / "metrics.jsonl").read_bytes()


def test_a_killed_run_resumes_to_the_same_held_out_figures_and_card_bit_for_bit(accumulated, data, tmp_path, capsys):
    """Killed after step 3's metrics and measurement, before its checkpoint: the resume goes back to step 2."""
    run = tmp_path / "run"
    args = _args(data, run, 1, "--gradient-accumulation", "2")
    proc = start_paused_at("train-step:3", args, env=ENV)
    proc.kill()
    proc.communicate(timeout=60)
    assert [r["step"] for r in _held_out(run)] == [0, 1, 2, 3]
    code, _, err = run_cli([*args, "--resume"], capsys)
    assert code == 0, err
    reference, _ = accumulated
    assert (run / "metrics.jsonl").read_bytes() == (reference / "metrics.jsonl").read_bytes()
    assert _files(run / "export") == _files(reference / "export")


def test_the_export_holds_the_released_layout_and_a_hub_model_card(accumulated):
    from huggingface_hub import ModelCard

    run, _ = accumulated
    names = sorted(p.relative_to(run / "export").as_posix() for p in (run / "export").rglob("*") if p.is_file())
    assert names == ["README.md", "appearance_encoder/config.json",
                     "appearance_encoder/diffusion_pytorch_model.safetensors", "densepose_controlnet/config.json",
                     "densepose_controlnet/diffusion_pytorch_model.safetensors",
                     "temporal_attention/temporal_attention.ckpt", "training.json"]
    card = ModelCard.load(run / "export" / "README.md")
    assert card.data.base_model and card.data.license and "magicanimate" in card.data.tags
    last = _held_out(run)[-1]["val"]
    assert f"{last['loss']:.5f}" in card.text and "--animation-weights" in card.text and "hf upload" in card.text
    assert "--gradient-accumulation 2" in card.text and "--stage 1" in card.text


def test_train_report_draws_several_runs_and_refuses_a_folder_that_is_not_a_run(accumulated, tmp_path, capsys):
    run, _ = accumulated
    code, out, err = run_cli(["train-report", run, run, "-o", tmp_path / "both.png"], capsys)
    assert code == 0, err
    assert (tmp_path / "both.png").read_bytes().startswith(PNG)
    code, _, err = run_cli(["train-report", run, tmp_path, "-o", tmp_path / "bad.png"], capsys)
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and str(tmp_path) in lines[0] and "not a training run" in lines[0]
    assert not (tmp_path / "bad.png").exists()


def test_a_tracker_that_is_not_installed_is_one_line_naming_its_extra(data, tmp_path, capsys):
    code, _, err = run_cli(_args(data, tmp_path / "run", 1, "--log", "tensorboard,aim"), capsys)
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and "magicanimate-cli[aim]" in lines[0]
    assert not (tmp_path / "run").exists()


def test_a_held_out_folder_that_is_not_a_data_folder_is_one_line_before_anything_is_written(data, tmp_path, capsys):
    args = _args(data, tmp_path / "run", 1)
    args[args.index("--val-data") + 1] = tmp_path / "missing"
    code, _, err = run_cli(args, capsys)
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and str(tmp_path / "missing") in lines[0]
    assert not (tmp_path / "run").exists()


def test_the_held_out_figures_go_to_the_tracker(accumulated):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    run, _ = accumulated
    reader = event_accumulator.EventAccumulator(str(run / "logs" / "train"))
    reader.Reload()
    assert {"val/loss", "val/ref_gain", "val/pose_gain_se", "val/band/t0-249"} <= set(reader.Tags()["scalars"])
    records = _held_out(run)
    assert [e.step for e in reader.Scalars("val/loss")] == [r["step"] for r in records]
    assert [e.value for e in reader.Scalars("val/loss")] == pytest.approx([r["val"]["loss"] for r in records])
