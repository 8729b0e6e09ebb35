"""The training data path: the ready store, reading only a sample's frames, the start-up check, the sample's shape,
and the DataLoader feed whose worker count never changes a batch."""

from __future__ import annotations

import json
import os
import random
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_cli
from media_helpers import encode_video
from magicanimate_cli.dataset.layout import DataLayout
from magicanimate_cli.dataset.ready import make_ready
from magicanimate_cli.dataset.reader import DataFolder
from magicanimate_cli.dataset.startup import check_once
from magicanimate_cli.dataset.store import StorePaths, StoreReader, StoreWriter, file_stamp, read_index
from magicanimate_cli.media.reader import open_motion
from magicanimate_cli.media.seek import SeekableVideo, read_header
from magicanimate_cli.motion.palette import BACKGROUND, colourise, nearest_labels
from magicanimate_cli.runtime.errors import InputError
from magicanimate_cli.runtime.progress import Reporter
from magicanimate_cli.motion.fit import fit_reference, resize
from magicanimate_cli.train.batches import fit_labels, make_batch
from magicanimate_cli.train.feed import Feed, FeedPlan, default_workers
from magicanimate_cli.train.sampling import DataIndex, Mix, Sample, StepPlan, far_reference, plan_step
from train_helpers import make_data, person_labels


class Quiet(Reporter):
    def note(self, message: str) -> None:
        pass


@pytest.fixture(scope="module")
def hand_laid(tmp_path_factory) -> Path:
    """Two hand-laid pairs (9 and 12 frames, 64 px), no ready copies."""
    return make_data(tmp_path_factory.mktemp("hand-laid"), {"walk": 9, "turn": 12}, size=64)


@pytest.fixture(scope="module")
def ready(tmp_path_factory, hand_laid) -> Path:
    """The same pairs made training-ready (`prepare-data --hand-laid`'s work)."""
    root = tmp_path_factory.mktemp("ready")
    for sub in ("videos", "densepose"):
        (root / sub).mkdir()
        for file in (hand_laid / sub).iterdir():
            (root / sub / file.name).write_bytes(file.read_bytes())
    make_ready(DataLayout(root), Quiet())
    return root


def test_nearest_labels_gives_an_exact_render_its_labels_back_and_snaps_coding_noise():
    labels = np.arange(25, dtype=np.uint8).repeat(4).reshape(10, 10)
    assert np.array_equal(nearest_labels(colourise(labels)), labels)
    noisy = np.clip(colourise(labels).astype(np.int16) + np.random.default_rng(0).integers(-3, 4, (10, 10, 3)),
                    0, 255).astype(np.uint8)
    assert np.array_equal(nearest_labels(noisy), labels)


def test_a_seek_read_gives_the_frames_a_sequential_decode_gives(tmp_path):
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 255, (32, 48, 3), dtype=np.uint8) for _ in range(40)]
    path = encode_video(tmp_path / "gop.mp4", frames)
    whole = open_motion(path).read_all()
    video = SeekableVideo(path)
    assert len(video) == 40 and len(video.keyframes) >= 1
    picks = random.Random(2)
    for _ in range(30):
        indices = [picks.randrange(40) for _ in range(picks.randrange(1, 5))]
        assert all(np.array_equal(got, whole[i]) for got, i in zip(video.frames(indices), indices)), indices
    video.close()
    assert read_header(path).frames == 40


def test_the_store_keeps_labels_exact_and_frames_close(tmp_path):
    labels = [person_labels(i, 96).astype(np.uint8) for i in range(3)]
    frames = [np.full((96, 96, 3), 40 * i + 20, np.uint8) for i in range(3)]
    writer = StoreWriter(StorePaths(tmp_path, "clip"), short_side=48)
    for frame, label in zip(frames, labels):
        writer.write_frame(frame)
        writer.write_render(colourise(label))
    (tmp_path / "v.mp4").write_bytes(b"v")
    writer.publish(Fraction(25), {"video": file_stamp(tmp_path / "v.mp4"), "render": file_stamp(tmp_path / "v.mp4")})
    index = read_index(StorePaths(tmp_path, "clip"))
    assert (index.frames, index.width, index.height) == (3, 48, 48)
    reader = StoreReader(index)
    for i in range(3):
        assert np.array_equal(reader.labels(i), resize(labels[i], 48, 48, "nearest"))  # labels stay labels
        assert np.abs(reader.frame(i).astype(int) - frames[i][:48, :48]).max() <= 2
    assert not list(tmp_path.glob("ready/.*"))  # no temporaries left


