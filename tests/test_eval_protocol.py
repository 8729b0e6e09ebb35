"""`--protocol` (which metrics see resized frames) and `--clips` (what one FID-VID/FVD sample is), as DisCo."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from test_eval_cli import run_cli
from test_eval_support import constant_video, lpips_weights_dir, structured_frames, write_frame_folder  # noqa: F401

from magicanimate_cli.evaluation.features import ClipFeatures
from magicanimate_cli.evaluation.frechet import FeatureStatistics
from magicanimate_cli.evaluation.networks import i3d, inception, resnet3d
from magicanimate_cli.evaluation.weights import FID_INCEPTION, I3D_KINETICS, R3D50_KINETICS


class DetailSensitive(torch.nn.Module):
    """A stand-in feature network that tells a picture from its 2x enlargement: colour means and mean |dx|,
    spread over `dim` outputs by a fixed projection (frames (N, 3, H, W) or clips (N, 3, T, H, W))."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(dim)
        self.register_buffer("projection", torch.randn(6, dim, generator=generator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduce = tuple(range(2, x.dim()))
        detail = (x[..., 1:] - x[..., :-1]).abs().mean(dim=reduce) * 10
        return torch.cat([x.mean(dim=reduce), detail], dim=1) @ self.projection


@pytest.fixture
def stand_in_networks(tmp_path: Path, lpips_weights_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every metric available: real LPIPS weights (random), stand-ins for the FID, FID-VID and FVD networks."""
    weights = tmp_path / "weights"
    shutil.copytree(lpips_weights_dir, weights)
    for spec in (FID_INCEPTION, R3D50_KINETICS, I3D_KINETICS):
        spec.path(weights).write_bytes(b"stand-in")
    monkeypatch.setattr(inception, "load_fid_inception", lambda path: DetailSensitive(inception.FEATURE_DIM))
    monkeypatch.setattr(resnet3d, "load_resnet3d50", lambda path: DetailSensitive(resnet3d.FEATURE_DIM))
    monkeypatch.setattr(i3d, "load_i3d", lambda path: DetailSensitive(i3d.FEATURE_DIM))
    return weights


@pytest.fixture
def enlarged(tmp_path: Path) -> tuple[Path, Path]:
    """Ground truth at 16x16 and generated frames that are exactly its 2x enlargement (halving restores it)."""
    truth = structured_frames(20, 16, 16, seed=21)
    write_frame_folder(tmp_path / "gt", truth)
    write_frame_folder(tmp_path / "gen", truth.repeat(2, axis=1).repeat(2, axis=2))
    return tmp_path / "gen", tmp_path / "gt"


def _aggregate(capsys, tmp_path: Path, gen: Path, gt: Path, weights: Path, *args: object) -> tuple[dict, str]:
    code, _, err = run_cli(capsys, "eval", gen, gt, "--weights", weights, "--device", "cpu",
                           "--json", tmp_path / "r.json", *args)
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    return report, err


def test_gt_size_protocol_shows_every_metric_the_resized_frames(capsys, tmp_path, enlarged, stand_in_networks):
    report, _ = _aggregate(capsys, tmp_path, *enlarged, stand_in_networks)
    values = report["aggregate"]
    assert report["protocol"] == "gt-size" and report["skipped"] == {}
    assert (values["l1"], values["psnr"], values["ssim"], values["lpips"]) == (0.0, "inf", 1.0, 0.0)
    for metric in ("fid", "fid-vid", "fvd"):  # the resized frames are the ground truth: zero distance
        assert abs(values[metric]) < 1e-6, metric


def test_disco_protocol_resizes_only_for_l1_psnr_and_ssim(capsys, tmp_path, enlarged, stand_in_networks):
    report, err = _aggregate(capsys, tmp_path, *enlarged, stand_in_networks, "--protocol", "disco")
    values = report["aggregate"]
    assert report["protocol"] == "disco"
    assert (values["l1"], values["psnr"], values["ssim"]) == (0.0, "inf", 1.0)  # resized: equal to the truth
    for metric in ("fid", "fid-vid", "fvd"):  # the networks saw the 32x32 frames as generated
        assert values[metric] > 1e-3, metric
    assert "lpips" not in report["metrics"] and "compute_lpips" in report["skipped"]["lpips"]
    assert "skipped lpips" in err and "32x32" in err


def test_disco_protocol_with_lpips_named_and_sizes_that_differ_is_a_one_line_error(capsys, tmp_path, enlarged,
                                                                                   stand_in_networks):
    gen, gt = enlarged
    code, _, err = run_cli(capsys, "eval", gen, gt, "--weights", stand_in_networks, "--protocol", "disco",
                           "--metrics", "l1,lpips")
    assert code == 1 and err.count("\n") == 1
    assert "is 32x32 while" in err and "--protocol gt-size" in err


def test_protocols_agree_when_the_sizes_are_equal(capsys, tmp_path, stand_in_networks):
    frames = structured_frames(18, 16, 16, seed=22)
    write_frame_folder(tmp_path / "gt", frames)
    write_frame_folder(tmp_path / "gen", frames[::-1])
    first, _ = _aggregate(capsys, tmp_path, tmp_path / "gen", tmp_path / "gt", stand_in_networks)
    second, _ = _aggregate(capsys, tmp_path, tmp_path / "gen", tmp_path / "gt", stand_in_networks,
                           "--protocol", "disco")
    assert first["aggregate"] == second["aggregate"] and first["aggregate"]["fvd"] > 1e-3


# ------------------------------------------------------------------------------------------- --clips


def _samples(sampling: str, videos: list[np.ndarray]) -> tuple[list[float], FeatureStatistics]:
    """(mean colour of every clip the network saw, the statistics) of one side fed `videos` 7 frames at a time."""
    seen: list[np.ndarray] = []

    class MeanColour(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = x.mean(dim=(2, 3, 4))
            seen.append(out.numpy().copy())
            return out

    clips = ClipFeatures(MeanColour(), dim=3, device=torch.device("cpu"), side=8, normalise=lambda c: c,
                         clip_length=16, clips_per_batch=2, sampling=sampling)
    for video in videos:
        for start in range(0, len(video), 7):
            clips.push(video[start:start + 7])
        clips.end_video()
    clips.finish()
    return [float(v) for v in np.concatenate(seen)[:, 0]] if seen else [], clips.stats


def test_clips_video_averages_padded_segments_for_fid_vid_and_runs_whole_videos_for_fvd():
    videos = [constant_video(range(20)), constant_video(range(100, 110))]
    _, segment_mean = _samples("video-mean", videos)
    first = (np.mean(range(16)) + (16 + 17 + 18 + 19 * 13) / 16) / 2  # two padded segments, averaged
    second = (sum(range(100, 110)) + 109 * 6) / 16
    assert segment_mean.count == 2
    np.testing.assert_allclose(segment_mean.mean, np.full(3, (first + second) / 2), rtol=1e-6)
    inputs, whole = _samples("video-whole", videos)
    assert whole.count == 2
    np.testing.assert_allclose(sorted(inputs), [np.mean(range(20)), np.mean(range(100, 110))], rtol=1e-6)


def test_clips_sliding_takes_every_16_frame_window_without_padding():
    inputs, stats = _samples("sliding", [constant_video(range(20)), constant_video(range(100, 110))])
    assert stats.count == 5  # frames 0-15, 1-16, ..., 4-19; the 10-frame video has no window
    np.testing.assert_allclose(sorted(inputs), [np.mean(range(s, s + 16)) for s in range(5)], rtol=1e-6)


def test_clips_option_sets_what_one_sample_is_and_the_report_says_so(capsys, tmp_path, stand_in_networks):
    write_frame_folder(tmp_path / "gt", structured_frames(20, 16, 16, seed=23))
    write_frame_folder(tmp_path / "gen", structured_frames(20, 16, 16, seed=25))
    report, err = _aggregate(capsys, tmp_path, tmp_path / "gen", tmp_path / "gt", stand_in_networks,
                             "--metrics", "fvd", "--clips", "video")
    assert report["clips"] == "video" and report["aggregate"]["fvd"] is None
    assert "needs at least 2 videos per side, got 1" in err
    report, _ = _aggregate(capsys, tmp_path, tmp_path / "gen", tmp_path / "gt", stand_in_networks,
                           "--metrics", "fvd", "--clips", "sliding")
    assert report["clips"] == "sliding" and report["aggregate"]["fvd"] > 1e-6  # 5 windows per side: a value


# ------------------------------------------------------------------------------------------- inputs


def test_empty_generated_folder_against_a_frame_folder_says_it_is_empty(capsys, tmp_path):
    write_frame_folder(tmp_path / "gt", structured_frames(3, 16, 16, seed=24))
    (tmp_path / "gen").mkdir()
    code, _, err = run_cli(capsys, "eval", tmp_path / "gen", tmp_path / "gt", "--metrics", "l1",
                           "--weights", tmp_path)
    assert code == 1 and err.count("\n") == 1
    assert f"{tmp_path / 'gen'}: empty folder: no frames" in err and "folder of videos" not in err
