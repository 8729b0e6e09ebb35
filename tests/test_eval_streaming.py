"""Streaming distribution metrics: 16-frame clips per video, and FID from batches of frames."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_eval_cli import run_cli
from test_eval_support import constant_video, structured_frames, with_lively_features, write_frame_folder

from magicanimate_cli.evaluation.features import ClipFeatures
from magicanimate_cli.evaluation.frechet import FeatureStatistics, frechet_distance_of
from magicanimate_cli.evaluation.networks.inception import FEATURE_DIM, FIDInceptionV3, load_fid_inception
from magicanimate_cli.evaluation.weights import FID_INCEPTION


def test_clips_are_16_consecutive_frames_never_span_videos_and_the_last_is_padded_with_its_last_frame() -> None:
    mean_colour = torch.nn.Sequential(torch.nn.AdaptiveAvgPool3d(1), torch.nn.Flatten())  # a real pooling net
    clips = ClipFeatures(mean_colour, dim=3, device=torch.device("cpu"), side=8, normalise=lambda c: c,
                         clip_length=16, clips_per_batch=2)
    first = constant_video(range(20))
    for start in range(0, 20, 7):  # batches that do not line up with clip boundaries
        clips.push(first[start:start + 7])
    clips.end_video()
    clips.push(constant_video(range(100, 116)))
    clips.end_video()
    clips.finish()

    expected = np.array([
        np.mean(range(16)),  # frames 0..15
        (16 + 17 + 18 + 19 * 13) / 16,  # frames 16..19, then 19 repeated: the clip stays in its video
        np.mean(range(100, 116)),
    ])
    assert clips.stats.count == 3
    np.testing.assert_allclose(clips.stats.mean, np.full(3, expected.mean()), rtol=1e-6)
    np.testing.assert_allclose(np.diag(clips.stats.covariance()), np.full(3, expected.var(ddof=1)), rtol=1e-5)


def test_fid_streamed_in_batches_equals_the_frechet_distance_of_the_loaded_networks_features(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    torch.manual_seed(0)
    original = with_lively_features(FIDInceptionV3())
    FID_INCEPTION.path(tmp_path).parent.mkdir(parents=True)
    torch.save(original.state_dict(), FID_INCEPTION.path(tmp_path))  # pytorch-fid's file layout
    network = load_fid_inception(FID_INCEPTION.path(tmp_path))
    loaded_state = network.state_dict()
    assert all(torch.equal(loaded_state[k], v) for k, v in original.state_dict().items())
    truth, generated = structured_frames(2, 24, 24, seed=10), structured_frames(2, 24, 24, seed=11)[:, ::-1]
    write_frame_folder(tmp_path / "gt", truth)
    write_frame_folder(tmp_path / "gen", generated)

    code, _, err = run_cli(capsys, "eval", tmp_path / "gen", tmp_path / "gt", "--metrics", "fid",
                           "--weights", tmp_path, "--batch-size", "1", "--json", tmp_path / "r.json")

    assert code == 0, err
    with torch.no_grad():
        features = network(torch.from_numpy(np.concatenate([generated, truth]).copy()).permute(0, 3, 1, 2) / 255.0)
    assert features.shape == (4, FEATURE_DIM)  # documented: 2048-d pool3 features
    stats = [FeatureStatistics(2048), FeatureStatistics(2048)]
    stats[0].add(features[:2].double().numpy())
    stats[1].add(features[2:].double().numpy())
    expected = frechet_distance_of(*stats)
    assert expected > 1e-3  # the calibrated network tells the two sets apart
    assert json.loads((tmp_path / "r.json").read_text())["aggregate"]["fid"] == pytest.approx(expected, rel=1e-4)
