"""The parts of `magicanimate serve` that need no server: its settings, the workspace's expiry, the upload
checks and their messages, and the command line's refusals."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import run_cli

from magicanimate_cli.runtime.errors import InputError, SettingsError
from magicanimate_cli.serve.limits import Upload, check_frames, display_name, stage_upload, user_message
from magicanimate_cli.serve.settings import ServeSettings, parse_devices, parse_duration
from magicanimate_cli.serve.workspace import Workspace


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("30m", 1800), ("1h", 3600), ("2d", 172800),
                                           ("1.5h", 5400)])
def test_keep_results_reads_seconds_minutes_hours_and_days(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "1 week", "-5m", ""])
def test_keep_results_refuses_anything_else_naming_the_option(text):
    with pytest.raises(SettingsError, match="--keep-results"):
        parse_duration(text)


def test_devices_are_one_per_entry_and_a_gpu_named_twice_is_refused():
    assert parse_devices("cuda:0, cuda:1") == ("cuda:0", "cuda:1")
    assert parse_devices("cpu,cpu") == ("cpu", "cpu")
    with pytest.raises(SettingsError, match="cuda:0 named twice"):
        parse_devices("cuda:0,cuda:0")


def test_settings_refuse_limits_that_cannot_work():
    for bad, option in ((dict(port=0), "--port"), (dict(max_upload_mb=0), "--max-upload-mb"),
                        (dict(max_frames=0), "--max-frames"), (dict(keep_results=0), "--keep-results")):
        with pytest.raises(SettingsError, match=option):
            ServeSettings(**bad).validate()


def test_the_command_line_refuses_a_bad_duration_in_one_line_before_starting(capsys):
    code, _, err = run_cli(["serve", "--demo", "--keep-results", "soon"], capsys)
    assert (code, err.strip()) == (1, "error: --keep-results soon: expected a duration like 90s, 30m, 1h or 2d")


def test_the_command_line_refuses_missing_weights_in_one_line_and_leaves_no_workspace(tmp_path, capsys,
                                                                                        monkeypatch):
    pytest.importorskip("gradio")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # mkdtemp reads TMPDIR again
    code, _, err = run_cli(["serve", "--weights", tmp_path / "nothing", "--port", "7999"], capsys)
    assert code == 1 and err.startswith(f"error: {tmp_path / 'nothing'}") and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_without_gradio_the_command_says_which_extra_to_install(capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else real(name, *a))
    code, _, err = run_cli(["serve", "--demo"], capsys)
    assert (code, err.strip()) == (1, "error: serve needs Gradio, the [serve] extra: pip install "
                                      "'magicanimate-cli[serve]'")


def test_an_upload_is_copied_under_a_name_the_server_chooses(tmp_path):
    upload = tmp_path / "gradio" / "..;rm -rf $(x) .PNG"
    upload.parent.mkdir()
    upload.write_bytes(b"pixels")
    job = tmp_path / "job"
    job.mkdir()
    staged = stage_upload(upload, job, "reference", "reference image")
    assert staged.path == job / "reference.png" and staged.path.read_bytes() == b"pixels"
    assert staged.name == "..;rm -rf $(x) .PNG"  # kept as text, for messages only
    odd = tmp_path / "gradio" / "clip.exe"
    odd.write_bytes(b"x")
    assert stage_upload(odd, job, "motion", "motion video").path == job / "motion"  # unknown suffix dropped


def test_a_missing_upload_says_so_in_the_users_terms(tmp_path):
    with pytest.raises(InputError, match="^no motion video uploaded"):
        stage_upload(None, tmp_path, "motion", "motion video")
    with pytest.raises(InputError, match="^gone.mp4: the upload is no longer on the server"):
        stage_upload(tmp_path / "gone.mp4", tmp_path, "motion", "motion video")


def test_display_names_are_one_short_line():
    assert display_name("a\nb\x00c.png") == "abc.png"
    assert len(display_name("x" * 500 + ".png")) == 80


def test_messages_name_files_as_the_user_named_them_and_hide_server_folders(tmp_path):
    upload = Upload(tmp_path / "jobs" / "abc" / "reference.png", "my photo.png")
    message = user_message(InputError(f"{upload.path}: not an image\n(PNG expected)"), [upload], tmp_path)
    assert message == "my photo.png: not an image (PNG expected)"
    other = user_message(InputError(f"{tmp_path}/weights/DensePose/x.pt: file not found"), [], tmp_path)
    assert other == "weights/DensePose/x.pt: file not found"


def test_messages_call_the_command_lines_options_by_the_pages_labels(tmp_path):
    message = user_message(SettingsError("--steps must be at least 1 (got 0)"), [], tmp_path)
    assert message == "'Steps' must be at least 1 (got 0)"
    warning = "clip.mp4: does not look like a DensePose render; for an ordinary video use --motion-from-video"
    assert user_message(warning, [], tmp_path).endswith("use 'Render DensePose first'")


def test_frames_default_to_the_limit_and_may_not_exceed_it():
    assert check_frames(None, 300) == 300
    assert check_frames(12, 300) == 12
    with pytest.raises(SettingsError, match="at most 300 frames"):
        check_frames(301, 300)


def _touch(path: Path, when: float) -> Path:
    os.utime(path, (when, when))
    return path


def test_sweep_removes_finished_jobs_and_uploads_past_their_time_and_keeps_the_rest(tmp_path):
    workspace = Workspace.create(tmp_path)
    finished, running = workspace.new_job(), workspace.new_job()
    workspace.finish(finished, keep=True)
    upload = workspace.served / "tmpupload"
    upload.mkdir()
    (upload / "photo.png").write_bytes(b"x")
    workspace.examples.mkdir()
    for path in (finished, running, upload, upload / "photo.png", workspace.examples):
        _touch(path, 1000.0)
    assert workspace.sweep(now=1000.0 + 3600, keep=3600) == []  # exactly at the limit: kept
    removed = workspace.sweep(now=1000.0 + 3601, keep=3600)
    assert sorted(removed) == sorted([finished, upload])
    assert running.is_dir() and workspace.examples.is_dir()
    workspace.remove()
    assert not workspace.root.exists()


def test_a_job_that_does_not_finish_well_leaves_nothing(tmp_path):
    workspace = Workspace.create(tmp_path)
    folder = workspace.new_job()
    (folder / "animation.mp4").write_bytes(b"partial")
    workspace.finish(folder, keep=False)
    assert list(workspace.jobs.iterdir()) == []
