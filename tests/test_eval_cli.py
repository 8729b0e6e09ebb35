"""`magicanimate eval` end to end, through the real entry point, on small real files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_eval_support import lpips_weights_dir, structured_frames, write_frame_folder, write_video  # noqa: F401

from magicanimate_cli.cli import main
from magicanimate_cli.evaluation import pixels


def run_cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    """Run `magicanimate ARGS` as the console script does; return (exit code, stdout, stderr)."""
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def collections(tmp_path: Path) -> tuple[Path, Path]:
    """Generated and ground-truth folders of videos: `dance.mp4` (identical) and `jump/` frames (different)."""
    dance = structured_frames(18, 32, 32, seed=1)
    write_video(tmp_path / "truth" / "dance.mp4", dance)
    (tmp_path / "generated").mkdir()
    shutil.copy(tmp_path / "truth" / "dance.mp4", tmp_path / "generated" / "dance.mp4")
    write_frame_folder(tmp_path / "truth" / "jump", structured_frames(5, 32, 32, seed=2))
    write_frame_folder(tmp_path / "generated" / "jump", structured_frames(5, 32, 32, seed=3))
    return tmp_path / "generated", tmp_path / "truth"


def test_eval_on_two_folders_of_videos_writes_json_and_csv_with_every_video_and_the_aggregate(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, collections: tuple[Path, Path], lpips_weights_dir: Path
) -> None:
    generated, truth = collections
    code, out, err = run_cli(capsys, "eval", generated, truth, "--weights", lpips_weights_dir,
                             "--json", tmp_path / "r.json", "--csv", tmp_path / "r.csv", "--device", "cpu")
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["protocol"] == "gt-size" and report["psnr"] == "standard" and report["clips"] == "16"
    assert report["metrics"] == ["l1", "psnr", "ssim", "lpips"]
    for metric, file in (("fid", "pt_inception-2015-12-05-6726825d.pth"), ("fid-vid", "resnet-50-kinetics.pth"),
                         ("fvd", "i3d_pretrained_400.pt")):
        assert file in report["skipped"][metric] and f"skipped {metric}" in err
    dance, jump = report["videos"]
    assert (dance["name"], dance["frames"], jump["name"], jump["frames"]) == ("dance", 18, "jump", 5)
    assert dance["l1"] == 0.0 and dance["psnr"] == "inf" and dance["ssim"] == 1.0 and dance["lpips"] == 0.0
    assert jump["l1"] > 0 and 0 < jump["ssim"] < 1 and jump["lpips"] > 0
    aggregate = report["aggregate"]
    assert (aggregate["videos"], aggregate["frames"]) == (2, 23)
    assert aggregate["l1"] == pytest.approx((18 * dance["l1"] + 5 * jump["l1"]) / 23)  # pooled over frames
    assert aggregate["psnr"] == "inf"
    rows = (tmp_path / "r.csv").read_text().splitlines()
    assert rows[0] == "video,frames,l1,psnr,ssim,lpips"
    assert [row.split(",")[:2] for row in rows[1:]] == [["dance", "18"], ["jump", "5"], ["aggregate", "23"]]
    assert rows[1].split(",")[3] == "inf"
    assert "dance" in out and "aggregate" in out and "inf" in out


def test_identical_inputs_give_zero_l1_infinite_psnr_unit_ssim_and_zero_lpips(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, lpips_weights_dir: Path
) -> None:
    frames = write_frame_folder(tmp_path / "clip", structured_frames(4, 24, 24, seed=4))
    code, _, err = run_cli(capsys, "eval", frames, frames, "--weights", lpips_weights_dir,
                           "--metrics", "l1,psnr,ssim,lpips", "--json", tmp_path / "r.json")
    assert code == 0, err
    values = json.loads((tmp_path / "r.json").read_text())["aggregate"]
    assert values == {"videos": 1, "frames": 4, "l1": 0.0, "psnr": "inf", "ssim": 1.0, "lpips": 0.0}


def test_generated_frames_of_another_size_are_resized_to_the_ground_truth_size(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    truth = structured_frames(3, 20, 28, seed=5)
    doubled = truth.repeat(2, axis=1).repeat(2, axis=2)  # halving it back is exact
    write_frame_folder(tmp_path / "gt", truth)
    write_frame_folder(tmp_path / "gen", doubled)
    code, _, err = run_cli(capsys, "eval", tmp_path / "gen", tmp_path / "gt", "--metrics", "l1,ssim",
                           "--weights", tmp_path, "--json", tmp_path / "r.json")
    assert code == 0, err
    assert json.loads((tmp_path / "r.json").read_text())["aggregate"]["l1"] == 0.0


def test_differing_frame_counts_are_an_error_unless_align_truncate(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    frames = structured_frames(6, 16, 16, seed=6)
    write_frame_folder(tmp_path / "gen", frames)
    write_frame_folder(tmp_path / "gt", frames[:5])
    code, _, err = run_cli(capsys, "eval", tmp_path / "gen", tmp_path / "gt", "--metrics", "l1", "--weights", tmp_path)
    assert code == 1
    assert err.count("\n") == 1 and "6 frames" in err and "has 5" in err and "--align truncate" in err
    code, _, err = run_cli(capsys, "eval", tmp_path / "gen", tmp_path / "gt", "--metrics", "l1",
                           "--weights", tmp_path, "--align", "truncate", "--json", tmp_path / "r.json")
    assert code == 0, err
    assert json.loads((tmp_path / "r.json").read_text())["aggregate"] == {"videos": 1, "frames": 5, "l1": 0.0}


def test_requested_metric_without_its_weights_fails_naming_the_file_and_the_download_command(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    frames = write_frame_folder(tmp_path / "clip", structured_frames(2, 16, 16, seed=7))
    code, _, err = run_cli(capsys, "eval", frames, frames, "--metrics", "l1,fvd", "--weights", tmp_path / "w")
    assert code == 1
    assert str(tmp_path / "w" / "metrics" / "i3d_pretrained_400.pt") in err
    assert "magicanimate download-weights --metrics" in err and err.count("\n") == 1


def test_collections_pair_by_name_and_an_unpaired_video_is_an_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    frames = structured_frames(2, 16, 16, seed=8)
    write_frame_folder(tmp_path / "gen" / "a", frames)
    write_frame_folder(tmp_path / "gen" / "b", frames)
    write_frame_folder(tmp_path / "gt" / "a", frames)
    write_frame_folder(tmp_path / "gt" / "c", frames)
    code, _, err = run_cli(capsys, "eval", tmp_path / "gen", tmp_path / "gt", "--metrics", "l1", "--weights", tmp_path)
    assert code == 1
    assert "no generated video for c" in err and "no ground truth for b" in err


def test_legacy_psnr_flag_reports_disco_uint8_psnr(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    truth = structured_frames(3, 16, 16, seed=9)
    generated = np.clip(truth.astype(int) + 40, 0, 255).astype(np.uint8)
    write_frame_folder(tmp_path / "gt", truth)
    write_frame_folder(tmp_path / "gen", generated)
    code, _, err = run_cli(capsys, "eval", tmp_path / "gen", tmp_path / "gt", "--metrics", "psnr", "--legacy-psnr",
                           "--weights", tmp_path, "--json", tmp_path / "r.json")
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["psnr"] == "legacy-uint8"
    assert report["aggregate"]["psnr"] == pytest.approx(pixels.psnr_legacy_uint8(generated, truth).mean())
    assert report["aggregate"]["psnr"] != pytest.approx(pixels.psnr(generated, truth).mean())


def test_help_lists_every_option_with_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "eval", "--help")
    assert code == 0
    text = " ".join(out.replace("│", " ").split())
    for option, default in (("--metrics", "all"), ("--protocol", "gt-size"), ("--clips", "16"), ("--legacy-psnr", "off"),
                            ("--align", "strict"), ("--batch-size", "16"), ("--device", "auto"),
                            ("--weights", "$MAGICANIMATE_HOME, else ~/.cache/magicanimate"),
                            ("--json", "none"), ("--csv", "none")):
        assert option in text
        assert f"[default: {default}]" in text, option
