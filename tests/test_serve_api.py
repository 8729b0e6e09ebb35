"""`magicanimate serve` through its real HTTP API: Gradio's Python client against a --demo server on 127.0.0.1.

One server runs for the module (CPU, the tiny embedded model); a Gate holds jobs at named points, so queueing and
cancelling are decided by the test, not by timing.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import pytest
from PIL import Image

pytest.importorskip("gradio", reason="serve needs the [serve] extra (Gradio)")

from conftest import run_cli  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from serve_helpers import WAIT, Gate, free_port, small_inputs  # noqa: E402

MAX_FRAMES = 8
# render_first, smooth, size, fit, align, frames, steps, guidance, seed, scheduler
SETTINGS = [False, False, 128, "pad", False, 4, 2, 7.5, 7, "ddim"]


@pytest.fixture(scope="module")
def gate() -> Gate:
    return Gate()


@pytest.fixture(scope="module")
def server(gate):
    from magicanimate_cli.serve.server import serving
    from magicanimate_cli.serve.settings import ServeSettings

    settings = ServeSettings(port=free_port(), demo=True, devices=("cpu",), max_frames=MAX_FRAMES,
                             max_upload_mb=1, sweep_every=86400)  # the test sweeps, with its own clock
    with pytest.MonkeyPatch.context() as env:
        # the server's heartbeat to each session, every 0.1 s instead of 15: a closed client notices at once
        env.setenv("GRADIO_HEARTBEAT_INTERVAL", "0.1")
        with serving(settings, hooks=gate) as running:
            yield running


@pytest.fixture(autouse=True)
def fresh_start(server, gate):
    """Each test starts with no job folders (earlier results swept away) and a gate that holds nothing."""
    gate.reset()
    server.workspace.sweep(now=time.time() + 10 * server.settings.keep_results, keep=server.settings.keep_results)
    yield
    gate.reset()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    return small_inputs(tmp_path_factory.mktemp("serve-inputs"))


def client(server, folder: Path) -> Client:
    """A new client: a browser session of its own, downloading into `folder`."""
    return Client(server.url, verbose=False, download_files=str(folder))


def animate(session: Client, reference: Path, motion: Path, **changes):
    values = dict(zip(["render_first", "smooth", "size", "fit", "align", "frames", "steps", "guidance", "seed",
                       "scheduler"], SETTINGS))
    values.update(changes)
    return session.submit(handle_file(str(reference)), handle_file(str(motion)), *values.values(),
                          api_name="/animate")


def job_folders(server) -> list[Path]:
    return sorted(server.workspace.jobs.iterdir())


def video_frames(path: Path) -> tuple[int, Fraction, tuple[int, int]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        return len(frames), stream.average_rate, (frames[0].shape[1], frames[0].shape[0])


def test_an_animation_reports_its_windows_and_returns_its_video_render_and_sidecar_named_after_the_inputs(
        server, gate, inputs, tmp_path):
    gate.hold("window")
    named = (_write(tmp_path / "mona lisa.png", inputs[0].read_bytes()),
             _write(tmp_path / "Running.mp4", inputs[1].read_bytes()))
    job = animate(client(server, tmp_path), *named)
    gate.release("window")
    gate.wait_for_arrivals("window", 2)  # window 1 of 2 was reported to the page; window 2 is held
    status = _wait_for(job, lambda s: any(p.desc == "denoise" and p.index == 1 for p in s.progress_data or []))
    (bar,) = status.progress_data
    assert (bar.index, bar.length, bar.unit) == (1, 2, "windows")  # 2 steps × 1 window of 4 frames
    gate.open("window")
    video, downloads, status = job.result(timeout=WAIT)
    video_path, render_path, sidecar_path = map(Path, downloads)
    assert Path(video).read_bytes() == video_path.read_bytes()
    assert video_frames(video_path) == (4, Fraction(25), (128, 128))
    assert video_frames(render_path)[:2] == (4, Fraction(25))
    sidecar = json.loads(sidecar_path.read_text())
    assert sidecar["output"]["frames"] == 4 and sidecar["output"]["fps"] == "25"
    assert sidecar["seed"] == 7 and sidecar["settings"]["steps"] == 2 and sidecar["settings"]["scheduler"] == "ddim"
    assert sidecar["inputs"]["reference"] == "mona lisa.png" and sidecar["inputs"]["motion"] == "Running.mp4"
    assert status == "Done: 4 frames at 25 fps, seed 7."
    _received_names_no_server_folder(server, downloads)


def _received_names_no_server_folder(server, downloads: list[str]) -> None:
    """Downloads named after the inputs and the job; a sidecar with no server path; no stray upload files."""
    names = [Path(p).name for p in downloads]
    job = names[0].removeprefix("mona-lisa-running-").removesuffix(".mp4")
    assert len(job) == 6 and names == [f"mona-lisa-running-{job}.mp4", f"mona-lisa-running-{job}-densepose.mp4",
                                       f"mona-lisa-running-{job}.mp4.json"]
    sidecar = Path(downloads[2]).read_text()
    record = json.loads(sidecar)
    assert str(server.workspace.root) not in sidecar and str(server.settings.weights) not in sidecar
    assert not [v for v in _strings(record) if v.startswith("/")]  # no absolute path at all
    assert record["output"]["path"] == names[0] and record["settings"]["weights"] == "demo"
    assert "MagicAnimate/temporal_attention/temporal_attention.ckpt" in {w["file"] for w in record["weights"]}
    assert not [p for p in server.workspace.served.iterdir() if p.name.startswith("tmp")]  # none per upload


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def test_a_damaged_image_fails_with_the_command_lines_one_line_message(server, inputs, tmp_path, capsys):
    damaged = tmp_path / "holiday.png"
    damaged.write_bytes(b"this is not a picture")
    result = animate(client(server, tmp_path), damaged, inputs[1]).result(timeout=WAIT)
    assert result == (None, None, "Error: holiday.png: not an image (PNG, JPEG or WebP expected)")
    code, _, err = run_cli(["animate", damaged, inputs[1], "-o", tmp_path / "out.mp4", "--weights",
                            server.settings.weights, "--device", "cpu", "--size", "128"], capsys)
    assert (code, err.strip().splitlines()[-1]) == (1, f"error: {damaged}: not an image (PNG, JPEG or WebP expected)")
    assert job_folders(server) == []  # nothing kept of a job that failed


def test_a_video_that_cannot_be_decoded_is_named_as_the_user_named_it(server, inputs, tmp_path):
    broken = tmp_path / "dance.mp4"
    broken.write_bytes(inputs[1].read_bytes()[:300])
    message = animate(client(server, tmp_path), inputs[0], broken).result(timeout=WAIT)[2]
    assert message.startswith("Error: dance.mp4: ") and "\n" not in message
    assert str(server.workspace.root) not in message and "Traceback" not in message


def test_render_first_says_how_to_get_the_densepose_model_and_previews_the_render_once_it_is_there(
        server, inputs, tmp_path, pose_standin):
    from magicanimate_cli.densepose.model import MODEL_FILES, MODEL_FOLDER
    from media_helpers import encode_video
    from pose_standin import moving_blobs

    video = encode_video(tmp_path / "my dance.mp4", moving_blobs(4))
    session = client(server, tmp_path)
    values = [True, *SETTINGS[1:]]  # render DensePose first
    place = Path(MODEL_FOLDER) / MODEL_FILES["r50"]
    picture, status = session.predict(handle_file(str(inputs[0])), handle_file(str(video)), *values,
                                      api_name="/preview")
    assert picture is None and status == (f"Error: weights/{place}: this server has no DensePose model, which "
                                          "'Render DensePose first' and 'Align' need; whoever runs it can fetch it "
                                          "with `magicanimate download-weights --pose`")  # the page has no --pose-model
    installed = server.settings.weights / place
    installed.parent.mkdir(exist_ok=True)
    installed.write_bytes(pose_standin["model"].read_bytes())
    try:
        picture, status = session.predict(handle_file(str(inputs[0])), handle_file(str(video)), *values,
                                          api_name="/preview")
    finally:
        installed.unlink()
    assert status.startswith("Preview ready") and "Warning" not in status  # a render it made itself
    with Image.open(picture) as shown:
        assert shown.width > shown.height > 0  # one column per shown frame, rows of silhouettes and render


def test_more_frames_than_max_frames_are_refused_before_any_work(server, inputs, tmp_path):
    result = animate(client(server, tmp_path), *inputs, frames=MAX_FRAMES + 1).result(timeout=WAIT)
    assert result == (None, None, f"Error: Frames: this server animates at most {MAX_FRAMES} frames per job (got "
                                  f"{MAX_FRAMES + 1}); choose fewer")
    assert job_folders(server) == []


@pytest.mark.parametrize("frames, seed, message", [
    (0, 1, "Frames: must be at least 1 (got 0)"),
    (2.5, 1, "Frames: must be a whole number (got 2.5)"),
    (4, 1.5, "Seed: must be a whole number (got 1.5)"),
    ("four", 1, 'Frames: must be a whole number (got "four")'),
    (4, "abc", 'Seed: must be a whole number (got "abc")')])
def test_a_bad_number_is_refused_naming_the_field_never_truncated(server, inputs, tmp_path, frames, seed, message):
    values = dict(zip(["render_first", "smooth", "size", "fit", "align", "frames", "steps", "guidance", "seed",
                       "scheduler"], SETTINGS), frames=frames, seed=seed)
    preview = client(server, tmp_path).predict(handle_file(str(inputs[0])), handle_file(str(inputs[1])),
                                               *values.values(), api_name="/preview")
    assert preview == (None, f"Error: {message}")
    assert job_folders(server) == []


def test_preview_gives_animates_warning_about_a_motion_that_is_not_a_densepose_render_in_plain_words(
        server, inputs, tmp_path):
    from media_helpers import encode_video
    from pose_standin import moving_blobs

    video = encode_video(tmp_path / "holiday clip.mp4", moving_blobs(4))
    picture, status = client(server, tmp_path).predict(handle_file(str(inputs[0])), handle_file(str(video)),
                                                       *SETTINGS, api_name="/preview")
    assert Path(picture).stat().st_size > 0
    warning = status.splitlines()[-1]
    assert warning == ("Warning: holiday clip.mp4: does not look like a DensePose render (a figure of coloured body "
                       "parts on a dark purple background, which is what the model follows), so the animation will "
                       "hardly follow it; this server cannot make a render from an ordinary video: upload a "
                       "DensePose render instead")  # --demo has no DensePose model: its option is not offered


def test_an_upload_over_max_upload_mb_is_refused_by_the_server_as_it_arrives(server, inputs, tmp_path):
    import httpx

    large = inputs[0].read_bytes() + bytes(1_100_000)  # over the server's 1 MB (1 MiB to Gradio)
    with pytest.raises(ValueError, match="exceeds the maximum file size of 1048576 bytes"):  # the client's check
        animate(client(server, tmp_path), _write(tmp_path / "large.png", large), inputs[1]).result(timeout=WAIT)
    response = httpx.post(f"{server.url}gradio_api/upload", files=[("files", ("large.png", large))])
    assert response.status_code == 413  # a browser or script that skips that check meets the server's
    assert "exceeded maximum allowed size of 1048576 bytes" in response.text
    assert [p.name for p in server.workspace.served.iterdir() if p.name not in ("jobs", "examples")] == []
    assert job_folders(server) == []


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_a_running_job_is_never_swept_and_cancel_stops_it_at_the_next_window_leaving_no_files(
        server, gate, inputs, tmp_path):
    from magicanimate_cli.serve.handlers import CANCELLED, NO_JOB

    session = client(server, tmp_path)
    gate.hold("window")
    job = animate(session, *inputs)
    gate.wait_for_arrivals("window")  # the first of the 2 windows (2 steps × 1 window) is done
    (running,) = job_folders(server)
    server.workspace.sweep(now=time.time() + 10 * server.settings.keep_results, keep=server.settings.keep_results)
    assert running.is_dir()
    assert client(server, tmp_path).predict(api_name="/cancel") == NO_JOB  # another user's Cancel
    assert session.predict(api_name="/cancel") == "Cancelling: the job stops at its next window."
    _wait_for(job, lambda s: _said(job) == "Cancelling: the job stops at its next window.")  # in its status
    gate.release("window")
    assert job.result(timeout=WAIT) == (None, None, CANCELLED)  # the last word is the job's: it stopped
    assert gate.arrived["window"] == 1  # the second window never ran
    assert job_folders(server) == []


def test_the_queue_is_the_same_for_everyone_and_moves_when_a_waiting_job_is_cancelled(server, gate, inputs,
                                                                                        tmp_path):
    from magicanimate_cli.serve.handlers import LEFT_QUEUE

    from magicanimate_cli.serve.estimate import Work

    # as if a first job had measured the device: a window step at 128² in 2 s, a frame in 0.5 s
    server.runner.speeds.record("cpu", Work(4, 1, 1, 128, 128), denoise_s=2.0, decode_s=2.0)
    gate.hold("job:start")
    sessions = [client(server, tmp_path / name) for name in "abc"]
    first = animate(sessions[0], *inputs, steps=1)
    gate.wait_for_arrivals("job:start")
    second = animate(sessions[1], *inputs, steps=1, seed=8)
    _wait_for(second, lambda s: _said(second).startswith("Waiting: your job is next in the queue"))
    third = animate(sessions[2], *inputs, steps=1, seed=9)
    _wait_for(third, lambda s: _said(third).startswith("Waiting: 1 job ahead of yours in the queue"))
    _wait_for(second, lambda s: _said(second).startswith("Waiting: your job is next"))  # told, and still next
    # each job: 1 window step (2 s) and 4 frames (0.5 s each); the third waits for what is left of the first
    # (0 to 4 s, as it runs) and all of the second
    place = re.fullmatch(r"Waiting: 1 job ahead of yours in the queue, about (\d) s before it starts\. The job itself: "
                         r"about 4 s\.", _said(third))
    assert place and 4 <= int(place.group(1)) <= 8, _said(third)
    assert sessions[1].predict(api_name="/cancel") == LEFT_QUEUE  # a waiting job leaves the queue at once
    assert second.result(timeout=WAIT) == (None, None, LEFT_QUEUE)
    _wait_for(third, lambda s: _said(third).startswith("Waiting: your job is next in the queue"))  # it moved up
    assert gate.arrived["job:start"] == 1  # nothing but the first has started
    gate.open("job:start")
    assert first.result(timeout=WAIT)[2] == "Done: 4 frames at 25 fps, seed 7."
    assert third.result(timeout=WAIT)[2] == "Done: 4 frames at 25 fps, seed 9."
    assert gate.arrived["job:start"] == 2  # the cancelled job never started


def test_a_session_that_disconnects_mid_job_frees_the_device_after_at_most_one_window(server, gate, inputs,
                                                                                      tmp_path):
    from magicanimate_cli.serve.handlers import CANCELLED

    gate.hold("window")
    leaving, staying = client(server, tmp_path / "a"), client(server, tmp_path / "b")
    abandoned = animate(leaving, *inputs)  # 2 windows: 2 steps × 1 window of 4 frames
    gate.wait_for_arrivals("window")  # it has done its first window and is held before its second
    (abandoned_folder,) = job_folders(server)
    waiting = animate(staying, *inputs, seed=8, steps=1)
    _wait_for(waiting, lambda s: _said(waiting).startswith("Waiting: your job is next"))
    leaving.close()  # the session's connection is gone, as when a tab is closed
    gate.wait_for_arrivals(f"session:gone:{leaving.session_hash}")  # the server heard, and cancelled its job
    gate.open("window")
    assert waiting.result(timeout=WAIT)[2] == "Done: 4 frames at 25 fps, seed 8."
    assert gate.arrived["window"] == 1 + 1  # the abandoned job's one window, then the second job's one
    assert not abandoned_folder.exists() and len(job_folders(server)) == 1  # only the finished job's files
    assert abandoned.result(timeout=WAIT) == (None, None, CANCELLED)  # what its page would have read


def _said(job) -> str:
    """The last status the job's page was told (the third output of its latest update)."""
    outputs = job.outputs()
    return outputs[-1][2] if outputs else ""


