"""`magicanimate train` through the real command on real files: a run, its export, exact resume after a kill,
SIGTERM, and the one-line errors for bad input (which leave no run folder behind)."""

from __future__ import annotations

import json
import os
import signal
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_BUNDLE, run_cli, start_paused_at
from media_helpers import encode_video
from train_fixtures import MA, OneThread, TEMPORAL, write_data
from train_helpers import make_data, make_validation

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with OneThread():
        yield


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-data")
    make_validation(root / "validation")
    return write_data(root / "data")


def _args(data: Path, run: Path, *extra) -> list:
    """Three stage-1 steps, a checkpoint at 2, a validation video (one DDIM step) at 2."""
    return ["train", data, "-o", run, "--stage", "1", "--weights", TINY_BUNDLE, "--size", "128", "--steps", "3",
            "--checkpoint-every", "2", "--lr", "1e-3", "--seed", "5", "--device", "cpu",
            "--motion-module", TEMPORAL, "--validate-every", "2", "--validation", data.parent / "validation",
            "--validation-steps", "1", *extra]


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory):
    """An uninterrupted three-step stage-1 run, with its --json summary."""
    run = tmp_path_factory.mktemp("finished") / "run"
    capsys_free = _InProcess()
    code, out, err = capsys_free(_args(data, run, "--json"))
    assert code == 0, err
    return run, json.loads(out.strip().splitlines()[-1])


class _InProcess:
    """run_cli for module fixtures (no capsys there): captures by redirecting the streams."""

    def __call__(self, args: list) -> tuple[int, str, str]:
        import contextlib
        import io

        from conftest import cli_exit_code

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli_exit_code(args)
        return code, out.getvalue(), err.getvalue()


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_run_writes_config_metrics_checkpoints_and_the_released_layout(finished):
    run, summary = finished
    assert summary["steps"] == 3 and summary["export"] == str(run / "export")
    assert "--animation-weights" in summary["animate"] and str(run / "export") in summary["animate"]
    config = json.loads((run / "config.json").read_text())
    assert config["settings"]["stage"] == 1 and config["schedule"]["beta_schedule"] == "linear"
    assert config["data"]["fingerprint"] and config["weights"]["fingerprint"]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "validation" not in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    assert all({"loss", "lr", "branch"} <= set(r) and r["branch"] in ("image", "frame") for r in steps)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-2", "step-3"]
    assert set(_files(run / "export")) == {
        "appearance_encoder/config.json", "appearance_encoder/diffusion_pytorch_model.safetensors",
        "densepose_controlnet/config.json", "densepose_controlnet/diffusion_pytorch_model.safetensors",
        "temporal_attention/temporal_attention.ckpt", "training.json", "README.md"}  # the model card: the only new file