def test_hand_laid_pairs_read_the_same_labels_from_the_videos_and_from_their_ready_copy(hand_laid, ready):
    seek, store = DataFolder(hand_laid), DataFolder(ready)
    assert seek.check().ready == () and store.check().ready == ("turn", "walk")
    assert seek.check().videos == store.check().videos == (("turn", 12), ("walk", 9))
    a, b = seek.video_sample("turn", (1, 5, 9), 0), store.video_sample("turn", (1, 5, 9), 0)
    assert np.array_equal(a[1], b[1])  # the render: exact both ways
    assert a[0].shape == b[0].shape and np.abs(a[0].astype(int) - b[0]).mean() < 2  # frames: JPEG, close
    assert np.abs(a[2].astype(int) - b[2]).mean() < 2
    seek.close(), store.close()


def test_a_ready_copy_made_from_other_files_is_refused_naming_it(tmp_path, hand_laid):
    root = make_data(tmp_path / "data", {"walk": 9}, size=64)
    make_ready(DataLayout(root), Quiet())
    video = root / "videos" / "walk.mp4"
    os.utime(video, ns=(video.stat().st_atime_ns, video.stat().st_mtime_ns + 10**9))
    with pytest.raises(InputError, match=r"ready/walk.json: made from another videos/walk.mp4"):
        DataFolder(root).check()
    summary = make_ready(DataLayout(root), Quiet())  # made again, then trusted
    assert summary.made == ["walk"] and DataFolder(root).check().ready == ("walk",)


def test_the_header_check_names_a_render_with_another_frame_count(tmp_path):
    root = make_data(tmp_path / "data", {"walk": 9}, size=64)
    other = make_data(tmp_path / "other", {"walk": 7}, size=64)
    (root / "densepose" / "walk.mp4").write_bytes((other / "densepose" / "walk.mp4").read_bytes())
    with pytest.raises(InputError, match=r"densepose/walk.mp4: 7 frames, but its video .* has 9"):
        DataFolder(root).check()
    with pytest.raises(InputError, match="7 frames"):
        make_ready(DataLayout(root), Quiet())
    assert not (root / "ready" / "walk.json").exists()


def test_the_start_up_check_runs_once_until_a_file_changes(tmp_path):
    root = make_data(tmp_path / "data", {"walk": 9}, size=64)
    cache = tmp_path / "checks"
    first = check_once(DataFolder(root), cache=cache)
    assert check_once(DataFolder(root), cache=cache) == first
    assert len(list(cache.glob("*.json"))) == 1
    (root / "densepose" / "walk.mp4").unlink()
    with pytest.raises(InputError, match="has no DensePose render"):
        check_once(DataFolder(root), cache=cache)


def test_a_reference_keeps_its_margin_from_every_target_or_is_the_farthest_frame():
    picks = random.Random(0)
    for _ in range(300):
        count, start = picks.randrange(40, 120), picks.randrange(0, 30)
        frames = tuple(range(start, start + 9, 3))
        ref = far_reference(picks, count, frames, 10)
        assert 0 <= ref < count and min(abs(ref - f) for f in frames) >= 10
    assert far_reference(picks, 12, (8,), 30) == 0
    assert far_reference(picks, 12, (2, 4), 30) == 11


def test_a_plan_without_a_margin_is_the_plan_of_earlier_runs():
    data = DataIndex((("a", 50), ("b", 70)))
    for step in range(20):
        plain = plan_step(step, 5, data, Mix(2, 0, 0, 0.5), 2, 4, 2)
        assert plan_step(step, 5, data, Mix(2, 0, 0, 0.5), 2, 4, 2, ref_margin=0) == plain


def test_pad_keeps_the_whole_frame_with_render_background_around_the_pose():
    tall = np.zeros((160, 90), np.uint8)
    tall[:3, :], tall[-3:, :] = 3, 5  # head and feet rows
    pose = fit_labels(tall, 64, 64, "pad")
    assert (pose[:, :14] == 0).all() and (pose[:, 50:] == 0).all()  # label 0: drawn as the render's background
    assert (pose[0, 14:50] == 3).all() and (pose[-1, 14:50] == 5).all()
    photo = np.zeros((160, 90, 3), np.uint8)
    photo[:, :12] = 200
    assert (fit_reference(photo, 64, 64, "pad")[:, 0] == 200).all()  # edge pixels, as animate pads its reference


class Recording:
    """A FrameSource that says what it was asked for."""

    def __init__(self) -> None:
        self.asked: list = []

    def video_sample(self, name, frames, reference):
        self.asked.append((name, tuple(frames), reference))
        n = len(frames)
        return np.zeros((n, 40, 30, 3), np.uint8), np.ones((n, 40, 30), np.uint8), np.zeros((40, 30, 3), np.uint8)

    def image(self, name):
        raise AssertionError("no images here")


