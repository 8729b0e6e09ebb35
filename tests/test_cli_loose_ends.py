"""What a newcomer meets first: a failing model reported in one line, a model's own warnings kept out of the
terminal, frame selection for `pose`, help that lists the choices, and command modules that stand alone."""

from __future__ import annotations

import ast
import subprocess
import sys
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli as run
from media_helpers import encode_video, frame_folder
from pose_standin import MARKER, FailingDensePose, WarningDensePose, moving_blobs, save_module

from magicanimate_cli.media.reader import open_motion
from magicanimate_cli.runtime.model_guard import ModelRunError, failure_reason, running_model

COMMANDS_DIR = Path(__file__).resolve().parents[1] / "src" / "magicanimate_cli" / "commands"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("loose-end-models")
    return {"failing": save_module(root / "failing.torchscript", FailingDensePose()),
            "warning": save_module(root / "warning.torchscript", WarningDensePose())}


def frames_with_marker_at(index: int, count: int = 5) -> list[np.ndarray]:
    frames = moving_blobs(count)
    frames[index][0, 0] = MARKER
    return frames



def pose_args(video: Path, output: Path, model: Path, *extra) -> list:
    return ["pose", video, "-o", output, "--pose-model", model, "--device", "cpu", "-q", *extra]


# ------------------------------------------------------------------------------------- a model that fails


def test_a_model_that_fails_while_running_is_one_line_naming_model_frame_video_and_reason(models, tmp_path,
                                                                                          capsys):
    video = frame_folder(tmp_path / "clip", frames_with_marker_at(3))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, out, err = run(pose_args(video, out_dir / "render.mp4", models["failing"]), capsys)
    assert code == 1
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"error: {models['failing']}: failed on frame 3 of {video}: ")
    assert err.strip().endswith("AssertionError: input image must not be magenta in its corner")
    assert "TorchScript" not in err
    assert list(out_dir.iterdir()) == []


def test_the_failing_frame_is_counted_in_the_source_video_when_frames_are_selected(models, tmp_path, capsys):
    video = frame_folder(tmp_path / "clip", frames_with_marker_at(4, count=6))
    code, _, err = run(pose_args(video, tmp_path / "r.mp4", models["failing"], "--start", "2", "--frame-stride", "2"),
                       capsys)
    assert code == 1 and "failed on frame 4 of" in err, err


def test_debug_shows_the_models_traceback(models, tmp_path):
    video = frame_folder(tmp_path / "clip", frames_with_marker_at(0, count=2))
    result = subprocess.run([sys.executable, "-m", "magicanimate_cli", *map(str, pose_args(
        video, tmp_path / "r.mp4", models["failing"])), "--debug"], capture_output=True, text=True)
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "TorchScript interpreter" in result.stderr
    assert "ModelRunError" in result.stderr
    assert not (tmp_path / "r.mp4").exists()


def test_failure_reason_takes_the_closing_line_of_a_torchscript_report_and_the_first_of_others():
    report = ("The following operation failed in the TorchScript interpreter.\nTraceback of TorchScript ...\n"
              "  File \"x.py\", line 3\nRuntimeError: AssertionError: bad input\n")
    assert failure_reason(RuntimeError(report)) == "AssertionError: bad input"
    assert failure_reason(RuntimeError("The following operation failed in the TorchScript interpreter.\n"
                                       "RuntimeError: shapes differ")) == "RuntimeError: shapes differ"
    assert failure_reason(ValueError("first\nsecond")) == "ValueError: first"
    assert failure_reason(KeyError()) == "KeyError"


# ------------------------------------------------------------------------------- warnings from a model's code


def test_a_models_own_warnings_stay_out_of_the_terminal(models, tmp_path, capsys):
    video = frame_folder(tmp_path / "clip", moving_blobs(3))
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        code, out, err = run(pose_args(video, tmp_path / "r.mp4", models["warning"]), capsys)
    assert code == 0, err
    assert "meshgrid" not in err and "Warning" not in err
    assert (tmp_path / "r.mp4").exists()