def test_stage2_from_an_export_changes_only_the_temporal_file(finished, data, tmp_path, capsys):
    """Stage 2 from stage 1's export: two-frame clips; its export keeps the encoder and ControlNet byte for byte."""
    stage1, _ = finished
    run = tmp_path / "run"
    args = ["train", data, "-o", run, "--stage", "2", "--from", stage1 / "export", "--weights", TINY_BUNDLE,
            "--size", "128", "--frames", "2", "--joint", "0,0", "--steps", "1", "--lr", "1e-3", "--device", "cpu",
            "--quiet"]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    assert [json.loads(line)["branch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == ["clip"]
    before, after = _files(stage1 / "export"), _files(run / "export")
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"temporal_attention/temporal_attention.ckpt", "training.json", "README.md"}  # its own card


def test_validation_animates_the_pairs_through_the_engine_and_scores_them(finished):
    run, _ = finished
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    (validation,) = [r for r in records if "validation" in r]
    assert validation["step"] == 2 and validation["validation"] == "dancer"
    assert (run / validation["video"]).is_file() and validation["video"] == "validation/step-2/dancer.mp4"
    assert {"l1", "psnr", "ssim"} <= set(validation)
    assert "lpips" in validation["skipped"]  # the tiny bundle has no metric weights: logged, not fatal


def test_the_export_animates_through_animate_animation_weights_and_changes_the_video(finished, data, tmp_path,
                                                                                   capsys):
    """The line `train` prints works: `animate --animation-weights RUN/export` with SD 1.5 and the VAE from
    --weights; its video differs from the bundle's own MagicAnimate weights' video."""
    run, summary = finished
    reference, motion = data.parent / "validation" / "dancer.png", data.parent / "validation" / "dancer.mp4"
    fast = ["--size", "128", "--steps", "1", "--context-frames", "3", "--context-overlap", "0", "--seed", "3",
            "--device", "cpu", "--quiet"]
    videos = {}
    for name, extra in (("trained", ["--animation-weights", run / "export"]), ("base", [])):
        videos[name] = tmp_path / f"{name}.mp4"
        code, _, err = run_cli(["animate", reference, motion, "-o", videos[name], "--weights", TINY_BUNDLE, *fast,
                                *extra], capsys)
        assert code == 0, err
    assert videos["trained"].read_bytes() != videos["base"].read_bytes()
    sidecar = json.loads((tmp_path / "trained.mp4.json").read_text())
    assert sidecar["animation_weights"] == str(run / "export")
    assert summary["animate"].endswith(f"--animation-weights {run / 'export'}")


def test_a_killed_run_resumes_to_the_same_export_and_metrics_bit_for_bit(finished, data, tmp_path, capsys):
    """Killed (SIGKILL) after step 3's metrics line, before its checkpoint: the resume goes back to step 2."""
    run = tmp_path / "run"
    proc = start_paused_at("train-step:3", _args(data, run), env=ENV)
    proc.kill()
    proc.communicate(timeout=60)
    assert not (run / "export").exists()
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 4  # steps 1-3 and step 2's validation
    code, _, err = run_cli(_args(data, run, "--resume", "--quiet"), capsys)
    assert code == 0, err
    reference_run, _ = finished
    assert (run / "metrics.jsonl").read_bytes() == (reference_run / "metrics.jsonl").read_bytes()
    assert _files(run / "export") == _files(reference_run / "export")


def test_sigterm_saves_a_checkpoint_after_the_step_and_stops(data, tmp_path):
    run = tmp_path / "run"
    proc = start_paused_at("train-step:1", _args(data, run, "--checkpoint-every", "10"), env=ENV)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert "--resume" in err
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-1"]
    assert not (run / "export").exists()


# ---------------------------------------------------------------------------------------------- bad input


def _fails(capsys, args: list, *words: str) -> str:
    code, out, err = run_cli(args, capsys)
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1, err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_empty_data_is_refused(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    _fails(capsys, _args(tmp_path / "data", tmp_path / "run"), str(tmp_path / "data"), "no videos")
    assert not (tmp_path / "run").exists()


def test_a_render_with_another_frame_count_is_named_with_both_counts(tmp_path, capsys):
    data = make_data(tmp_path / "data", {"walk": 8}, size=128)
    render = data / "densepose" / "walk.mp4"
    encode_video(render, [np.zeros((128, 128, 3), np.uint8)] * 6)
    _fails(capsys, _args(data, tmp_path / "run"), str(render), "6 frames", "has 8")
    assert not (tmp_path / "run").exists()


def test_clips_longer_than_every_video_are_refused(data, tmp_path, capsys):
    args = ["train", data, "-o", tmp_path / "run", "--stage", "2", "--weights", TINY_BUNDLE, "--from", MA,
            "--frames", "12", "--size", "128", "--device", "cpu"]
    _fails(capsys, args, "--frames 12", "longest has 10")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("extra,words", [
    (["--stage", "2", "--joint", "0.5,0.2", "--from", str(MA)], ["--joint 0.5,0.2", "out of order"]),
    (["--stage", "2"], ["--stage 2 needs a temporal start"]),
    (["--stage", "1", "--joint", "0.1,0.2"], ["stage 2"]),
])
def test_settings_that_cannot_work_are_refused(data, tmp_path, capsys, extra, words):
    args = ["train", data, "-o", tmp_path / "run", "--weights", TINY_BUNDLE, "--size", "128", *extra]
    _fails(capsys, args, *words)
    assert not (tmp_path / "run").exists()


def test_asking_for_images_that_data_lacks_is_refused(tmp_path, capsys):
    data = make_data(tmp_path / "data", {"walk": 8}, size=128)
    _fails(capsys, _args(data, tmp_path / "run", "--image-prob", "0.3"), "--image-prob 0.3", "no images")
    assert not (tmp_path / "run").exists()


def test_a_from_folder_missing_a_part_is_named(data, tmp_path, capsys):
    partial = tmp_path / "partial"
    shutil.copytree(MA / "appearance_encoder", partial / "appearance_encoder")
    _fails(capsys, _args(data, tmp_path / "run", "--from", partial), str(partial), "densepose_controlnet")
    assert not (tmp_path / "run").exists()


def test_resuming_with_other_settings_names_the_setting(finished, data, capsys):
    run, _ = finished
    before = _files(run)
    _fails(capsys, _args(data, run, "--resume", "--lr", "5e-4"), "--resume with other settings", "lr")
    assert _files(run) == before


def test_a_fresh_run_refuses_a_folder_that_holds_a_run(finished, data, capsys):
    run, _ = finished
    _fails(capsys, _args(data, run), "--resume")


def test_an_unreadable_video_is_named(tmp_path, capsys):
    data = make_data(tmp_path / "data", {"walk": 8}, size=128)
    broken = data / "videos" / "walk.mp4"
    broken.write_bytes(b"not a video")
    _fails(capsys, _args(data, tmp_path / "run"), str(broken))
    assert not (tmp_path / "run").exists()


def test_an_image_whose_render_has_another_size_is_named(tmp_path, capsys):
    from PIL import Image

    data = make_data(tmp_path / "data", {"walk": 8}, images=1, size=128)
    render = data / "images_densepose" / "photo0.png"
    Image.new("RGB", (64, 64)).save(render)
    _fails(capsys, _args(data, tmp_path / "run"), str(render), "64x64", "128x128")
    assert not (tmp_path / "run").exists()


def test_clips_longer_than_the_motion_modules_position_table_are_refused(tmp_path, capsys):
    data = make_data(tmp_path / "data", {"long": 26}, size=128)
    args = ["train", data, "-o", tmp_path / "run", "--stage", "2", "--weights", TINY_BUNDLE, "--from", MA,
            "--frames", "25", "--size", "128", "--device", "cpu"]
    _fails(capsys, args, "--frames 25", "24 frames")
    assert not (tmp_path / "run").exists()
