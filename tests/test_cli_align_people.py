"""`--align` and `pose --align-to` with several people, through the real commands, with the TorchScript DensePose
stand-in (tests/pose_standin.py: one person per coloured block) finding the reference people."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from magicanimate_cli.engine.pipeline import Animator
from magicanimate_cli.motion.align import box_iou
from magicanimate_cli.densepose.model import PoseModel
from magicanimate_cli.densepose.render import render_frame
from magicanimate_cli.motion.fit import Box
from magicanimate_cli.motion.people import frame_people
from conftest import run_cli as run
from media_helpers import encode_video, save_image
from pose_standin import GREEN, RED, blob_frame

SIZE = 128
FAST = ["--size", str(SIZE), "--steps", "1", "--context-frames", "4", "--context-overlap", "1", "--seed", "5",
        "--quiet", "--device", "cpu"]
BIG, SMALL = (12, 20, 36, 96), (100, 70, 20, 50)  # two people of a 160² photo: (x, y, w, h)


class Captured(Exception):
    """Raised once the engine has its inputs: the denoising itself is not under test."""


@pytest.fixture
def engine_frames(monkeypatch):
    seen: list[np.ndarray] = []

    def sample(self, reference, motion, *rest, **kw):
        seen.append(np.array(motion))
        raise Captured

    monkeypatch.setattr(Animator, "sample", sample)
    return seen


@pytest.fixture(scope="module")
def duet(tmp_path_factory, pose_standin):
    """A two-person render (the stand-in's people: green on the left, red on the right, other sizes and places
    than the photos'), and photos of two people: the big one left, and the same photo with the two swapped."""
    root = tmp_path_factory.mktemp("duet")
    model = PoseModel.load(pose_standin["model"], torch.device("cpu"))
    blobs = [{GREEN: (8 + i, 40, 24, 60), RED: (70 - i, 12, 30, 80)} for i in range(5)]
    frames = [render_frame(model.detect(blob_frame(SIZE, SIZE, b)), SIZE, SIZE, 0.5, "all")[0] for b in blobs]
    swapped = {RED: (160 - BIG[0] - BIG[2], BIG[1], BIG[2], BIG[3]),
               GREEN: (160 - SMALL[0] - SMALL[2], SMALL[1], SMALL[2], SMALL[3])}
    return {"motion": encode_video(root / "duet.mp4", frames, 25), "model": pose_standin["model"],
            "photo": save_image(root / "two.png", blob_frame(160, 160, {RED: BIG, GREEN: SMALL})),
            "swapped": save_image(root / "swapped.png", blob_frame(160, 160, swapped)),
            "one": save_image(root / "one.png", blob_frame(160, 160, {RED: BIG}))}


def working_box(box: tuple[int, int, int, int]) -> Box:
    """A box of the 160² photo in the 128² working frame."""
    return Box(*(round(v * SIZE / 160) for v in box))


def animate(duet, tiny_bundle, tmp_path, reference, *extra):
    return ["animate", reference, duet["motion"], "-o", tmp_path / "out.mp4", "--weights", tiny_bundle,
            "--pose-model", duet["model"], "--min-score", "0.5", *FAST, "--align", *extra]


def people_boxes(frame: np.ndarray) -> tuple[Box, ...]:
    return frame_people(frame).boxes


@pytest.mark.parametrize("photo", ["photo", "swapped"])
def test_each_dancer_lands_on_the_reference_person_at_its_place_left_to_right(duet, tiny_bundle, tmp_path, capsys,
                                                                             engine_frames, photo):
    with pytest.raises(Captured):
        run(animate(duet, tiny_bundle, tmp_path, duet[photo], "--debug"), capsys)
    left, right = sorted(people_boxes(engine_frames[0][0]), key=lambda b: b.left)
    big, small = working_box(BIG), working_box(SMALL)
    if photo == "swapped":  # the photo mirrored: the small person is now on the left
        big = Box(SIZE - big.right, big.top, big.width, big.height)
        small = Box(SIZE - small.right, small.top, small.width, small.height)
        big, small = small, big  # by place: left, right
    assert box_iou(left, big) >= 0.9 and box_iou(right, small) >= 0.9, (left, right, big, small)


def test_the_sidecar_records_the_pairs_the_fits_and_the_people_per_frame(duet, tiny_bundle, tmp_path, capsys):
    code, stdout, err = run(animate(duet, tiny_bundle, tmp_path, duet["photo"], "--preview-only", "--json"), capsys)
    assert code == 0, err
    record = json.loads(stdout)["alignment"]
    assert record["method"] == "people" and record["people"]["pairs"] == [[1, 1], [2, 2]]
    assert record["people_per_frame"] == [[0, 4, 2]] and record["drawing_order"] in ([1, 2], [2, 1])
    for fit in record["fits"]:
        assert box_iou(Box(**fit["motion_box_after"]), Box(**fit["reference_box"])) >= 0.9
    with Image.open(tmp_path / "out.mp4.preview.png") as preview:
        colours = {tuple(c) for c in np.asarray(preview.convert("RGB")).reshape(-1, 3)}
    assert (64, 255, 96) in colours and (64, 160, 255) in colours  # person 1 green, person 2 blue


def test_align_pairs_crosses_the_pairing(duet, tiny_bundle, tmp_path, capsys):
    code, stdout, err = run(animate(duet, tiny_bundle, tmp_path, duet["photo"], "--align-pairs", "1:2,2:1",
                                    "--preview-only", "--json"), capsys)
    assert code == 0, err
    record = json.loads(stdout)["alignment"]
    assert record["people"]["pairs"] == [[1, 2], [2, 1]] and record["people"]["paired_by"] == "--align-pairs"
    fits = {fit["motion_person"]: fit for fit in record["fits"]}
    assert box_iou(Box(**fits[1]["motion_box_after"]), working_box(SMALL)) >= 0.9


def test_a_motion_person_without_a_partner_follows_its_nearest_paired_neighbour_with_one_warning(
        duet, tiny_bundle, tmp_path, capsys):
    argv = [a for a in animate(duet, tiny_bundle, tmp_path, duet["one"], "--preview-only") if a != "--quiet"]
    code, _, err = run(argv, capsys)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "the motion shows 2 people and the reference 1" in line]
    assert len(warnings) == 1 and "moves with person" in warnings[0], err


