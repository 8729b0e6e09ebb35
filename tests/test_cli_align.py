"""`--align`, `--align-frame`, `--preview` and `--preview-only` through the real commands, with the TorchScript
DensePose stand-in (tests/pose_standin.py) finding the reference person and the tiny official-layout model."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from conftest import run_cli as run
from media_helpers import encode_video, save_image
from PIL import Image
from pose_standin import LABELS, RED, blob_frame

from magicanimate_cli.engine.pipeline import Animator
from magicanimate_cli.media.reader import open_motion
from magicanimate_cli.motion.align import box_iou, decode_labels, majority_filter, person_box
from magicanimate_cli.densepose.model import PoseModel
from magicanimate_cli.densepose.render import render_frame
from magicanimate_cli.motion.fit import Box, fit_motion_frame, plan_fit
from magicanimate_cli.motion.palette import colourise

SIZE = 128
FAST = ["--size", str(SIZE), "--steps", "1", "--context-frames", "4", "--context-overlap", "1", "--seed", "5",
        "--quiet", "--device", "cpu"]
REFERENCE_BLOCK = (10, 15, 40, 100)  # the red "person" of a 160² photo: at (8, 12), 32×80 in the working frame


def rendered_person(model: PoseModel, box: tuple[int, int, int, int]) -> np.ndarray:
    """The render `pose` makes of a SIZE² frame whose one person (the stand-in's red block) fills box (x, y, w, h)."""
    return render_frame(model.detect(blob_frame(SIZE, SIZE, {RED: box})), SIZE, SIZE, 0.8, "all")[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory, pose_standin, tiny_bundle):
    root = tmp_path_factory.mktemp("align")
    reference = save_image(root / "ref.png", blob_frame(160, 160, {RED: REFERENCE_BLOCK}))
    nobody = save_image(root / "nobody.png", blob_frame(160, 160, {}))
    # the motion's person: elsewhere and larger (100 high rather than 80), drifting right
    model = PoseModel.load(pose_standin["model"], torch.device("cpu"))
    motion = [rendered_person(model, (60 + 2 * i, 10, 40, 100)) for i in range(6)]
    empty_first = [colourise(np.zeros((SIZE, SIZE), np.uint8)), *motion[1:]]
    return {"root": root, "ref": reference, "nobody": nobody, "weights": tiny_bundle,
            "model": pose_standin["model"],
            "motion": encode_video(root / "motion.mp4", motion, 25),
            "empty_first": encode_video(root / "empty-first.mp4", empty_first, 25)}


def args(files, out, *extra, reference=None, motion=None, command="animate"):
    return [command, reference or files["ref"], motion or files["motion"], "-o", out, "--weights", files["weights"],
            "--pose-model", files["model"], *FAST, *extra]


class Captured(Exception):
    """Raised by `stop_at_the_engine` once the engine has its inputs: the rest of the run is not under test
    (runs that raise it pass --debug, so that it reaches the test rather than becoming a one-line error)."""


@pytest.fixture
def engine_motion(monkeypatch):
    """The motion frames `Animator.sample` receives, as the engine sees them (the run goes on)."""
    seen: list[np.ndarray] = []
    original = Animator.sample

    def spy(self, reference, motion, *rest, **kw):
        seen.append(np.array(motion))
        return original(self, reference, motion, *rest, **kw)

    monkeypatch.setattr(Animator, "sample", spy)
    return seen


@pytest.fixture
def stop_at_the_engine(monkeypatch):
    """The motion frames animate's and fuse-long's samplers receive; the run stops there (no denoising)."""
    import magicanimate_cli.long.job as long_job

    seen: list[np.ndarray] = []

    def animate_sample(self, reference, motion, *rest, **kw):
        seen.append(np.array(motion))
        raise Captured

    def long_sample(animator, reference, motion, *rest, **kw):
        seen.append(np.stack([motion[i] for i in range(len(motion))]))
        raise Captured

    monkeypatch.setattr(Animator, "sample", animate_sample)
    monkeypatch.setattr(long_job, "sample_long", long_sample)
    return seen


def decoded(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_align_puts_the_motions_person_on_the_reference_person_and_records_the_transform(files, tmp_path, capsys,
                                                                                         engine_motion):
    out = tmp_path / "aligned.mp4"
    code, _, err = run(args(files, out, "--align"), capsys)
    assert code == 0, err
    record = json.loads((tmp_path / "aligned.mp4.json").read_text())["alignment"]
    reference_box = Box(**record["reference_box"])
    first = person_box(majority_filter(decode_labels(engine_motion[0][0])))  # read as the aligner reads a render
    assert box_iou(first, reference_box) >= 0.9
    assert box_iou(Box(**record["motion_box_before"]), reference_box) < 0.3  # it did not sit there before
    assert record["anchor_frame"] == 0 and record["method"] == "parts" and record["parts"] == [LABELS[RED]]
    assert record["transform"]["scale"] == pytest.approx(80 / 100, rel=0.05)
    assert record["anchors"][0]["part"] == LABELS[RED] and record["residual_px"] < 2
    assert Box(**record["motion_box_after"]) == first


def test_without_align_the_engine_gets_the_fitted_frames_unchanged_with_or_without_a_preview(files, tmp_path,
                                                                                            capsys, stop_at_the_engine):
    # the engine is deterministic in its inputs, so equal inputs are the same video, bit for bit
    for extra in ([], ["--preview", tmp_path / "look.png"]):
        with pytest.raises(Captured):
            run(args(files, tmp_path / "plain.mp4", *extra, "--debug"), capsys)
    clip = open_motion(files["motion"])
    frames = list(clip)
    fit = plan_fit(clip.width, clip.height, SIZE, SIZE, "pad", tuple(int(c) for c in frames[0][0, 0]))
    expected = np.stack([fit_motion_frame(f, fit) for f in frames])
    assert np.array_equal(stop_at_the_engine[0], expected) and np.array_equal(stop_at_the_engine[1], expected)
    assert (tmp_path / "look.png").is_file()


def test_preview_only_writes_the_preview_and_constructs_no_diffusion_model(files, tmp_path, capsys, monkeypatch):
    def refuse(*_, **__):
        raise AssertionError("a diffusion model was constructed")

    monkeypatch.setattr(Animator, "from_pretrained", refuse)
    monkeypatch.setattr(Animator, "__init__", refuse)
    out = tmp_path / "out.mp4"
    code, stdout, err = run(args(files, out, "--align", "--preview-only", "--json"), capsys)
    assert code == 0, err
    summary = json.loads(stdout)
    preview = tmp_path / "out.mp4.preview.png"
    assert summary["preview"] == str(preview) and summary["alignment"]["method"] == "parts"
    assert not out.exists() and not (tmp_path / "out.mp4.json").exists()
    with Image.open(preview) as picture:  # three rows (before, after, motion) of five frames (0, 1, 2, 4, 5)
        assert picture.width > 4 * picture.height / 3
    code, _, err = run(args(files, out, "--preview-only", "--preview", tmp_path / "two-rows.png"), capsys)
    assert code == 0, err
    with Image.open(tmp_path / "two-rows.png") as two, Image.open(preview) as three:
        assert two.width == three.width and two.height < three.height


def test_a_batch_writes_one_preview_beside_each_output(files, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(Animator, "from_pretrained", lambda *_, **__: pytest.fail("a model was loaded"))
    refs, motions = tmp_path / "refs", tmp_path / "motions"
    refs.mkdir(), motions.mkdir()
    for name in ("a.png", "b.png"):
        (refs / name).write_bytes(files["ref"].read_bytes())
    (motions / "m.mp4").write_bytes(files["motion"].read_bytes())
    code, _, err = run(["animate", refs, motions, "-o", tmp_path / "out", "--weights", files["weights"],
                        "--pose-model", files["model"], *FAST, "--align", "--preview-only"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a-m.mp4.preview.png", "b-m.mp4.preview.png"]


def test_fuse_long_aligns_like_animate(files, tmp_path, capsys, stop_at_the_engine):
    for command in ("animate", "fuse-long"):
        with pytest.raises(Captured):
            run(args(files, tmp_path / f"{command}.mp4", "--align", "--debug", command=command), capsys)
    animate_frames, long_frames = stop_at_the_engine
    assert np.array_equal(animate_frames, long_frames[:len(animate_frames)])
    code, stdout, _ = run(args(files, tmp_path / "a.mp4", "--align", "--preview-only", "--json"), capsys)
    alignment = json.loads(stdout)["alignment"]
    assert box_iou(person_box(decode_labels(long_frames[0])), Box(**alignment["reference_box"])) >= 0.9
    code, stdout, _ = run(args(files, tmp_path / "l.mp4", "--align", "--preview-only", "--json", command="fuse-long"),
                          capsys)
    assert code == 0 and json.loads(stdout)["alignment"] == alignment
    assert (tmp_path / "l.mp4.preview.png").is_file() and not (tmp_path / "l.mp4").exists()


@pytest.mark.parametrize("case", ["reference without a person", "motion without a person in the anchor frame",
                                  "anchor frame past the end", "DensePose model missing"])
def test_bad_alignment_inputs_fail_with_one_line_naming_the_file_and_leave_nothing(files, tmp_path, capsys, case):
    out = tmp_path / "out.mp4"
    preview = tmp_path / "look.png"
    extra = ["--align", "--preview", preview]
    if case == "reference without a person":
        argv, named = args(files, out, *extra, reference=files["nobody"]), "nobody.png"
    elif case == "motion without a person in the anchor frame":
        argv, named = args(files, out, *extra, motion=files["empty_first"]), "empty-first.mp4"
    elif case == "anchor frame past the end":
        argv, named = args(files, out, *extra, "--align-frame", "6"), "motion.mp4"
    else:
        argv = [a for a in args(files, out, *extra) if a not in ("--pose-model", files["model"])]
        named = "densepose_r50_fpn_dl.torchscript"
    code, stdout, err = run(argv, capsys)
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and named in lines[0] and "--align" in lines[0], err
    assert not out.exists() and not preview.exists() and not (tmp_path / "out.mp4.json").exists()


def test_pose_align_to_writes_a_render_whose_person_covers_the_reference_person(files, tmp_path, capsys):
    video = tmp_path / "video"
    video.mkdir()
    for index in range(3):
        save_image(video / f"{index:03d}.png", blob_frame(SIZE, SIZE, {RED: (70 + 3 * index, 20, 40, 100)}))
    reference = save_image(tmp_path / "photo.png", blob_frame(SIZE, SIZE, {RED: (10, 30, 32, 80)}))
    out = tmp_path / "aligned"
    code, _, err = run(["pose", video, "-o", out, "--pose-model", files["model"], "--device", "cpu", "--quiet",
                        "--align-to", reference], capsys)
    assert code == 0, err
    record = json.loads((tmp_path / "aligned.json").read_text())["alignment"]
    first = np.asarray(Image.open(sorted(out.glob("*.png"))[0]).convert("RGB"))
    assert box_iou(person_box(decode_labels(first)), Box(**record["reference_box"])) >= 0.9
    assert record["reference"] == str(reference) and record["transform"]["scale"] == pytest.approx(0.8, rel=0.05)


def test_align_works_on_the_render_of_motion_from_video(files, tmp_path, capsys, stop_at_the_engine):
    video = encode_video(tmp_path / "ordinary.mp4",
                         [blob_frame(SIZE, SIZE, {RED: (70 + 2 * i, 10, 40, 100)}) for i in range(4)], 25)
    with pytest.raises(Captured):
        run(args(files, tmp_path / "out.mp4", "--motion-from-video", "--align", "--debug", motion=video), capsys)
    code, stdout, err = run(args(files, tmp_path / "out.mp4", "--motion-from-video", "--align", "--preview-only",
                                 "--json", motion=video), capsys)
    assert code == 0, err
    reference_box = Box(**json.loads(stdout)["alignment"]["reference_box"])
    assert box_iou(person_box(decode_labels(stop_at_the_engine[0][0])), reference_box) >= 0.9