def test_debug_shows_a_models_warning_once(models, tmp_path):
    video = frame_folder(tmp_path / "clip", moving_blobs(3))
    result = subprocess.run([sys.executable, "-m", "magicanimate_cli", *map(str, pose_args(
        video, tmp_path / "r.mp4", models["warning"])), "--debug"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("meshgrid") == 1, result.stderr
    assert result.stderr.startswith("debug: warning from a model's code")


def test_our_own_warnings_raised_while_a_model_runs_still_reach_the_user():
    from magicanimate_cli.runtime import model_guard

    ours = compile("import warnings\nwarnings.warn('ours', UserWarning)\n", model_guard.__file__, "exec")
    theirs = compile("import warnings\nwarnings.warn('theirs', UserWarning)\n", "/elsewhere/lib.py", "exec")
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with running_model(Path("m.pt"), "frame 0"):
            exec(ours, {})
            exec(theirs, {})
    assert [str(w.message) for w in shown] == ["ours"]


def test_our_own_errors_pass_through_the_guard_unchanged():
    from magicanimate_cli.runtime.errors import InputError

    with pytest.raises(InputError, match="^as it was$"):
        with running_model(Path("m.pt"), "frame 0"):
            raise InputError("as it was")
    with pytest.raises(ModelRunError, match=r"^m\.pt: failed on frame 7: ZeroDivisionError: division by zero$"):
        with running_model(Path("m.pt"), "frame 7"):
            1 / 0


# ------------------------------------------------------------------------------------ frame selection for pose


def test_pose_max_frames_renders_only_those_frames_at_the_input_rate(tmp_path, capsys, pose_standin):
    video = encode_video(tmp_path / "clip.mp4", moving_blobs(8), 25)
    code, _, err = run(pose_args(video, tmp_path / "r.mp4", pose_standin["model"], "--max-frames", "3"), capsys)
    assert code == 0, err
    clip = open_motion(tmp_path / "r.mp4")
    assert len(clip) == 3 and clip.fps == 25


def test_pose_frame_stride_and_start_select_as_animate_does_and_divide_the_rate(tmp_path, capsys, pose_standin):
    frames = moving_blobs(9)
    video = encode_video(tmp_path / "clip.mp4", frames, Fraction(30000, 1001))
    whole = tmp_path / "whole"
    picked = tmp_path / "picked"
    assert run(pose_args(video, whole, pose_standin["model"]), capsys)[0] == 0
    code, _, err = run(pose_args(video, picked, pose_standin["model"], "--start", "1", "--frame-stride", "3"),
                       capsys)
    assert code == 0, err
    every = open_motion(whole).read_all()
    chosen = open_motion(picked).read_all()
    assert len(chosen) == 3 and (chosen == every[1::3]).all()
    sidecar = (tmp_path / "picked.json").read_text()
    assert '"start": 1' in sidecar and '"stride": 3' in sidecar
    video_out = tmp_path / "picked.mp4"
    assert run(pose_args(video, video_out, pose_standin["model"], "--frame-stride", "3"), capsys)[0] == 0
    assert open_motion(video_out).fps == Fraction(10000, 1001)


def test_pose_start_beyond_the_end_is_one_line_naming_the_video(tmp_path, capsys, pose_standin):
    video = encode_video(tmp_path / "clip.mp4", moving_blobs(4), 25)
    code, _, err = run(pose_args(video, tmp_path / "r.mp4", pose_standin["model"], "--start", "9"), capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1 and str(video) in err and "beyond the end" in err
    assert not (tmp_path / "r.mp4").exists()


# ------------------------------------------------------------------------------------------ help and usage


def help_of(command: str, capsys) -> str:
    code, out, _ = run([command, "--help"], capsys)
    assert code == 0
    return out


@pytest.mark.parametrize("command, option, choices", [
    ("animate", "--fit", "pad|crop|stretch"), ("animate", "--dtype", "auto|fp16|bf16|fp32"),
    ("animate", "--format", "mp4|webm|gif|png"), ("animate", "--people", "all|largest"),
    ("fuse-long", "--noise", "shared|independent"), ("fuse-long", "--fusion", "mean|pyramid|none"),
    ("pose", "--people", "all|largest"), ("pose", "--format", "mp4|webm|gif|png"),
    ("eval", "--protocol", "gt-size|disco"), ("eval", "--clips", "16|video|sliding"),
    ("eval", "--align", "strict|truncate"), ("eval", "--device", "auto|cuda|mps|cpu"),
    ("download-weights", "--variant", "fp32|fp16"), ("download-weights", "--pose-backbone", "r50|r101"),
])
def test_help_lists_the_choices_of_every_choice_option(command, option, choices, capsys):
    assert f"{option} <{choices}>" in help_of(command, capsys)


@pytest.mark.parametrize("command", ["animate", "fuse-long", "pose", "eval", "download-weights"])
def test_flags_show_no_metavar_in_help(command, capsys):
    lines = help_of(command, capsys).splitlines()
    flags = [line for line in lines if "<bool>" in line]
    assert flags == []
    assert any(line.strip().startswith("--help ") for line in lines)


def test_root_help_shows_version_as_a_flag(capsys):
    assert "--version  Print the version" in help_of_root(capsys)


def help_of_root(capsys) -> str:
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    return out


@pytest.mark.parametrize("command, usage", [
    ("animate", "Usage: magicanimate animate REFERENCE MOTION -o OUTPUT [OPTIONS]"),
    ("fuse-long", "Usage: magicanimate fuse-long REFERENCE MOTION -o OUTPUT [OPTIONS]"),
    ("pose", "Usage: magicanimate pose VIDEO -o OUTPUT [OPTIONS]"),
    ("eval", "Usage: magicanimate eval GENERATED GROUND_TRUTH [OPTIONS]"),
    ("download-weights", "Usage: magicanimate download-weights [OPTIONS]"),
])
def test_the_usage_line_says_what_a_user_must_give(command, usage, capsys):
    assert help_of(command, capsys).splitlines()[0] == usage


def test_a_word_outside_a_choice_is_a_usage_error_listing_the_choices(capsys):
    code, out, err = run(["animate", "ref.png", "motion.mp4", "-o", "o.mp4", "--fit", "squash"], capsys)
    assert code == 2 and out == ""
    assert "Invalid value for '--fit'" in err and all(c in err for c in ("'pad'", "'crop'", "'stretch'"))


def test_the_command_lines_choice_words_equal_the_settings_own():
    from typing import get_args

    from magicanimate_cli.commands import common, evaluate
    from magicanimate_cli.evaluation.device import DEVICE_CHOICES
    from magicanimate_cli.densepose.settings import PEOPLE_CHOICES

    assert get_args(common.People) == PEOPLE_CHOICES
    assert evaluate.DEVICE_CHOICES == DEVICE_CHOICES


# ------------------------------------------------------------------------------------- command modules


def command_imports(path: Path) -> set[str]:
    """The sibling command modules `path` imports (relative `.x` imports; `common` is where shared pieces live)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names.add(node.module or "")
    return names


def test_command_modules_share_pieces_through_common_and_never_import_each_other():
    modules = {p.stem for p in COMMANDS_DIR.glob("*.py")} - {"__init__", "common"}
    assert {"animate", "pose", "fuse_long", "evaluate", "download"} <= modules
    for name in modules:
        assert command_imports(COMMANDS_DIR / f"{name}.py") <= {"common"}, name
    assert command_imports(COMMANDS_DIR / "common.py") == set()
