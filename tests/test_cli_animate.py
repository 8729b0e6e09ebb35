"""`magicanimate animate` through the real command, on real files, with the tiny official-layout model."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import run_cli as run
from conftest import start_paused_at
from media_helpers import encode_video, ordinary_video, save_image, truncate

from magicanimate_cli.animate.job import prepare_inputs
from magicanimate_cli.animate.settings import AnimateSettings
from magicanimate_cli.demo.inputs import make_motion_frames, make_reference_image
from magicanimate_cli.media.reader import open_motion
from magicanimate_cli.motion.palette import BACKGROUND, colourise

MAGICANIMATE = [sys.executable, "-m", "magicanimate_cli"]
FAST = ["--steps", "1", "--context-frames", "8", "--context-overlap", "2", "--seed", "3", "--quiet"]


@pytest.fixture(scope="module")
def media(tmp_path_factory, tiny_bundle):
    """A reference picture and DensePose-like clips: square, landscape, portrait; an NTSC-rate odd count."""
    root = tmp_path_factory.mktemp("media")
    ref = save_image(root / "ref.png", make_reference_image(160))
    clips = {
        "square": encode_video(root / "square.mp4", list(make_motion_frames(7, 128, 128)), Fraction(30000, 1001)),
        "landscape": encode_video(root / "landscape.mp4", list(make_motion_frames(5, 192, 128)), 25),
        "portrait": encode_video(root / "portrait.mp4", list(make_motion_frames(5, 128, 192)), 25),
    }
    return {"root": root, "ref": ref, **clips, "weights": tiny_bundle}


def probe(path: Path) -> tuple[int, Fraction, int, int]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return frames, stream.average_rate, stream.width, stream.height


def animate_args(media, motion, output, *extra) -> list:
    return ["animate", media["ref"], motion, "-o", output, "--weights", media["weights"], "--size", "128",
            *FAST, *extra]


# --------------------------------------------------------------------------------------- the main path


def test_console_script_writes_one_frame_per_motion_frame_at_the_motion_rate(media, tmp_path):
    out = tmp_path / "out.mp4"
    proc = subprocess.run([*MAGICANIMATE, *map(str, animate_args(media, media["square"], out))],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    frames, rate, width, height = probe(out)
    assert (frames, rate, width, height) == (7, Fraction(30000, 1001), 128, 128)


def test_sidecar_records_settings_seed_weights_versions_device_and_timings(media, tmp_path, capsys):
    out = tmp_path / "clip.mp4"
    code, stdout, _ = run(animate_args(media, media["square"], out, "--json"), capsys)
    assert code == 0
    summary = json.loads(stdout.strip())  # --json: exactly one line on stdout
    assert summary["status"] == "ok" and summary["frames"] == 7 and summary["seed"] == 3
    record = json.loads((tmp_path / "clip.mp4.json").read_text())
    assert record["seed"] == 3
    assert record["settings"]["steps"] == 1 and record["settings"]["context_frames"] == 8
    assert record["settings"]["fit"] == "pad" and record["settings"]["guidance"] == 7.5
    assert record["device"] == "cpu" and record["dtype"] == "fp32"
    assert record["weights_sources"] is None  # the tiny bundle was not fetched by download-weights
    assert {"torch", "diffusers", "av", "numpy", "python"} <= set(record["versions"])
    weights = {Path(w["path"]).name: w["bytes"] for w in record["weights"]}
    assert weights["temporal_attention.ckpt"] == (
        media["weights"] / "MagicAnimate/temporal_attention/temporal_attention.ckpt").stat().st_size
    assert record["timings"]["sample_s"] > 0 and record["timings"]["total_s"] >= record["timings"]["sample_s"]
    assert record["output"]["frames"] == 7 and record["output"]["fps"] == "30000/1001"


def test_random_seed_is_chosen_printed_and_recorded_when_not_given(media, tmp_path, capsys):
    out = tmp_path / "noseed.mp4"
    args = [a for a in animate_args(media, media["square"], out, "--json") if a not in ("--seed", "3")]
    code, stdout, _ = run(args, capsys)
    assert code == 0
    seed = json.loads(stdout)["seed"]
    assert json.loads((tmp_path / "noseed.mp4.json").read_text())["seed"] == seed


@pytest.mark.parametrize("fit", ["pad", "crop", "stretch"])
@pytest.mark.parametrize("clip", ["landscape", "portrait"])
def test_output_keeps_the_motion_aspect_for_every_fit(media, tmp_path, capsys, fit, clip):
    out = tmp_path / f"{clip}-{fit}.mp4"
    code, _, err = run(animate_args(media, media[clip], out, "--fit", fit), capsys)
    assert code == 0, err
    frames, _, width, height = probe(out)
    assert frames == 5
    assert (width, height) == ((192, 128) if clip == "landscape" else (128, 192))


def test_frame_selection_and_fps_override(media, tmp_path, capsys):
    out = tmp_path / "sel.webm"
    code, _, err = run(animate_args(media, media["square"], out, "--start", "1", "--frame-stride", "2",
                                    "--max-frames", "2", "--fps", "12"), capsys)
    assert code == 0, err
    frames, rate, _, _ = probe(out)
    assert frames == 2 and rate == 12


def test_png_folder_output_and_grid(media, tmp_path, capsys):
    out = tmp_path / "frames"
    code, _, err = run(animate_args(media, media["landscape"], out, "--grid"), capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.glob("*.png")) == [f"frame_{i:05d}.png" for i in range(5)]
    grid = tmp_path / "frames-grid"
    assert len(list(grid.glob("*.png"))) == 5


# --------------------------------------------------------------------------------------- the motion's format


def render_folder(path: Path, width: int, height: int, border: np.ndarray | None = None) -> Path:
    """A lossless DensePose render as a frame folder; `border` labels, if given, are painted over its 4-pixel ring."""
    path.mkdir()
    for index, frame in enumerate(make_motion_frames(5, width, height)):
        if border is not None:
            ring = np.ones((height, width), dtype=bool)
            ring[4:-4, 4:-4] = False
            frame[ring] = colourise(border)[ring]
        save_image(path / f"{index}.png", frame)
    return path


def letterbox(inputs) -> np.ndarray:
    """The pixels pad mode added around the motion, over all frames."""
    outside = np.ones(inputs.motion.shape[1:3], dtype=bool)
    outside[inputs.fit.working_box.slices()] = False
    return inputs.motion[:, outside]


def test_pad_letterboxes_a_non_square_render_with_the_clips_own_background_colour(media, tmp_path, capsys):
    first = next(iter(open_motion(media["landscape"])))  # H.264 moved viridis(0) a few levels
    own = tuple(int(c) for c in first[0, 0])
    assert max(abs(a - b) for a, b in zip(own, BACKGROUND)) <= 12
    inputs = prepare_inputs(AnimateSettings(size=128, fit="pad"), media["ref"], media["landscape"])
    bars = letterbox(inputs)
    assert bars.shape[1] == 128 * (128 - 85)  # 192×128 → 128×85 content: 21 and 22 rows of bars
    assert np.all(bars == own)  # exactly the clip's background, never black
    out = tmp_path / "landscape.mp4"
    code, _, err = run(animate_args(media, media["landscape"], out), capsys)
    assert code == 0 and "warning" not in err, err
    record = json.loads((tmp_path / "landscape.mp4.json").read_text())["inputs"]
    assert record["fit"]["background"] == list(own)
    assert record["motion_format"] == {"background": list(own), "background_from": "border",
                                       "looks_like_render": True}


def test_pad_falls_back_to_viridis_zero_when_the_border_has_no_dominant_colour(media, tmp_path):
    stripes = np.tile(np.repeat(np.array([5, 12, 20, 9]), 3), 16)[None, :192].repeat(128, axis=0)
    folder = render_folder(tmp_path / "striped", 192, 128, border=stripes)
    inputs = prepare_inputs(AnimateSettings(size=128, fit="pad"), media["ref"], folder)
    assert np.all(letterbox(inputs) == (68, 1, 84))
    assert inputs.fit.background == BACKGROUND
    assert inputs.source["motion_format"]["background_from"] == "default viridis(0)"


@pytest.mark.parametrize("kind", ["ordinary video", "render", "render in mp4"])
def test_a_motion_that_does_not_look_like_a_render_gets_one_warning_line_naming_it(media, tmp_path, capsys, kind):
    motion = {"ordinary video": lambda: ordinary_video(tmp_path / "dance.mp4"),
              "render": lambda: render_folder(tmp_path / "render", 128, 128),
              "render in mp4": lambda: media["square"]}[kind]()
    out = tmp_path / "out.mp4"
    code, _, err = run(animate_args(media, motion, out), capsys)  # --quiet: warnings still show
    assert code == 0 and out.is_file(), err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    if kind == "ordinary video":
        assert warnings == [f"warning: {motion}: does not look like a DensePose render in MagicAnimate's format "
                            "(viridis body parts on a (68, 1, 84) background); for an ordinary video use "
                            "--motion-from-video"]
    else:
        assert warnings == []


# --------------------------------------------------------------------------------------- bad input


def _bad_file(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    "case",
    ["missing reference", "reference not an image", "motion not decodable", "motion truncated",
     "motion with no frames", "empty frame folder", "unwritable output type", "output folder not creatable",
     "width not multiple of 8", "steps below 1", "overlap not below frames", "context frames above 24",
     "incomplete weights"],
)
def test_bad_input_gives_one_line_error_nonzero_exit_and_no_output(media, tmp_path, capsys, case):
    ref, motion, out = media["ref"], media["square"], tmp_path / "out.mp4"
    extra: list[str] = []
    weights = media["weights"]
    named = None
    if case == "missing reference":
        ref = named = tmp_path / "nope.png"
    elif case == "reference not an image":
        ref = named = _bad_file(tmp_path, "fake.png", b"this is not a png")
    elif case == "motion not decodable":
        motion = named = _bad_file(tmp_path, "fake.mp4", b"\x00" * 4096)
    elif case == "motion truncated":
        motion = named = truncate(media["square"], 0.5, tmp_path / "cut.mp4")
    elif case == "motion with no frames":
        motion = named = encode_video(tmp_path / "empty.mp4", [], 25)
    elif case == "empty frame folder":
        motion = named = tmp_path / "frames_in"
        motion.mkdir()
    elif case == "unwritable output type":
        out = named = tmp_path / "out.avi"
    elif case == "output folder not creatable":
        blocker = _bad_file(tmp_path, "blocker", b"a file, not a folder")
        out = blocker / "sub" / "out.mp4"
        named = blocker
    elif case == "width not multiple of 8":
        extra = ["--width", "100", "--height", "128"]
    elif case == "steps below 1":
        extra = ["--steps", "0"]
    elif case == "overlap not below frames":
        extra = ["--context-overlap", "8"]
    elif case == "context frames above 24":
        extra = ["--context-frames", "25"]
    elif case == "incomplete weights":
        weights = tmp_path / "weights"
        shutil.copytree(media["weights"], weights)
        named = weights / "MagicAnimate/densepose_controlnet/diffusion_pytorch_model.safetensors"
        named.unlink()
    args = ["animate", ref, motion, "-o", out, "--weights", weights, "--size", "128", *FAST, *extra]
    code, stdout, err = run(args, capsys)
    assert code != 0
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    if named is not None:
        assert str(named) in lines[0]
    if case == "incomplete weights":
        assert "magicanimate download-weights" in lines[0]
    assert not out.exists()
    assert not [p for p in tmp_path.rglob("*") if ".partial" in p.name]


def test_debug_flag_shows_the_traceback(media, tmp_path):
    proc = subprocess.run([*MAGICANIMATE, "animate", str(tmp_path / "nope.png"), str(media["square"]), "-o",
                           str(tmp_path / "o.mp4"), "--debug"], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "nope.png" in proc.stderr


def test_ctrl_c_exits_130_and_leaves_no_partial_output(media, tmp_path):
    out = tmp_path / "out.mp4"
    proc = start_paused_at("encode", animate_args(media, media["square"], out, "--grid"))
    partial = [p.name for p in tmp_path.iterdir() if ".partial" in p.name]
    assert len(partial) == 2  # the worst moment: the video and the grid are half written
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "interrupted"
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------- batch


@pytest.fixture
def batch_dirs(media, tmp_path):
    refs, motions = tmp_path / "refs", tmp_path / "motions"
    refs.mkdir()
    motions.mkdir()
    shutil.copy(media["ref"], refs / "alice.png")
    shutil.copy(media["square"], motions / "a.mp4")
    shutil.copy(media["landscape"], motions / "b.mp4")
    (motions / "c.mp4").write_bytes(b"\x00" * 2048)  # corrupt
    return refs, motions


def test_batch_writes_good_items_reports_the_bad_one_and_exits_nonzero(media, batch_dirs, tmp_path, capsys):
    refs, motions = batch_dirs
    out = tmp_path / "out"
    code, _, err = run(["animate", refs, motions, "-o", out, "--weights", media["weights"], "--size", "128",
                        *FAST], capsys)
    assert code != 0
    assert sorted(p.name for p in out.glob("*.mp4")) == ["alice-a.mp4", "alice-b.mp4"]
    assert "c.mp4" in err
    # --skip-existing resumes: the written items are not redone
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4")}
    code, stdout, _ = run(["animate", refs, motions, "-o", out, "--weights", media["weights"], "--size", "128",
                           *FAST, "--skip-existing", "--json"], capsys)
    summary = json.loads(stdout)
    assert code != 0 and summary["skipped"] == 2 and summary["done"] == 0 and summary["failed"] == 1
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4")} == stamps


def test_shards_split_a_batch_into_disjoint_parts_that_cover_it(media, batch_dirs, tmp_path, capsys):
    refs, motions = batch_dirs
    (motions / "c.mp4").unlink()
    shutil.copy(media["portrait"], motions / "c.mp4")
    written = []
    for shard in ("1/2", "2/2"):
        out = tmp_path / f"shard{shard[0]}"
        code, stdout, _ = run(["animate", refs, motions, "-o", out, "--weights", media["weights"], "--size",
                               "128", *FAST, "--shard", shard, "--json"], capsys)
        assert code == 0
        written.append({Path(i["output"]).name for i in json.loads(stdout)["items"]})
    assert written[0].isdisjoint(written[1])
    assert written[0] | written[1] == {"alice-a.mp4", "alice-b.mp4", "alice-c.mp4"}


def test_pairs_csv_runs_only_the_listed_pairs(media, batch_dirs, tmp_path, capsys):
    refs, motions = batch_dirs
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("reference,motion,output\nrefs/alice.png,motions/b.mp4,chosen.gif\n")
    out = tmp_path / "out"
    code, _, err = run(["animate", "--pairs", pairs, "-o", out, "--weights", media["weights"], "--size", "128",
                        *FAST], capsys)
    assert code == 0, err
    assert [p.name for p in out.iterdir() if not p.name.endswith(".json")] == ["chosen.gif"]


def test_help_lists_every_option_with_its_default():
    env = {**os.environ, "COLUMNS": "240", "NO_COLOR": "1"}
    proc = subprocess.run([*MAGICANIMATE, "animate", "--help"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0
    options = proc.stdout.split("\nOptions:\n", 1)[1]
    # one entry per option: its line starting with "  -" and the more deeply indented lines its help wraps onto
    entries = [" ".join(entry.split()) for entry in re.split(r"\n(?=  -)", options) if "--help" not in entry]
    assert len(entries) >= 24
    missing = [entry.split()[0] for entry in entries if "[default:" not in entry and "[required]" not in entry]
    assert missing == []


def test_version_flag_prints_the_package_version():
    from magicanimate_cli import __version__

    proc = subprocess.run([*MAGICANIMATE, "--version"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == f"magicanimate {__version__}"


def test_progress_shows_denoise_and_decode_phases_unless_quiet(media, tmp_path, capsys):
    args = [a for a in animate_args(media, media["square"], tmp_path / "p.mp4") if a != "--quiet"]
    code, stdout, err = run(args, capsys)
    assert code == 0 and stdout == ""
    assert "denoise" in err and "decode" in err and "seed 3" in err and "wrote" in err
    code, stdout, err = run(animate_args(media, media["square"], tmp_path / "q.mp4"), capsys)
    assert code == 0 and stdout == "" and err == ""