def test_a_batch_asks_only_for_the_samples_frames_and_the_reference_picture():
    source = Recording()
    plan = StepPlan(0, 0, 0, "clip", (Sample("video", "a", (3, 5), 40),))
    batch = make_batch(plan, source, 32, 32)
    assert source.asked == [("a", (3, 5), 40)]
    assert batch.target.shape == (1, 2, 3, 32, 32) and batch.pose.shape == (1, 2, 3, 32, 32)
    drawn = (batch.pose[0, 0].movedim(0, -1) * 255).round().to(torch.uint8)
    assert (drawn[:, 0] == torch.tensor(BACKGROUND, dtype=torch.uint8)).all()  # padded: the render's background
    assert (drawn[:, 16] == torch.from_numpy(colourise(np.uint8(1)))).all()  # the label drawn in its colour


def _feed_batches(root: Path, workers: int, start: int = 0) -> list:
    folder = DataFolder(root)
    contents = folder.check()
    # seed 4, global batch 4 = 1 sample x 2 processes x 2 micro-batches, 3 frames at stride 2, margin 4, rank 1
    plan = FeedPlan(4, DataIndex(contents.videos), Mix(2, 0, 0, 0.5), 4, 3, 2, 4, 1, 2, 2, 1, 64, 64, "pad")
    feed = Feed(plan, folder, start, 4, workers)
    try:
        return [feed.take(step, micro) for step in range(start, 4) for micro in range(2)]
    finally:
        feed.close()


def test_the_worker_count_never_changes_a_batch_and_a_feed_resumes_at_any_step(ready):
    alone, two = _feed_batches(ready, 0), _feed_batches(ready, 2)
    for a, b in zip(alone, two, strict=True):
        assert all(torch.equal(x, y) for x, y in zip((a.target, a.labels, a.reference), (b.target, b.labels,
                                                                                             b.reference)))
    resumed = _feed_batches(ready, 2, start=2)
    assert all(torch.equal(a.target, b.target) for a, b in zip(alone[4:], resumed, strict=True))


def test_default_workers_share_the_cores_among_the_training_processes():
    assert default_workers(1, cpus=2) == 1 and default_workers(1, cpus=1) == 0
    assert default_workers(8, cpus=64) == 7 and default_workers(1, cpus=64) == 8


def test_prepare_data_hand_laid_makes_pairs_ready_once(tmp_path, capsys):
    root = make_data(tmp_path / "data", {"walk": 9}, size=64)
    code, out, _ = run_cli(["prepare-data", root, "--hand-laid", "--json"], capsys)
    assert code == 0 and json.loads(out)["made_ready"] == 1
    code, out, _ = run_cli(["prepare-data", root, "--hand-laid", "--json"], capsys)
    assert code == 0 and json.loads(out)["already_ready"] == 1
    code, _, err = run_cli(["prepare-data", root], capsys)
    assert code != 0 and "-o DATA is needed" in err


class Handle:
    def __init__(self, closed: list, key) -> None:
        self.closed, self.key = closed, key

    def close(self) -> None:
        self.closed.append(self.key)


def test_a_process_keeps_a_bounded_number_of_files_open_and_reopens_a_replaced_one(tmp_path):
    from collections import OrderedDict

    from magicanimate_cli.dataset.reader import MAX_OPEN, _kept_open

    files = [tmp_path / f"{i}.bin" for i in range(MAX_OPEN + 1)]
    for file in files:
        file.write_bytes(b"x")
    handles, closed = OrderedDict(), []
    for key, file in enumerate(files[:MAX_OPEN]):
        _kept_open(handles, key, (file,), lambda key=key: Handle(closed, key))
    _kept_open(handles, 0, (files[0],), lambda: Handle(closed, "again"))  # reused, and now the most recent
    _kept_open(handles, MAX_OPEN, (files[-1],), lambda: Handle(closed, "new"))
    assert closed == [1] and len(handles) == MAX_OPEN and handles[0][1].key == 0
    files[0].write_bytes(b"longer")
    assert _kept_open(handles, 0, (files[0],), lambda: Handle(closed, "reopened")).key == "reopened"
    files[0].unlink()
    with pytest.raises(InputError, match=r"0.bin: file not found"):
        _kept_open(handles, 0, (files[0],), lambda: Handle(closed, "never"))


def test_verify_data_decodes_every_frame_and_names_a_damaged_ready_copy(tmp_path):
    root = make_data(tmp_path / "data", {"walk": 9}, size=64)
    make_ready(DataLayout(root), Quiet())
    assert DataFolder(root).check(verify=True) == DataFolder(root).check()
    labels = root / "ready" / "walk.labels"
    damaged = bytearray(labels.read_bytes())
    damaged[len(damaged) // 2:len(damaged) // 2 + 64] = bytes(64)  # same size: the header check cannot tell
    labels.write_bytes(bytes(damaged))
    assert DataFolder(root).check().ready == ("walk",)
    with pytest.raises(InputError, match=r"walk.labels: frame \d+ is damaged"):
        DataFolder(root).check(verify=True)
