"""`--smooth`: steady DensePose renders (pose/track.py), through `magicanimate pose` and `--motion-from-video`
with the TorchScript stand-in, and the smoothing benchmark's core on a short clip."""

from __future__ import annotations

import importlib.util
import json
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from conftest import run_cli as run
from media_helpers import encode_video, frame_folder, save_image
from pose_standin import GREEN, LABELS, RED, blob_frame, moving_blobs

from magicanimate_cli.demo.inputs import make_reference_image
from magicanimate_cli.media.reader import open_motion
from magicanimate_cli.densepose.model import Detections, PoseModel
from magicanimate_cli.densepose.render import render_frame
from magicanimate_cli.densepose.track import (IdentityTracker, Observation, SmoothSettings, SteadyRenderer,
                                                     fit_box)
from magicanimate_cli.motion.palette import PART_COLOURS

ROOT = Path(__file__).resolve().parent.parent
RED_COLOUR = tuple(int(v) for v in PART_COLOURS[LABELS[RED]])



def red_walks(count: int, missing: set[int] = frozenset()) -> list[np.ndarray]:
    """Red sliding right by 2 px a frame and green standing still; red is missed on the `missing` frames."""
    return [blob_frame(64, 48, {GREEN: (40, 8, 16, 30), **({} if t in missing else {RED: (2 + 2 * t, 6, 18, 30)})})
            for t in range(count)]


def pose(model, video, output, *extra):
    return ["pose", video, "-o", output, "--pose-model", model, "--device", "cpu", "-q", *extra]


def has_red(frame: np.ndarray) -> bool:
    return bool((frame == RED_COLOUR).all(axis=2).any())