@pytest.mark.parametrize("pairs,error", [("1:3", "reference person 3"), ("1-2", "M:R"), ("1:1,1:2", "once")])
def test_bad_align_pairs_fail_with_one_line(duet, tiny_bundle, tmp_path, capsys, pairs, error):
    code, _, err = run(animate(duet, tiny_bundle, tmp_path, duet["photo"], "--align-pairs", pairs, "--preview-only"),
                       capsys)
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and error in lines[0] and "--align-pairs" in lines[0], err
    assert not (tmp_path / "out.mp4.preview.png").exists()


def test_pose_align_to_pairs_the_people_of_the_render_like_animate(duet, tmp_path, capsys):
    video = tmp_path / "video"
    video.mkdir()
    for index in range(3):
        save_image(video / f"{index:03d}.png",
                   blob_frame(SIZE, SIZE, {GREEN: (8 + index, 40, 24, 60), RED: (70, 12, 30, 80)}))
    photo = save_image(tmp_path / "photo.png", blob_frame(SIZE, SIZE, {RED: (10, 16, 29, 77), GREEN: (80, 56, 16, 38)}))
    out = tmp_path / "aligned"
    code, _, err = run(["pose", video, "-o", out, "--pose-model", duet["model"], "--device", "cpu", "--quiet",
                        "--min-score", "0.5", "--align-to", photo], capsys)
    assert code == 0, err
    record = json.loads((tmp_path / "aligned.json").read_text())
    assert record["alignment"]["people"]["pairs"] == [[1, 1], [2, 2]]
    assert record["people"]["people_per_frame"] == [[0, 2, 2]]
    first = np.asarray(Image.open(sorted(out.glob("*.png"))[0]).convert("RGB"))
    left, right = sorted(people_boxes(first), key=lambda b: b.left)
    assert box_iou(left, Box(10, 16, 29, 77)) >= 0.85 and box_iou(right, Box(80, 56, 16, 38)) >= 0.85