def _wait_for(job, condition):
    """The job's status once it satisfies `condition`: a bounded wait for the client to hear of a state that the
    test's gate holds in place (so it cannot pass by before it is seen)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        status = job.status()
        if condition(status):
            return status
        time.sleep(0.05)
    raise AssertionError(f"the job never reported the awaited status (last: {job.status()})")


def test_a_sessions_next_preview_replaces_its_last_one_and_leaving_removes_it(server, gate, inputs, tmp_path):
    session = client(server, tmp_path)
    for _ in range(2):
        picture, _ = session.predict(handle_file(str(inputs[0])), handle_file(str(inputs[1])), *SETTINGS,
                                     api_name="/preview")
        (folder,) = job_folders(server)  # the first preview's folder went when the second was made
        assert (folder / "preview.png").read_bytes() == Path(picture).read_bytes()
    session.close()
    gate.wait_for_arrivals(f"session:gone:{session.session_hash}")
    assert job_folders(server) == []


def test_results_are_removed_once_they_expire_and_kept_until_then(server, inputs, tmp_path):
    session = client(server, tmp_path)
    preview, _ = session.predict(handle_file(str(inputs[0])), handle_file(str(inputs[1])), *SETTINGS,
                                 api_name="/preview")
    assert Path(preview).stat().st_size > 0
    (folder,) = job_folders(server)
    keep = server.settings.keep_results
    finished = folder.stat().st_mtime
    # The job's folder stays until `keep` seconds after it finished. (Gradio's upload folders were touched before
    # it, so on a slow machine they may already be due at that moment: their own expiry is checked below.)
    assert folder not in server.workspace.sweep(now=finished + keep - 1, keep=keep)
    assert job_folders(server) == [folder]
    removed = server.workspace.sweep(now=time.time() + keep + 1, keep=keep)
    assert folder in removed and job_folders(server) == []
    uploads = [p for p in server.workspace.served.iterdir() if p.name not in ("jobs", "examples")]
    assert uploads == []  # Gradio's copies of the uploads expired with it


def test_sigterm_while_a_job_runs_cancels_it_removes_the_workspace_and_exits_cleanly(inputs, tmp_path):
    """The real command, held by the test hook inside its job's first window, is stopped by a service manager."""
    from magicanimate_cli.runtime.testhooks import PAUSE_AT, PAUSE_READY

    read_end, write_end = os.pipe()
    env = {**os.environ, PAUSE_AT: "serve:window", PAUSE_READY: f"/dev/fd/{write_end}"}
    proc = subprocess.Popen([sys.executable, "-m", "magicanimate_cli", "serve", "--demo", "--devices", "cpu",
                             "--port", str(free_port())], env=env, pass_fds=(write_end,),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    os.close(write_end)
    try:
        line = proc.stderr.readline()  # the server announces itself once it listens
        assert line.startswith("serving "), line + proc.stderr.read()
        workspace = Path(line.split("(workspace ")[1].split(")")[0])
        session = Client(line.split()[1], verbose=False, download_files=str(tmp_path))
        animate(session, *inputs)
        with os.fdopen(read_end) as ready:
            assert ready.readline() == "serve:window\n"  # the job has finished its first window and waits
        assert any(workspace.glob("served/jobs/*/reference.png"))
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode in (0, 130, 143), err
    assert "terminate called" not in err and "Traceback" not in err
    assert not workspace.exists()


@pytest.mark.parametrize("name, kind", [("monalisa.png", "a PNG image"), ("monalisa.mp4", "a PNG image (named .mp4)")])
def test_a_still_image_as_the_motion_is_named_as_what_it_is_never_a_one_frame_video(server, inputs, tmp_path, name,
                                                                                      kind):
    picture = _write(tmp_path / name, inputs[0].read_bytes())
    result = animate(client(server, tmp_path), inputs[0], picture).result(timeout=WAIT)
    assert result == (None, None, f"Error: {name}: {kind}, not a video; the motion must be a video (.mp4, .mov, "
                                  ".webm, .avi, .gif or .mkv)")
    assert job_folders(server) == []


def test_a_video_of_one_frame_is_animated_and_said_as_one_frame(server, tmp_path):
    reference, motion = small_inputs(tmp_path, frames=1)
    assert animate(client(server, tmp_path), reference, motion).result(timeout=WAIT)[2] == (
        "Done: 1 frame at 25 fps, seed 7.")


def test_an_upload_of_the_wrong_kind_is_refused_by_the_jobs_own_check_in_the_status(server, inputs, tmp_path):
    notes = _write(tmp_path / "notes.txt", b"not a picture")
    result = animate(client(server, tmp_path), notes, inputs[1]).result(timeout=WAIT)
    assert result == (None, None, "Error: notes.txt: not an image (PNG, JPEG or WebP expected)")
