"""`magicanimate prepare-data`, through the real command on synthetic clips and photos, with the TorchScript
DensePose stand-in (tests/pose_standin.py) loaded from a file exactly as the released model is."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli as run
from magicanimate_cli.dataset.layout import DataLayout
from magicanimate_cli.motion.palette import PART_COLOURS
from magicanimate_cli.media.reader import open_motion
from media_helpers import encode_video, frame_folder, save_image
from pose_standin import GREEN, RED, blob_frame, moving_blobs

PALETTE = {tuple(int(v) for v in c) for c in PART_COLOURS}


def sometimes_empty(count: int, people_at: set[int]) -> list[np.ndarray]:
    """A clip whose person (a red block) is there only in the frames `people_at`."""
    return [blob_frame(64, 48, {RED: (10, 6, 20, 30)} if i in people_at else {}) for i in range(count)]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """Clips at several depths, a TikTok-style clip, an undecodable file, a clip without a person, photos."""
    root = tmp_path_factory.mktemp("prepare-source")
    clips = root / "clips"
    (clips / "nested").mkdir(parents=True)
    encode_video(clips / "a.mp4", moving_blobs(6), 25)
    encode_video(clips / "nested" / "b.mp4", moving_blobs(5), Fraction(30000, 1001))
    frame_folder(clips / "00001" / "images", moving_blobs(4))
    frame_folder(clips / "00001" / "masks", [blob_frame(64, 48, {})] * 4)  # TikTok's other folders: not clips
    (clips / "broken.mp4").write_bytes(b"this is not a video\n")
    encode_video(clips / "nobody.mp4", sometimes_empty(6, {0}), 25)
    photos = root / "photos"
    photos.mkdir()
    save_image(photos / "p1.png", blob_frame(40, 56, {GREEN: (8, 8, 20, 40)}))
    save_image(photos / "empty-room.png", blob_frame(40, 56, {}))
    return root


def prepare(source: Path, data: Path, model: Path, *extra) -> list:
    return ["prepare-data", source, "-o", data, "--pose-model", model, "--device", "cpu", "-q", *extra]


@pytest.fixture(scope="module")
def prepared(source, pose_standin, tmp_path_factory) -> dict:
    data = tmp_path_factory.mktemp("prepared") / "DATA"
    from conftest import cli_exit_code

    code = cli_exit_code(prepare(source / "clips", data, pose_standin["model"], "--images", source / "photos"))
    assert code == 0
    return {"data": data, "manifest": json.loads((data / "manifest.json").read_text())}


def frames_of(path: Path) -> np.ndarray:
    return open_motion(path).read_all()


def colours(frames: np.ndarray) -> set[tuple[int, int, int]]:
    return {tuple(int(v) for v in c) for c in np.unique(frames.reshape(-1, 3), axis=0)}


# ------------------------------------------------------------------------------------------------- the layout


def test_every_clip_gets_a_video_and_a_render_with_the_same_frames_rate_and_size(prepared):
    layout = DataLayout(prepared["data"])
    assert layout.video_names() == ["00001", "a", "nested/b"]
    for name, count, rate in (("a", 6, 25), ("nested/b", 5, Fraction(30000, 1001)), ("00001", 4, 25)):
        video, render = open_motion(layout.video(name)), open_motion(layout.video_render(name))
        assert (len(video), len(render)) == (count, count)
        assert video.fps == render.fps == rate
        assert (video.width, video.height) == (render.width, render.height) == (64, 48)


def test_the_video_is_the_source_frame_for_frame_and_the_render_is_what_pose_draws(prepared, source, pose_standin,
                                                                                   tmp_path, capsys):
    layout = DataLayout(prepared["data"])
    original = frames_of(source / "clips" / "a.mp4")
    copy = frames_of(layout.video("a"))
    assert np.abs(copy.astype(int) - original.astype(int)).mean() < 3  # re-encoded at crf 18
    # Both renders are made here by fresh processes, so they run under the same conditions: in the parallel suite a
    # worker's earlier tests once left the in-process renders a few pixel values apart; the cause, some state a
    # worker keeps, is not yet found.
    for args in (prepare(source / "clips" / "a.mp4", tmp_path / "DATA", pose_standin["model"]),
                 ["pose", source / "clips" / "a.mp4", "-o", tmp_path / "pose.mp4", "--pose-model",
                  pose_standin["model"], "--device", "cpu", "-q"]):
        done = subprocess.run([sys.executable, "-m", "magicanimate_cli", *map(str, args)], capture_output=True,
                              text=True)
        assert done.returncode == 0, done.stderr
    assert np.array_equal(frames_of(DataLayout(tmp_path / "DATA").video_render("a")), frames_of(tmp_path / "pose.mp4"))


def test_the_manifest_lists_each_pair_and_photo_with_its_counts(prepared):
    manifest = prepared["manifest"]
    assert manifest["version"] == 1
    assert manifest["videos"] == [
        {"name": "00001", "frames": 4, "fps": "25/1", "width": 64, "height": 48, "person_frames": 4},
        {"name": "a", "frames": 6, "fps": "25/1", "width": 64, "height": 48, "person_frames": 6},
        {"name": "nested/b", "frames": 5, "fps": "30000/1001", "width": 64, "height": 48, "person_frames": 5},
    ]
    assert manifest["images"] == [{"name": "p1", "width": 40, "height": 56}]


def test_a_photo_is_kept_as_png_with_its_render_of_the_same_size(prepared, source):
    layout = DataLayout(prepared["data"])
    assert layout.image_names() == ["p1"]
    photo, render = np.asarray(Image.open(layout.image("p1"))), np.asarray(Image.open(layout.image_render("p1")))
    assert np.array_equal(photo, blob_frame(40, 56, {GREEN: (8, 8, 20, 40)}))  # PNG: lossless
    assert render.shape == photo.shape and colours(render) <= PALETTE and len(colours(render)) == 2


def test_bad_sources_are_skipped_with_their_reason_and_leave_no_files(prepared, source):
    skipped = {Path(s["source"]).name: s["reason"] for s in prepared["manifest"]["skipped"]}
    assert set(skipped) == {"broken.mp4", "nobody.mp4", "empty-room.png"}
    assert "1 of 6 frames" in skipped["nobody.mp4"] and "--min-person-frames 0.5" in skipped["nobody.mp4"]
    assert "no person found" in skipped["empty-room.png"]
    assert skipped["broken.mp4"] and not skipped["broken.mp4"].startswith(str(source))
    data = prepared["data"]
    leftovers = [p.relative_to(data).as_posix() for p in data.rglob("*") if p.is_file()
                 and not p.relative_to(data).as_posix().startswith(".prepare/")]
    assert sorted(leftovers) == sorted(["manifest.json", "videos/a.mp4", "densepose/a.mp4", "videos/00001.mp4",
                                        "densepose/00001.mp4", "videos/nested/b.mp4", "densepose/nested/b.mp4",
                                        "images/p1.png", "images_densepose/p1.png"]
                                      + [f"ready/{name}.{kind}" for name in ("a", "00001", "nested/b")
                                         for kind in ("frames", "labels", "json")])


# ------------------------------------------------------------------------------------- options and resuming


def test_min_person_frames_decides_which_clips_are_kept(pose_standin, tmp_path, capsys):
    folder = tmp_path / "src"
    folder.mkdir()
    encode_video(folder / "half.mp4", sometimes_empty(6, {0, 1, 2}), 25)
    code, out, _ = run(prepare(folder, tmp_path / "strict", pose_standin["model"], "--min-person-frames", "0.6",
                               "--json"), capsys)
    assert code == 1  # the only clip is skipped: nothing usable
    code, out, err = run(prepare(folder, tmp_path / "lenient", pose_standin["model"], "--json"), capsys)
    assert code == 0, err
    assert json.loads(out)["videos"] == 1
    assert json.loads((tmp_path / "lenient" / "manifest.json").read_text())["videos"][0]["person_frames"] == 3


def test_smooth_fills_a_missed_frame_so_the_clip_counts_it(pose_standin, tmp_path, capsys):
    folder = tmp_path / "src"
    folder.mkdir()
    encode_video(folder / "gap.mp4", sometimes_empty(7, {0, 1, 2, 4, 5, 6}), 25)
    for name, extra in (("plain", ()), ("steady", ("--smooth",))):
        assert run(prepare(folder, tmp_path / name, pose_standin["model"], *extra), capsys)[0] == 0
    plain = json.loads((tmp_path / "plain" / "manifest.json").read_text())["videos"][0]
    steady = json.loads((tmp_path / "steady" / "manifest.json").read_text())["videos"][0]
    assert (plain["person_frames"], steady["person_frames"]) == (6, 7)


def test_max_side_scales_clips_and_photos_down_keeping_their_aspect(source, pose_standin, tmp_path, capsys):
    data = tmp_path / "DATA"
    code, _, err = run(prepare(source / "clips" / "a.mp4", data, pose_standin["model"], "--max-side", "32",
                               "--images", source / "photos"), capsys)
    assert code == 0, err
    manifest = json.loads((data / "manifest.json").read_text())
    assert [(v["name"], v["width"], v["height"]) for v in manifest["videos"]] == [("a", 32, 24)]
    assert [(i["width"], i["height"]) for i in manifest["images"]] == [(22, 32)]
    render = open_motion(DataLayout(data).video_render("a"))
    assert (render.width, render.height, len(render)) == (32, 24, 6)


def test_skip_existing_keeps_prepared_pairs_and_redoes_only_what_is_missing(source, pose_standin, tmp_path, capsys):
    data = tmp_path / "DATA"
    shutil.copytree(source / "clips", tmp_path / "clips", ignore=shutil.ignore_patterns("broken.mp4", "nobody.mp4"))
    args = prepare(tmp_path / "clips", data, pose_standin["model"], "--json", "--skip-existing")
    assert run(args, capsys)[0] == 0
    layout = DataLayout(data)
    kept = layout.video("a").stat().st_mtime_ns
    layout.video_render("nested/b").unlink()
    code, out, err = run(args, capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["prepared"], summary["existing"], summary["videos"]) == (1, 2, 3)
    assert layout.video("a").stat().st_mtime_ns == kept and layout.video_render("nested/b").is_file()


def test_shards_prepare_disjoint_shares_into_one_manifest(source, pose_standin, prepared, tmp_path, capsys):
    data = tmp_path / "DATA"
    for share in ("1/2", "2/2"):
        code, _, err = run(prepare(source / "clips", data, pose_standin["model"], "--images", source / "photos",
                                   "--shard", share), capsys)
        assert code == 0, err
    assert json.loads((data / "manifest.json").read_text()) == prepared["manifest"]


def test_nothing_usable_is_one_line_error_and_leaves_no_data_folder(pose_standin, tmp_path, capsys):
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "notes.mp4").write_text("not a video")
    code, out, err = run(prepare(folder, tmp_path / "DATA", pose_standin["model"]), capsys)
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and "notes.mp4" in err and "nothing usable" in err, err
    assert not (tmp_path / "DATA").exists()


def test_a_source_without_any_clip_or_photo_is_refused(pose_standin, tmp_path, capsys):
    (tmp_path / "src").mkdir()
    code, _, err = run(prepare(tmp_path / "src", tmp_path / "DATA", pose_standin["model"]), capsys)
    assert code == 1 and "no videos, frame folders or photos" in err and len(err.strip().splitlines()) == 1


def test_progress_and_summary_name_the_skipped_sources(source, pose_standin, tmp_path, capsys):
    folder = tmp_path / "src"
    shutil.copytree(source / "clips", folder, ignore=shutil.ignore_patterns("00001", "nested", "nobody.mp4"))
    code, _, err = run(["prepare-data", folder, "-o", tmp_path / "DATA", "--pose-model", pose_standin["model"],
                        "--device", "cpu"], capsys)
    assert code == 0, err
    assert "1 prepared" in err and "1 skipped" in err and "broken.mp4" in err and "pose" in err


def test_a_source_that_turns_bad_loses_its_old_pair_and_a_taken_name_is_skipped(pose_standin, tmp_path, capsys):
    folder = tmp_path / "src"
    folder.mkdir()
    encode_video(folder / "a.mov", moving_blobs(4), 25)
    encode_video(folder / "b.mp4", moving_blobs(4), 25)
    data = tmp_path / "DATA"
    assert run(prepare(folder, data, pose_standin["model"]), capsys)[0] == 0
    (folder / "b.mp4").write_text("damaged since")
    encode_video(folder / "a.mp4", moving_blobs(3), 25)  # after a.mov in natural order
    code, _, err = run(prepare(folder, data, pose_standin["model"]), capsys)
    assert code == 0, err
    manifest = json.loads((data / "manifest.json").read_text())
    assert [v["name"] for v in manifest["videos"]] == ["a"] and manifest["videos"][0]["frames"] == 4
    reasons = {Path(s["source"]).name: s["reason"] for s in manifest["skipped"]}
    assert reasons["a.mp4"] == "another source already has the name 'a'" and "b.mp4" in reasons
    assert DataLayout(data).video_names() == ["a"] and not DataLayout(data).video_render("b").exists()


def test_a_tiktok_clip_folder_or_a_photos_folder_inside_source_is_not_taken_apart(pose_standin, tmp_path, capsys):
    clip = tmp_path / "00042"
    frame_folder(clip / "images", moving_blobs(3))
    frame_folder(clip / "densepose", [blob_frame(64, 48, {})] * 3)
    data = tmp_path / "D1"
    assert run(prepare(clip, data, pose_standin["model"]), capsys)[0] == 0
    assert DataLayout(data).video_names() == ["00042"]
    source = tmp_path / "src"
    (source / "photos").mkdir(parents=True)
    encode_video(source / "a.mp4", moving_blobs(3), 25)
    save_image(source / "photos" / "p.png", blob_frame(40, 56, {GREEN: (8, 8, 20, 40)}))
    save_image(source / "photos" / "q.png", blob_frame(40, 56, {GREEN: (4, 8, 20, 40)}))
    data = source / "DATA"  # inside SOURCE too: a rerun must not take it as input
    for _ in range(2):
        code, _, err = run(prepare(source, data, pose_standin["model"], "--images", source / "photos"), capsys)
        assert code == 0, err
    layout = DataLayout(data)
    assert (layout.video_names(), layout.image_names()) == (["a"], ["p", "q"])


def test_a_temporary_left_by_a_killed_run_is_not_a_name_of_the_data(prepared, tmp_path):
    data = tmp_path / "DATA"
    shutil.copytree(prepared["data"], data)
    (data / "videos" / ".a.mp4.x1y2.partial.mp4").write_bytes(b"half a video")
    (data / "images" / ".hidden").mkdir()
    (data / "images" / ".hidden" / "p2.png").write_bytes(b"")
    layout = DataLayout(data)
    assert (layout.video_names(), layout.image_names()) == (["00001", "a", "nested/b"], ["p1"])


def test_every_prepared_clip_has_a_ready_copy_whose_labels_are_its_render_frame_for_frame(prepared):
    """The ready copy holds the render as part labels taken before H.264: the render video, snapped back to the
    palette, agrees with them best frame for frame (at 64x48 the blobs' edges are a large share of the pixels, and
    4:2:0 chroma moves edge colours past a neighbouring part's, so agreement is high, not total)."""
    from magicanimate_cli.dataset.reader import DataFolder
    from magicanimate_cli.motion.palette import nearest_labels

    data = prepared["data"]
    folder = DataFolder(data)
    contents = folder.check()
    assert contents.ready == tuple(sorted(name for name, _ in contents.videos))
    for name, count in contents.videos:
        render = open_motion(DataLayout(data).video_render(name)).read_all()
        snapped = np.stack([nearest_labels(frame) for frame in render])
        _, labels, _ = folder.video_sample(name, tuple(range(count)), 0)
        agreement = np.array([[(labels[i] == snapped[j]).mean() for j in range(count)] for i in range(count)])
        assert labels.shape == snapped.shape and labels.max() > 0
        assert (agreement.argmax(axis=1) == np.arange(count)).all() and agreement.diagonal().min() > 0.85