def test_the_preview_the_alignment_and_the_run_decode_the_motion_once(duet, tiny_bundle, tmp_path, capsys,
                                                                     engine_frames, monkeypatch):
    from magicanimate_cli.media.reader import MotionClip

    decoded: list[str] = []
    original = MotionClip.__iter__

    def counting(self):
        decoded.append(str(self.path))
        return original(self)

    monkeypatch.setattr(MotionClip, "__iter__", counting)
    with pytest.raises(Captured):
        run(animate(duet, tiny_bundle, tmp_path, duet["photo"], "--preview", tmp_path / "look.png", "--debug"),
            capsys)
    assert decoded == [str(duet["motion"])] and (tmp_path / "look.png").is_file() and len(engine_frames) == 1


def test_align_pairs_chooses_the_reference_person_of_a_motion_with_one_person(duet, tiny_bundle, tmp_path, capsys,
                                                                            pose_standin):
    model = PoseModel.load(pose_standin["model"], torch.device("cpu"))
    solo = encode_video(tmp_path / "solo.mp4", [render_frame(model.detect(blob_frame(SIZE, SIZE, {GREEN: (
        40, 30, 24, 60)})), SIZE, SIZE, 0.5, "all")[0]] * 2, 25)
    argv = [a if a != duet["motion"] else solo for a in animate(duet, tiny_bundle, tmp_path, duet["photo"],
                                                               "--align-pairs", "1:2", "--preview-only", "--json")]
    code, stdout, err = run(argv, capsys)
    assert code == 0, err
    record = json.loads(stdout)["alignment"]
    assert record["people"]["pairs"] == [[1, 2]]
    assert box_iou(Box(**record["fits"][0]["motion_box_after"]), working_box(SMALL)) >= 0.9


def test_with_motion_from_video_the_models_instances_tell_touching_dancers_apart(duet, tiny_bundle, tmp_path,
                                                                               capsys, engine_frames):
    # the red dancer stands in front of the green one: the render's labels show one body, the model two people
    frame = blob_frame(SIZE, SIZE, {GREEN: (30, 30, 27, 72), RED: (52, 40, 20, 50)})
    model = PoseModel.load(duet["model"], torch.device("cpu"))
    assert len(frame_people(render_frame(model.detect(frame), SIZE, SIZE, 0.5, "all")[0])) == 1
    video = encode_video(tmp_path / "touching.mp4", [frame] * 3, 25)
    argv = [a if a != duet["motion"] else video for a in animate(duet, tiny_bundle, tmp_path, duet["photo"],
                                                                "--motion-from-video")]
    code, stdout, err = run([*argv, "--preview-only", "--json"], capsys)
    assert code == 0, err
    record = json.loads(stdout)["alignment"]
    assert record["people"]["found_by"] == "the model's instances" and record["people"]["pairs"] == [[1, 1], [2, 2]]
    assert record["people_per_frame"] == [[0, 2, 2]]
    for fit, partner in zip(record["fits"], (BIG, SMALL)):  # the green one is partly hidden: 25 px of its 27 show
        assert box_iou(Box(**fit["motion_box_after"]), working_box(partner)) >= 0.85
    with pytest.raises(Captured):
        run([*argv, "--debug"], capsys)
    boxes = sorted(people_boxes(engine_frames[0][0]), key=lambda b: b.left)
    assert len(boxes) == 2
    assert box_iou(boxes[0], working_box(BIG)) >= 0.85 and box_iou(boxes[1], working_box(SMALL)) >= 0.9


def test_fuse_long_moves_each_dancer_as_animate_does(duet, tiny_bundle, tmp_path, capsys, engine_frames, monkeypatch):
    import magicanimate_cli.long.job as long_job

    def long_sample(animator, reference, motion, *rest, **kw):
        engine_frames.append(np.stack([motion[i] for i in range(len(motion))]))
        raise Captured

    monkeypatch.setattr(long_job, "sample_long", long_sample)
    for command in ("animate", "fuse-long"):
        argv = animate(duet, tiny_bundle, tmp_path / command, duet["photo"], "--debug")
        with pytest.raises(Captured):
            run([command, *argv[1:]], capsys)
    animate_frames, long_frames = engine_frames
    assert np.array_equal(animate_frames, long_frames[:len(animate_frames)])