def benchmark():
    spec = importlib.util.spec_from_file_location("smoothing_benchmark", ROOT / "benchmarks" / "smoothing.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------------ off and on


def test_without_smooth_or_with_no_smooth_the_render_is_the_per_frame_render_bit_for_bit(pose_standin, tmp_path,
                                                                                          capsys):
    clip = frame_folder(tmp_path / "clip", moving_blobs(6))
    plain, off = tmp_path / "plain", tmp_path / "off"
    assert run(pose(pose_standin["model"], clip, plain), capsys)[0] == 0
    assert run(pose(pose_standin["model"], clip, off, "--no-smooth"), capsys)[0] == 0
    model = PoseModel.load(pose_standin["model"], torch.device("cpu"))
    expected = np.stack([render_frame(model.detect(f), 64, 48, 0.8, "all")[0] for f in open_motion(clip)])
    assert np.array_equal(open_motion(plain).read_all(), expected)
    assert np.array_equal(open_motion(off).read_all(), expected)
    assert json.loads((tmp_path / "plain.json").read_text())["settings"]["smooth"] is None
    # the steady path draws through the same renderer: with nothing to combine or fill it gives the same frames
    bare = tmp_path / "bare"
    assert run(pose(pose_standin["model"], clip, bare, "--smooth", "--smooth-radius", "0", "--fill-gap", "0"),
               capsys)[0] == 0
    assert np.array_equal(open_motion(bare).read_all(), expected)


def test_smooth_fills_a_missed_person_and_the_sidecar_records_it(pose_standin, tmp_path, capsys):
    clip = frame_folder(tmp_path / "clip", red_walks(8, missing={3, 4}))
    plain, steady = tmp_path / "plain", tmp_path / "steady.mp4"
    assert run(pose(pose_standin["model"], clip, plain), capsys)[0] == 0
    code, _, err = run(pose(pose_standin["model"], clip, tmp_path / "steady", "--smooth"), capsys)
    assert code == 0, err
    assert [has_red(f) for f in open_motion(plain).read_all()] == [t not in (3, 4) for t in range(8)]
    filled = open_motion(tmp_path / "steady").read_all()
    assert all(has_red(f) for f in filled)
    # the filled red sits between its neighbours: its left edge moved on by 2 px a frame
    left = [int(np.nonzero((f == RED_COLOUR).all(axis=2).any(axis=0))[0][0]) for f in filled]
    assert left[2] < left[3] < left[4] < left[5]
    assert run(pose(pose_standin["model"], clip, steady, "--smooth", "--smooth-radius", "1", "--fill-gap", "2"),
               capsys)[0] == 0
    sidecar = json.loads((tmp_path / "steady.mp4.json").read_text())
    assert sidecar["settings"]["smooth"] == {"radius": 1, "fill_gap": 2, "match_iou": 0.3}
    assert sidecar["people"]["frames_filled"] == 2 and sidecar["people"]["filled_at"] == [[3, 4]]
    assert sidecar["people"]["without_people_at"] == []


def test_a_miss_longer_than_fill_gap_stays_empty_and_is_reported(pose_standin, tmp_path, capsys):
    frames = [blob_frame(64, 48, {} if t in (2, 3, 4) else {RED: (10 + t, 6, 18, 30)}) for t in range(7)]
    clip = frame_folder(tmp_path / "clip", frames)
    out = tmp_path / "out.mp4"
    assert run(pose(pose_standin["model"], clip, out, "--smooth", "--fill-gap", "2"), capsys)[0] == 0
    people = json.loads((tmp_path / "out.mp4.json").read_text())["people"]
    assert people["frames_without_people"] == 3 and people["without_people_at"] == [[2, 4]]


def test_smooth_options_that_cannot_work_are_refused_in_one_line(pose_standin, tmp_path, capsys):
    clip = frame_folder(tmp_path / "clip", moving_blobs(2))
    cases = [(["--smooth-radius", "1"], "--smooth-radius"), (["--smooth", "--smooth-radius", "99"], "--smooth-radius"),
             (["--smooth", "--fill-gap", "-1"], "--fill-gap")]
    for options, named in cases:
        code, _, err = run(pose(pose_standin["model"], clip, tmp_path / "out.mp4", *options), capsys)
        assert code == 1 and len(err.strip().splitlines()) == 1 and named in err, err
        assert not (tmp_path / "out.mp4").exists()
    code, _, err = run(["animate", tmp_path / "r.png", clip, "-o", tmp_path / "o.mp4", "--smooth"], capsys)
    assert code == 1 and "--motion-from-video" in err


def test_animate_motion_from_video_animates_along_the_steady_render(pose_standin, tiny_bundle, tmp_path, capsys):
    video = encode_video(tmp_path / "walk.mp4", [np.kron(f, np.ones((2, 2, 1), np.uint8))[:, :128]
                                                 for f in red_walks(5, missing={2})], 25)
    reference = save_image(tmp_path / "ref.png", make_reference_image(128))
    out, kept = tmp_path / "out" / "anim.mp4", tmp_path / "out" / "walk-pose"
    code, _, err = run(["animate", reference, video, "-o", out, "--weights", tiny_bundle, "--size", "128",
                        "--steps", "1", "--context-frames", "8", "--context-overlap", "2", "--seed", "3", "-q",
                        "--device", "cpu", "--motion-from-video", "--pose-model", pose_standin["model"],
                        "--save-pose", kept, "--smooth"], capsys)
    assert code == 0, err
    assert all(has_red(f) for f in open_motion(kept).read_all())
    record = json.loads((tmp_path / "out" / "anim.mp4.json").read_text())["motion_from_video"]
    assert record["settings"]["smooth"] == SmoothSettings().record()
    assert record["people"]["filled_at"] == [[2, 2]] and open_motion(out).fps == Fraction(25)


# ------------------------------------------------------------------------------------------- the parts


def test_the_box_fit_follows_a_steady_or_turning_motion_without_lag_even_with_a_one_sided_window():
    steady = lambda t: torch.tensor([10.0 + 7 * t, 20.0 - 3 * t, 50.0 + 7 * t, 90.0 - 3 * t])  # noqa: E731
    turning = lambda t: steady(t) + torch.tensor([4.0, 0, 4.0, 0]) * t * t  # accelerating sideways  # noqa: E731
    for path in (steady, turning):
        for offsets in ([-3, -2, -1, 0, 1, 2, 3], [0, 1, 2, 3], [-3, -2, -1, 0], [-2, 0, 2]):
            assert torch.allclose(fit_box(offsets, [path(d) for d in offsets], 3), path(0), atol=1e-3)
    assert torch.allclose(fit_box([-1, 1], [steady(-1), steady(1)], 3), steady(0), atol=1e-3)  # two: a line


def test_the_box_fit_averages_out_jitter_around_a_steady_box():
    box = torch.tensor([10.0, 20.0, 50.0, 90.0])
    jitter = [torch.tensor([s * 3.0, -s * 3.0, s * 2.0, 0.0]) for s in (1, -1, 1, -1, 1, -1, 1)]
    fitted = fit_box(list(range(-3, 4)), [box + j for j in jitter], 3)
    assert (fitted - box).abs().max() < 0.5 * 3.0


def test_people_keep_their_ids_by_box_overlap_whatever_order_the_model_lists_them_in():
    def person(x: float) -> Observation:
        return Observation(torch.tensor([x, 0.0, x + 20, 40.0]), 0.9, 0, torch.zeros(2, 4, 4), torch.zeros(25, 4, 4))

    tracker = IdentityTracker(0.3, 3)
    first = tracker.assign(0, [person(0), person(100)])
    later = tracker.assign(1, [person(103), person(4)])
    assert {k: float(v.box[0]) for k, v in first.items()} == {0: 0.0, 1: 100.0}
    assert {k: float(v.box[0]) for k, v in later.items()} == {0: 4.0, 1: 103.0}
    assert set(tracker.assign(5, [person(4)])) == {0}  # missed 3 frames (the gap): still the same person
    assert set(tracker.assign(10, [person(4)])) == {2}  # missed 4: someone new


def test_frames_are_drawn_a_bounded_look_ahead_behind_the_input():
    settings = SmoothSettings(radius=2, fill_gap=1)
    decoded: list[int] = []

    def detections():
        for t in range(10):
            decoded.append(t)
            yield Detections(torch.tensor([[4.0 + t, 4, 20 + t, 30]]), torch.tensor([0.9]),
                             torch.randn(1, 2, 4, 4), torch.randn(1, 25, 4, 4))

    renderer = SteadyRenderer(settings, 40, 32, 0.8, "all")
    for index, _ in enumerate(renderer.frames(detections())):
        assert len(decoded) == min(index + settings.look_ahead + 1, 10)
        assert len(renderer.seen) <= 2 * settings.look_ahead + 1
    assert index == 9


def test_on_the_benchmark_smoothing_lowers_label_error_and_flicker_and_fills_missed_frames():
    bench = benchmark()
    for motion in (bench.SLOW, bench.FAST):
        result = bench.run(motion, frames=24, size=128, seed=1, noise=bench.Noise(drop=0.3))
        plain, steady = result["plain"], result["smooth"]
        assert result["missed"] > 0 and plain["empty_frames"] == result["missed"]
        assert steady["empty_frames"] == 0
        assert steady["label_error"] < 0.8 * plain["label_error"]
        assert steady["flicker"] < plain["flicker"]
        assert steady["box_jitter_px"] < plain["box_jitter_px"]


def test_fuse_long_smooths_too_and_a_checkpoint_resumes_only_with_the_same_smoothing(pose_standin, tiny_bundle,
                                                                                      tmp_path, capsys):
    video = encode_video(tmp_path / "walk.mp4", [np.kron(f, np.ones((2, 2, 1), np.uint8))[:, :128]
                                                 for f in red_walks(8, missing={3})], 25)
    reference = save_image(tmp_path / "ref.png", make_reference_image(128))
    common = [reference, video, "-o", tmp_path / "out" / "long.mp4", "--weights", tiny_bundle, "--size", "128",
              "--steps", "1", "--context-frames", "8", "--context-overlap", "2", "--seed", "3", "-q",
              "--device", "cpu", "--motion-from-video", "--pose-model", pose_standin["model"]]
    code, _, err = run(["fuse-long", *common, "--smooth", "--checkpoint", tmp_path / "run.ckpt"], capsys)
    assert code == 0, err
    record = json.loads((tmp_path / "out" / "long.mp4.json").read_text())["motion_from_video"]
    assert record["people"]["filled_at"] == [[3, 3]]
    code, _, err = run(["fuse-long", *common, "--resume", tmp_path / "run.ckpt"], capsys)
    assert code == 1 and "smooth" in err
