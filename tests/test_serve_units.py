"""The parts of `magicanimate serve` that need no server: its settings, the workspace's expiry, the upload
checks and their messages, and the command line's refusals."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from conftest import run_cli

from magicanimate_cli.runtime.errors import InputError, SettingsError
from magicanimate_cli.serve.estimate import SpeedBook, Work, say_duration, work_of
from magicanimate_cli.serve.limits import Upload, check_frames, display_name, stage_upload, user_message
from magicanimate_cli.serve.results import public_sidecar, result_stem, slug
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
                        (dict(max_job_seconds=0), "--max-job-seconds"),
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
    assert message == "Steps: must be at least 1 (got 0)"  # led by the field the user sees
    warning = "clip.mp4: does not look like a DensePose render; for an ordinary video use --motion-from-video"
    assert user_message(warning, [], tmp_path).endswith("use 'Render DensePose first'")


def test_the_render_warning_says_what_a_render_looks_like_and_offers_only_what_the_server_can_do(tmp_path):
    import numpy as np

    from magicanimate_cli.animate.job import motion_format
    from magicanimate_cli.runtime.progress import Reporter
    from magicanimate_cli.serve.limits import page_warning

    class Heard(Reporter):
        def __init__(self) -> None:
            self.said: list[str] = []

        def warn(self, message: str) -> None:
            self.said.append(message)

    upload, heard = Upload(tmp_path / "motion.mp4", "holiday.mp4"), Heard()
    motion_format(np.full((64, 64, 3), 200, np.uint8), upload.path, heard)  # a grey frame: not a render
    (cli,) = [user_message(w, [upload], tmp_path) for w in heard.said]
    without, offered = page_warning(cli, renders=False), page_warning(cli, renders=True)
    for said in (without, offered):
        assert said.startswith("holiday.mp4: does not look like a DensePose render (a figure of coloured body parts")
        assert "viridis" not in said and "(68, 1, 84)" not in said
    assert "Render DensePose first" not in without and without.endswith("upload a DensePose render instead")
    assert offered.endswith("if it is an ordinary video of a person, tick 'Render DensePose first'")
    assert page_warning("clip.mp4: 3 frames are blank", renders=False) == "clip.mp4: 3 frames are blank"


def test_a_still_image_is_known_by_its_content_whatever_its_name_and_a_video_is_not(tmp_path):
    from magicanimate_cli.serve.limits import still_image_kind
    from serve_helpers import small_inputs

    photo, video = small_inputs(tmp_path, frames=2)
    renamed = tmp_path / "photo.mp4"
    renamed.write_bytes(photo.read_bytes())
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    assert [still_image_kind(p) for p in (photo, renamed, video, text)] == ["PNG", "PNG", None, None]


@pytest.mark.parametrize("typed, number", [("", None), (None, None), (" 7 ", 7), ("-1", -1), (12.0, 12), ("3.0", 3)])
def test_a_number_field_reads_whole_numbers_and_empty(typed, number):
    from magicanimate_cli.serve.limits import whole_number

    assert whole_number(typed, "Seed") == number


@pytest.mark.parametrize("typed, message", [("abc", 'Seed: must be a whole number (got "abc")'),
                                            ("1.5", "Seed: must be a whole number (got 1.5)"),
                                            ("inf", "Seed: must be a whole number (got inf)")])
def test_a_number_field_refuses_anything_else_naming_the_field(typed, message):
    from magicanimate_cli.serve.limits import whole_number

    with pytest.raises(SettingsError) as refused:
        whole_number(typed, "Seed")
    assert str(refused.value) == message


def test_the_page_says_places_in_the_queue_and_counts_as_people_do():
    from magicanimate_cli.serve.handlers import counted, queue_place

    assert [queue_place(n) for n in (1, 2, 3)] == ["your job is next in the queue",
                                                   "1 job ahead of yours in the queue",
                                                   "2 jobs ahead of yours in the queue"]
    assert (counted(1, "frame"), counted(4, "frame")) == ("1 frame", "4 frames")


def test_the_preview_note_says_in_words_what_its_columns_and_rows_show(tmp_path):
    from magicanimate_cli.serve.handlers import preview_note
    from magicanimate_cli.serve.runner import PreviewMade

    plain = preview_note(PreviewMade(tmp_path / "p.png", (), (0, 4, 8, 12, 16), 17, aligned=False))
    assert plain.startswith("Preview ready: motion frames 0, 4, 8, 12 and 16 of the 17 frames to animate, a column "
                            "each: the motion's figure over your photo (red), as fitted, and below it")
    aligned = preview_note(PreviewMade(tmp_path / "p.png", (), (0,), 1, aligned=True))
    assert aligned.startswith("Preview ready: motion frame 0, the only one to animate: the motion's figure over "
                              "your photo (red), as fitted, then where Align moves it (green)")


def test_frames_left_empty_mean_all_up_to_the_limit_and_may_not_exceed_it():
    assert check_frames(None, 300) == 300
    assert check_frames(12, 300) == 12
    assert check_frames(12.0, 300) == 12
    with pytest.raises(SettingsError, match="^Frames: this server animates at most 300 frames"):
        check_frames(301, 300)


@pytest.mark.parametrize("frames, message", [(0, "Frames: must be at least 1 (got 0)"),
                                             (-3, "Frames: must be at least 1 (got -3)"),
                                             (2.5, "Frames: must be a whole number (got 2.5)")])
def test_frames_that_cannot_be_animated_are_refused_naming_the_field(frames, message):
    with pytest.raises(SettingsError) as refused:
        check_frames(frames, 300)
    assert str(refused.value) == message


def test_the_pages_frames_start_at_one_window_not_the_servers_maximum():
    assert ServeSettings(max_frames=300).default_frames == 16
    assert ServeSettings(max_frames=8).default_frames == 8


def test_download_names_keep_only_safe_letters_of_the_users_names():
    assert result_stem("Mona Lisa (1).PNG", "running.mp4", "1a2b3c") == "mona-lisa-1-running-1a2b3c"
    assert result_stem("../../etc/passwd", "Ünïcödé clip.webm", "000000") == "passwd-unicode-clip-000000"
    assert result_stem("飞.png", "舞.mp4", "abcdef") == "reference-motion-abcdef"  # nothing left: the role's name
    assert slug("x" * 100 + ".png", "reference") == "x" * 32


def test_the_sidecar_a_user_receives_names_no_server_folder(tmp_path):
    job, weights = tmp_path / "served" / "jobs" / "abc", tmp_path / "ma-weights"
    tuned = tmp_path / "runs" / "tuned"
    job.mkdir(parents=True)
    sidecar = job / "out.mp4.json"
    sidecar.write_text(json.dumps({
        "settings": {"weights": str(weights), "animation_weights": str(tuned)},
        "inputs": {"reference": str(job / "reference.png")}, "output": {"path": str(job / "out.mp4")},
        "preview": str(job), "animation_weights": str(tuned),
        "weights": [{"path": str(weights / "unet" / "model.safetensors"), "bytes": 5, "modified": 1},
                    {"path": str(tuned / "appearance_encoder" / "config.json"), "bytes": 7, "modified": 1}]}))
    public_sidecar(sidecar, job, [(weights, "ma-weights"), (tuned, "tuned")])
    assert json.loads(sidecar.read_text()) == {
        "settings": {"weights": "ma-weights", "animation_weights": "tuned"},
        "inputs": {"reference": "reference.png"}, "output": {"path": "out.mp4"}, "preview": ".",
        "animation_weights": "tuned",
        "weights": [{"file": "unet/model.safetensors", "bytes": 5},
                    {"file": "tuned/appearance_encoder/config.json", "bytes": 7}]}


def test_an_estimate_scales_the_measured_speed_by_windows_steps_frames_and_area():
    book = SpeedBook()
    small = Work(frames=16, windows=1, steps=25, width=512, height=512)
    assert book.estimate(small) is None  # nothing measured yet: no guess
    book.record("cuda:0", small, denoise_s=50.0, decode_s=8.0)  # 2 s a window step, 0.5 s a frame
    assert book.estimate(small) == pytest.approx(58.0)
    large = Work(frames=32, windows=3, steps=25, width=1024, height=1024)  # 3 windows, 4× the area
    assert book.estimate(large) == pytest.approx(3 * 25 * 4 * 2.0 + 32 * 4 * 0.5)
    book.record("cuda:1", small, denoise_s=100.0, decode_s=16.0)  # a slower device: estimates are its
    assert book.estimate(small) == pytest.approx(116.0)


def test_the_work_of_a_job_counts_the_engines_own_windows():
    from magicanimate_cli.animate.settings import AnimateSettings

    settings = AnimateSettings(size=256, steps=10)
    assert work_of(settings, 16) == Work(16, 1, 10, 256, 256)
    assert work_of(settings, 17).windows == len(settings.sampler_config().window_plan(32).windows)


@pytest.mark.parametrize("seconds, said", [(0.2, "1 s"), (42, "42 s"), (200, "3 min 20 s"), (1500, "25 min"),
                                           (3900, "1 h 5 min")])
def test_durations_are_said_as_people_read_them(seconds, said):
    assert say_duration(seconds) == said


def test_waiting_jobs_learn_the_same_order_and_move_up_when_one_ahead_leaves():
    from magicanimate_cli.serve.jobqueue import JobCancelled, JobQueue, Place, Ticket

    jobs = JobQueue(("cpu",), clock=lambda: 100.0)
    work = Work(4, 1, 2, 128, 128)
    running, second, third = (Ticket(name, work, estimate_s=30.0) for name in ("a", "b", "c"))
    heard: dict[str, list[Place]] = {"b": [], "c": []}
    told = threading.Condition()

    def hear(ticket):
        def moved(place):
            with told:
                heard[ticket.session].append(place)
                told.notify_all()
        return moved

    def wait_in_line(ticket, outcome):
        try:
            with jobs.device(ticket, hear(ticket)):
                outcome.append("ran")
        except JobCancelled:
            outcome.append("left")

    jobs.enter(running)
    with jobs.device(running, lambda place: None):
        outcomes = {"b": [], "c": []}
        threads = []
        for ticket in (second, third):
            jobs.enter(ticket)
            threads.append(threading.Thread(target=wait_in_line, args=(ticket, outcomes[ticket.session])))
            threads[-1].start()
        with told:
            assert told.wait_for(lambda: heard["c"] and heard["b"] and heard["b"][-1].waiting == 2, 60)
        assert heard["b"][-1] == Place(1, 2, 30) and heard["c"][-1] == Place(2, 2, 60)  # one device: in turn
        assert jobs.cancel(lambda t: t.session == "b") == ([], [second])
        with told:
            assert told.wait_for(lambda: heard["c"][-1].position == 1, 60)
        assert heard["c"][-1] == Place(1, 1, 30)  # moved up as soon as the one ahead left
    for thread in threads:
        thread.join(60)
    assert outcomes == {"b": ["left"], "c": ["ran"]}


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


def test_a_job_estimated_longer_than_max_job_seconds_is_refused_in_one_line_and_leaves_nothing(tmp_path):
    from magicanimate_cli.animate.settings import AnimateSettings
    from magicanimate_cli.serve.runner import JobFailed, JobSpec, Runner
    from serve_helpers import small_inputs

    reference, motion = small_inputs(tmp_path / "inputs")
    workspace = Workspace.create(tmp_path)
    runner = Runner(ServeSettings(max_job_seconds=60), workspace)
    runner.speeds.record("cpu", Work(4, 1, 2, 128, 128), denoise_s=100.0, decode_s=20.0)  # a job took 2 min
    with pytest.raises(JobFailed) as refused:
        runner.animate(reference, motion, JobSpec(AnimateSettings(size=128, steps=2), frames=4), "session")
    assert str(refused.value) == ("Animate: this job would take about 2 min on this server, longer than its limit "
                                  "of 1 min; choose fewer frames or steps, or a smaller size")
    assert list(workspace.jobs.iterdir()) == []


def test_the_command_line_refuses_a_max_job_seconds_that_cannot_work(capsys):
    pytest.importorskip("gradio")
    code, _, err = run_cli(["serve", "--demo", "--max-job-seconds", "0"], capsys)
    assert (code, err.strip()) == (1, "error: --max-job-seconds must be more than 0 (got 0)")


def test_a_job_pressed_before_its_page_went_away_never_starts_and_a_later_one_is_kept(tmp_path):
    from magicanimate_cli.animate.settings import AnimateSettings
    from magicanimate_cli.serve.runner import Ended, JobSpec, Runner
    from serve_helpers import small_inputs

    reference, motion = small_inputs(tmp_path / "inputs")
    workspace = Workspace.create(tmp_path)
    now = [20.0]
    runner = Runner(ServeSettings(devices=()), workspace, clock=lambda: now[0])  # no device: jobs only wait
    spec = JobSpec(AnimateSettings(size=128, steps=2), frames=4)
    runner.session_gone("page")  # at 20 s: the page's connection is gone
    now[0] = 10.0  # its Animate was pressed at 10 s and was still being checked
    early = runner.animate(reference, motion, spec, "page")
    assert next(m for m in early.messages() if isinstance(m, Ended)) == Ended(cancelled=True, left_queue=True)
    now[0] = 30.0  # the same page, back after a blip, presses Animate again: a new job, kept
    later = runner.animate(reference, motion, spec, "page")
    assert not later.cancelled.is_set()
    runner.stop()  # the server stops: the waiting job is cancelled too, and its folder removed
    assert next(m for m in later.messages() if isinstance(m, Ended)) == Ended(cancelled=True, left_queue=True)
    assert list(workspace.jobs.iterdir()) == []
