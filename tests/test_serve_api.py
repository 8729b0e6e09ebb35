"""`magicanimate serve` through its real HTTP API: Gradio's Python client against a --demo server on 127.0.0.1.

One server runs for the module (CPU, the tiny embedded model); a Gate holds jobs at named points, so queueing and
cancelling are decided by the test, not by timing.
"""

from __future__ import annotations

import json
import time
from fractions import Fraction
from pathlib import Path

import av
import pytest
from PIL import Image

pytest.importorskip("gradio", reason="serve needs the [serve] extra (Gradio)")

from conftest import run_cli  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402
from gradio_client.utils import Status  # noqa: E402
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


def test_an_animation_reports_its_windows_and_returns_the_video_its_densepose_render_and_sidecar(
        server, gate, inputs, tmp_path):
    gate.hold("window")
    job = animate(client(server, tmp_path), *inputs)
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
    assert sidecar["inputs"]["reference"] == "reference.png" and sidecar["inputs"]["motion"] == "motion.mp4"
    assert status == "Done: 4 frames at 25 fps, seed 7."


def test_a_damaged_image_fails_with_the_command_lines_one_line_message(server, inputs, tmp_path, capsys):
    damaged = tmp_path / "holiday.png"
    damaged.write_bytes(b"this is not a picture")
    with pytest.raises(AppError) as failure:
        animate(client(server, tmp_path), damaged, inputs[1]).result(timeout=WAIT)
    assert str(failure.value) == "holiday.png: not an image (PNG, JPEG or WebP expected)"
    code, _, err = run_cli(["animate", damaged, inputs[1], "-o", tmp_path / "out.mp4", "--weights",
                            server.settings.weights, "--device", "cpu", "--size", "128"], capsys)
    assert (code, err.strip().splitlines()[-1]) == (1, f"error: {damaged}: not an image (PNG, JPEG or WebP expected)")
    assert job_folders(server) == []  # nothing kept of a job that failed


def test_a_video_that_cannot_be_decoded_is_named_as_the_user_named_it(server, inputs, tmp_path):
    broken = tmp_path / "dance.mp4"
    broken.write_bytes(inputs[1].read_bytes()[:300])
    with pytest.raises(AppError) as failure:
        animate(client(server, tmp_path), inputs[0], broken).result(timeout=WAIT)
    message = str(failure.value)
    assert message.startswith("dance.mp4: ") and "\n" not in message
    assert str(server.workspace.root) not in message and "Traceback" not in message


def test_render_first_says_how_to_get_the_densepose_model_and_previews_the_render_once_it_is_there(
        server, inputs, tmp_path, pose_standin):
    from media_helpers import encode_video
    from pose_standin import moving_blobs

    from magicanimate_cli.motion.densepose.model import MODEL_FILES, MODEL_FOLDER

    video = encode_video(tmp_path / "my dance.mp4", moving_blobs(4))
    session = client(server, tmp_path)
    values = [True, *SETTINGS[1:]]  # render DensePose first
    place = Path(MODEL_FOLDER) / MODEL_FILES["r50"]
    with pytest.raises(AppError) as failure:
        session.predict(handle_file(str(inputs[0])), handle_file(str(video)), *values, api_name="/preview")
    assert str(failure.value) == (f"weights/{place}: this server has no DensePose model, which 'Render DensePose "
                                  "first' and 'Align' need; whoever runs it can fetch it with `magicanimate "
                                  "download-weights --pose`")  # no --pose-model: the page has no such option
    installed = server.settings.weights / place
    installed.parent.mkdir(exist_ok=True)
    installed.write_bytes(pose_standin["model"].read_bytes())
    try:
        picture = session.predict(handle_file(str(inputs[0])), handle_file(str(video)), *values,
                                  api_name="/preview")
    finally:
        installed.unlink()
    with Image.open(picture) as shown:
        assert shown.width > shown.height > 0  # one column per shown frame, rows of silhouettes and render


def test_more_frames_than_max_frames_are_refused_before_any_work(server, inputs, tmp_path):
    with pytest.raises(AppError) as failure:
        animate(client(server, tmp_path), *inputs, frames=MAX_FRAMES + 1).result(timeout=WAIT)
    assert str(failure.value) == (f"frames {MAX_FRAMES + 1}: this server animates at most {MAX_FRAMES} frames per "
                                  "job; choose fewer")
    assert job_folders(server) == []


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
    from magicanimate_cli.serve.handlers import CANCELLED

    session = client(server, tmp_path)
    gate.hold("window")
    job = animate(session, *inputs)
    gate.wait_for_arrivals("window")  # the first of the 2 windows (2 steps × 1 window) is done
    (running,) = job_folders(server)
    server.workspace.sweep(now=time.time() + 10 * server.settings.keep_results, keep=server.settings.keep_results)
    assert running.is_dir()
    assert client(server, tmp_path).predict(api_name="/cancel") == "No job of yours is running."  # another user
    assert session.predict(api_name="/cancel") == "Cancelling: the job stops at its next window."
    gate.release("window")
    assert job.result(timeout=WAIT) == (None, None, CANCELLED)
    assert gate.arrived["window"] == 1  # the second window never ran
    assert job_folders(server) == []


def test_a_second_submission_waits_in_the_queue_and_both_finish(server, gate, inputs, tmp_path):
    gate.hold("job:start")
    first = animate(client(server, tmp_path / "a"), *inputs, steps=1)
    gate.wait_for_arrivals("job:start")
    second = animate(client(server, tmp_path / "b"), *inputs, steps=1, seed=8)
    queued = _wait_for(second, lambda s: s.code == Status.IN_QUEUE)  # reported while the first is held
    assert queued.rank == 0 and queued.queue_size >= 1
    assert gate.arrived["job:start"] == 1  # the second has not started
    gate.open("job:start")
    assert first.result(timeout=WAIT)[2] == "Done: 4 frames at 25 fps, seed 7."
    assert second.result(timeout=WAIT)[2] == "Done: 4 frames at 25 fps, seed 8."
    assert gate.arrived["job:start"] == 2


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


def test_results_are_removed_once_they_expire_and_kept_until_then(server, inputs, tmp_path):
    session = client(server, tmp_path)
    preview = session.predict(handle_file(str(inputs[0])), handle_file(str(inputs[1])), *SETTINGS,
                              api_name="/preview")
    assert Path(preview).stat().st_size > 0
    (folder,) = job_folders(server)
    keep = server.settings.keep_results
    finished = folder.stat().st_mtime
    assert server.workspace.sweep(now=finished + keep - 1, keep=keep) == []
    removed = server.workspace.sweep(now=time.time() + keep + 1, keep=keep)
    assert folder in removed and job_folders(server) == []
    uploads = [p for p in server.workspace.served.iterdir() if p.name not in ("jobs", "examples")]
    assert uploads == []  # Gradio's copies of the uploads expired with it
