"""`magicanimate pose` and `--motion-from-video`, through the real commands, with the TorchScript stand-in
(tests/pose_standin.py) loaded from a file exactly as the released model is."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import run_cli as run
from media_helpers import encode_video, frame_folder, save_image, truncate
from pose_standin import BLUE, GREEN, LABELS, RED, blob_frame, moving_blobs

from magicanimate_cli.demo.inputs import make_reference_image
from magicanimate_cli.media.reader import open_motion
from magicanimate_cli.motion.palette import BACKGROUND, PART_COLOURS

PALETTE = {tuple(int(v) for v in c) for c in PART_COLOURS}
COLOUR = {person: tuple(int(v) for v in PART_COLOURS[label]) for person, label in LABELS.items()}
OVERLAP = {RED: (10, 8, 30, 30), GREEN: (24, 16, 30, 28)}  # green painted over red's corner
IN_BOTH = (26, 32)  # (row, column) inside both people's bodies



@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("pose-clips")
    return {
        "root": root,
        "folder": frame_folder(root / "blobs", moving_blobs(5)),
        "mp4_25": encode_video(root / "blobs25.mp4", moving_blobs(6), 25),
        "mp4_ntsc": encode_video(root / "blobs-ntsc.mp4", moving_blobs(7), Fraction(30000, 1001)),
        "empty": frame_folder(root / "empty", [blob_frame(32, 24, {})] * 3),
        "overlap": frame_folder(root / "overlap", [blob_frame(64, 64, OVERLAP)]),
        "sizes": frame_folder(root / "sizes", [blob_frame(64, 48, {RED: (4, 4, 10, 10), GREEN: (20, 10, 40, 30)})]),
    }


def pose(clips, model, video, output, *extra):
    return ["pose", video, "-o", output, "--pose-model", model, "--device", "cpu", "-q", *extra]


def rendered(path: Path) -> np.ndarray:
    return open_motion(path).read_all()


def colours(frames: np.ndarray) -> set[tuple[int, int, int]]:
    return {tuple(int(v) for v in c) for c in np.unique(frames.reshape(-1, 3), axis=0)}


def probe(path: Path) -> tuple[int, Fraction]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sum(1 for _ in container.decode(stream)), stream.average_rate


# ----------------------------------------------------------------------------------------------- the render


def test_every_pixel_is_a_part_colour_or_the_background_and_each_person_has_its_colour(clips, pose_standin,
                                                                                        tmp_path, capsys):
    code, _, err = run(pose(clips, pose_standin["model"], clips["folder"], tmp_path / "out"), capsys)
    assert code == 0, err
    frames = rendered(tmp_path / "out")
    assert len(frames) == 5 and frames.shape[1:] == (48, 64, 3)
    found = colours(frames)
    assert found <= PALETTE
    # red (0.95) and green (0.85) pass the default --min-score 0.8; blue (0.7) does not
    assert {BACKGROUND, COLOUR[RED], COLOUR[GREEN]} == found


def test_overlapping_people_are_drawn_in_score_order_most_confident_on_top(clips, pose_standin, tmp_path, capsys):
    for model, top in (("model", RED), ("swapped", GREEN)):
        out = tmp_path / model
        assert run(pose(clips, pose_standin[model], clips["overlap"], out), capsys)[0] == 0
        assert tuple(rendered(out)[0][IN_BOTH]) == COLOUR[top]


def test_a_video_without_people_renders_background_only_frames(clips, pose_standin, tmp_path, capsys):
    out = tmp_path / "empty.mp4"
    png = tmp_path / "empty-png"
    assert run(pose(clips, pose_standin["model"], clips["empty"], png), capsys)[0] == 0
    assert run(pose(clips, pose_standin["model"], clips["empty"], out), capsys)[0] == 0
    frames = rendered(png)
    assert len(frames) == 3 and (frames == BACKGROUND).all()
    assert probe(out)[0] == 3
    sidecar = json.loads((tmp_path / "empty.mp4.json").read_text())
    assert sidecar["people"] == {"frames": 3, "frames_without_people": 3, "most_people_in_a_frame": 0,
                                 "people_per_frame": [[0, 2, 0]]}


def test_min_score_decides_who_is_drawn(clips, pose_standin, tmp_path, capsys):
    low, high = tmp_path / "low", tmp_path / "high"
    assert run(pose(clips, pose_standin["model"], clips["folder"], low, "--min-score", "0.6"), capsys)[0] == 0
    assert run(pose(clips, pose_standin["model"], clips["folder"], high, "--min-score", "0.9"), capsys)[0] == 0
    assert colours(rendered(low)) == {BACKGROUND, COLOUR[RED], COLOUR[GREEN], COLOUR[BLUE]}
    assert colours(rendered(high)) == {BACKGROUND, COLOUR[RED]}


def test_people_largest_draws_only_the_person_with_the_biggest_box(clips, pose_standin, tmp_path, capsys):
    out = tmp_path / "largest"
    assert run(pose(clips, pose_standin["model"], clips["sizes"], out, "--people", "largest"), capsys)[0] == 0
    assert colours(rendered(out)) == {BACKGROUND, COLOUR[GREEN]}


def test_the_hub_files_tuple_output_keeps_the_models_order_and_threshold(clips, pose_standin, tmp_path, capsys):
    out, overlap = tmp_path / "all", tmp_path / "overlap"
    assert run(pose(clips, pose_standin["tuple"], clips["folder"], out), capsys)[0] == 0
    assert run(pose(clips, pose_standin["tuple"], clips["overlap"], overlap), capsys)[0] == 0
    # no scores: every listed person is drawn, and the first listed (the most confident) is on top
    assert colours(rendered(out)) == {BACKGROUND, COLOUR[RED], COLOUR[GREEN], COLOUR[BLUE]}
    assert tuple(rendered(overlap)[0][IN_BOTH]) == COLOUR[RED]


def test_progress_shows_the_pose_phase_with_its_rate_unless_quiet(clips, pose_standin, tmp_path, capsys):
    code, _, err = run(["pose", clips["empty"], "-o", tmp_path / "out.gif", "--pose-model", pose_standin["model"],
                        "--device", "cpu"], capsys)
    assert code == 0
    assert "pose" in err and "3/3" in err and "/s" in err and "eta" in err
    assert "wrote" in err and "3 frames" in err and "3 without people" in err


# ------------------------------------------------------------------------------------- frames, rate, batch


@pytest.mark.parametrize("clip, frames, rate", [("mp4_25", 6, Fraction(25)),
                                                ("mp4_ntsc", 7, Fraction(30000, 1001)),
                                                ("folder", 5, Fraction(25))])
def test_the_render_has_the_inputs_frame_count_and_rate(clips, pose_standin, tmp_path, capsys, clip, frames, rate):
    out = tmp_path / "render.mp4"
    assert run(pose(clips, pose_standin["model"], clips[clip], out), capsys)[0] == 0
    assert probe(out) == (frames, rate)


def test_a_folder_of_videos_is_rendered_as_a_batch(clips, pose_standin, tmp_path, capsys):
    batch = tmp_path / "videos"
    batch.mkdir()
    for name in ("blobs25.mp4", "blobs-ntsc.mp4"):
        (batch / name).write_bytes((clips["root"] / name).read_bytes())
    frame_folder(batch / "steps", moving_blobs(4))
    code, out, err = run(pose(clips, pose_standin["model"], batch, tmp_path / "out", "--json"), capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["done"] == 3 and summary["failed"] == 0
    assert [probe(tmp_path / "out" / f"{n}-pose.mp4")[0] for n in ("blobs25", "blobs-ntsc", "steps")] == [6, 7, 4]
    code, out, _ = run(pose(clips, pose_standin["model"], batch, tmp_path / "out", "--json", "--skip-existing"),
                       capsys)
    assert code == 0 and json.loads(out)["skipped"] == 3


def test_the_sidecar_records_inputs_model_ops_settings_counts_and_timings(clips, pose_standin, tmp_path, capsys):
    out = tmp_path / "render.mp4"
    assert run(pose(clips, pose_standin["model"], clips["mp4_ntsc"], out, "--min-score", "0.5"), capsys)[0] == 0
    sidecar = json.loads((tmp_path / "render.mp4.json").read_text())
    assert sidecar["inputs"]["video"] == str(clips["mp4_ntsc"]) and sidecar["inputs"]["fps"] == "30000/1001"
    assert sidecar["model"]["path"] == str(pose_standin["model"]) and sidecar["model"]["ops"] in ("torchvision",
                                                                                                   "builtin")
    assert sidecar["settings"]["min_score"] == 0.5 and sidecar["settings"]["people"] == "all"
    assert sidecar["output"] == {"path": str(out), "frames": 7, "fps": "30000/1001", "width": 64, "height": 48}
    assert sidecar["people"]["most_people_in_a_frame"] == 3
    assert sidecar["timings"]["frames_per_s"] > 0 and "torch" in sidecar["versions"]


# ------------------------------------------------------------------------------------------- bad inputs


def test_bad_inputs_fail_with_one_line_and_leave_no_output(clips, pose_standin, tmp_path, capsys):
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("this is not a video\n")
    truncated = truncate(clips["mp4_25"], 0.4, tmp_path / "cut.mp4")
    not_torchscript = tmp_path / "weights.torchscript"
    not_torchscript.write_bytes(b"\x80\x04not a zip archive")
    empty_weights = tmp_path / "weights"
    empty_weights.mkdir()
    identity = tmp_path / "identity.torchscript"
    import torch

    torch.jit.script(torch.nn.Identity()).save(str(identity))
    cases = [
        (not_video, ["--pose-model", pose_standin["model"]], "notes.mp4"),
        (truncated, ["--pose-model", pose_standin["model"]], "cut.mp4"),
        (clips["folder"], ["--weights", empty_weights], "magicanimate download-weights --pose"),
        (clips["folder"], ["--pose-model", not_torchscript], "not a TorchScript model"),
        (clips["folder"], ["--pose-model", identity], "not a DensePose model"),
    ]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for video, options, named in cases:
        code, _, err = run(["pose", video, "-o", out_dir / "render.mp4", "--device", "cpu", "-q", *options], capsys)
        assert code == 1, err
        assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and named in err, err
        assert list(out_dir.iterdir()) == []


# --------------------------------------------------------------------------------------------- streaming


def test_frames_are_rendered_and_written_one_at_a_time(clips, pose_standin):
    """Memory stays flat: each frame is written before the next one is decoded."""
    import torch

    from magicanimate_cli.densepose.model import PoseModel
    from magicanimate_cli.densepose.settings import PoseSettings
    from magicanimate_cli.densepose.video import open_video, render_video
    from magicanimate_cli.runtime.progress import Reporter

    events: list[str] = []

    class LoggedClip:
        def __init__(self, clip):
            self.clip, self.width, self.height = clip, clip.width, clip.height

        def __len__(self):
            return len(self.clip)

        def __getattr__(self, name):  # the clip's other attributes (path, frame indices) as they are
            return getattr(self.clip, name)

        def __iter__(self):
            for index, frame in enumerate(self.clip):
                events.append(f"decode {index}")
                yield frame

    class LoggedWriter:
        def write(self, frame):
            events.append(f"write {len([e for e in events if e.startswith('write')])}")

    model = PoseModel.load(pose_standin["model"], torch.device("cpu"))
    stats = render_video(model, PoseSettings(), LoggedClip(open_video(clips["folder"])), [LoggedWriter()], Reporter())
    assert stats.frames == 5
    assert events == [f"{what} {i}" for i in range(5) for what in ("decode", "write")]


# --------------------------------------------------------------------------------- --motion-from-video


def test_animate_motion_from_video_renders_then_animates_and_keeps_the_render(pose_standin, tiny_bundle, tmp_path,
                                                                              capsys):
    video = encode_video(tmp_path / "dance.mp4", moving_blobs(6, 128, 128), 25)
    reference = save_image(tmp_path / "ref.png", make_reference_image(128))
    out, kept = tmp_path / "out" / "anim.mp4", tmp_path / "out" / "dance-pose.mp4"
    code, _, err = run(["animate", reference, video, "-o", out, "--weights", tiny_bundle, "--size", "128",
                        "--steps", "1", "--context-frames", "8", "--context-overlap", "2", "--seed", "3", "-q",
                        "--device", "cpu", "--motion-from-video", "--pose-model", pose_standin["model"],
                        "--save-pose", kept, "--start", "1"], capsys)
    assert code == 0, err
    assert probe(out) == (5, Fraction(25)) and probe(kept) == (5, Fraction(25))
    sidecar = json.loads((tmp_path / "out" / "anim.mp4.json").read_text())
    assert sidecar["inputs"]["motion"] == str(video)
    assert sidecar["motion_from_video"]["saved"] == str(kept) and sidecar["motion_from_video"]["start"] == 1
    assert sidecar["motion_from_video"]["people"]["frames"] == 5
    # the temporary render is gone: only the animation, its sidecar and the kept render remain
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["anim.mp4", "anim.mp4.json", "dance-pose.mp4"]


def test_fuse_long_motion_from_video(pose_standin, tiny_bundle, tmp_path, capsys):
    video = encode_video(tmp_path / "dance.mp4", moving_blobs(8, 128, 128), 25)
    reference = save_image(tmp_path / "ref.png", make_reference_image(128))
    out = tmp_path / "out" / "long.mp4"
    code, _, err = run(["fuse-long", reference, video, "-o", out, "--weights", tiny_bundle, "--size", "128",
                        "--steps", "1", "--context-frames", "8", "--context-overlap", "2", "--seed", "3", "-q",
                        "--device", "cpu", "--motion-from-video", "--pose-model", pose_standin["model"],
                        "--checkpoint", tmp_path / "run.ckpt"], capsys)
    assert code == 0, err
    assert probe(out) == (8, Fraction(25))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["long.mp4", "long.mp4.json"]
    code, _, err = run(["fuse-long", reference, video, "-o", out, "--weights", tiny_bundle, "--size", "128",
                        "--steps", "1", "--context-frames", "8", "--context-overlap", "2", "-q", "--device", "cpu",
                        "--motion-from-video", "--pose-model", pose_standin["model"], "--min-score", "0.5",
                        "--resume", tmp_path / "run.ckpt"], capsys)
    assert code == 1 and "min-score" in err


def test_save_pose_without_motion_from_video_is_refused(tmp_path, capsys):
    code, _, err = run(["animate", tmp_path / "ref.png", tmp_path / "m.mp4", "-o", tmp_path / "o.mp4",
                        "--save-pose", tmp_path / "p.mp4"], capsys)
    assert code == 1 and "--motion-from-video" in err
