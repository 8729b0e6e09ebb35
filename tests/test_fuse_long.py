"""`magicanimate fuse-long`: window layouts, the long-video options, several processes, checkpoints and flat
memory, through the real command on real files with the tiny official-layout model.

Runs use 128×128 frames, windows of 8 frames overlapping by 2 and 1–4 steps, so that a few windows exist
without the tiny model's cost adding up.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import cli_exit_code as exit_code
from conftest import run_cli, start_paused_at
from media_helpers import encode_video, ordinary_video, save_image

from magicanimate_cli.animate.job import prepare_inputs
from magicanimate_cli.animate.settings import AnimateSettings
from magicanimate_cli.demo.inputs import make_motion_frames, make_reference_image
from magicanimate_cli.engine.sampler import SamplerConfig
from magicanimate_cli.long.checkpoint import load_checkpoint
from magicanimate_cli.long.job import open_long_inputs
from magicanimate_cli.long.sampling import sample_long
from magicanimate_cli.media.reader import open_motion

MAGICANIMATE = [sys.executable, "-m", "magicanimate_cli"]
K, S, SEED = 8, 2, 3
SMALL = ["--device", "cpu", "--size", "128", "--context-frames", str(K), "--context-overlap", str(S),
         "--seed", str(SEED), "--quiet"]
FRAMES = 14  # padded to 16: windows 0..7, 6..13 and 12..15 + 0..3 (wrapping), or 8..15 without wrap


def single_threaded() -> dict[str, str]:
    """Subprocesses share two cores with the test process: one thread each avoids oversubscription."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def cli(args: list, capsys) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of one in-process run."""
    return run_cli(args, capsys)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Sample in this process with one thread, as the subprocesses do: results compared across processes are
    then computed alike, and two cores shared with other work are not oversubscribed."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def media(tmp_path_factory, tiny_bundle) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("long-media")
    files = {"root": root, "weights": tiny_bundle,
             "ref": save_image(root / "ref.png", make_reference_image(128))}
    for n in (16, 17, 30, 100):  # layouts only: the frames' content and size do not matter
        files[f"plan{n}"] = encode_video(root / f"plan{n}.mp4", list(make_motion_frames(n, 32, 32)))
    for n in (FRAMES, 2 * K, 8 * K):
        files[f"motion{n}"] = encode_video(root / f"motion{n}.mp4", list(make_motion_frames(n, 128, 128, seed=1)))
    return files


def run_args(media, motion: str, output: Path, *extra) -> list:
    return ["fuse-long", media["ref"], media[motion], "-o", output, "--weights", media["weights"], *SMALL, *extra]


# ------------------------------------------------------------------------------------------------ --plan


def official_windows(frames: int, context: int, overlap: int) -> list[list[int]]:
    """MagicAnimate's `uniform` context scheduler at step 0 (closed loop, stride 1): a window every K − S
    frames from 0, wrapping modulo the (padded) length; one window when the video is no longer than K."""
    if frames <= context:
        return [list(range(frames))]
    return [[(start + i) % frames for i in range(context)] for start in range(0, frames, context - overlap)]


def parse_plan(text: str) -> tuple[list[list[int]], list[str], str]:
    """(windows from the table, chart rows, coverage row) of a `--plan` report printed one column per frame."""
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["window", "frames"])
    columns = len(lines[header].split())  # window, frames, [process,] covers
    windows = []
    for line in lines[header + 1:]:
        if not line.strip():
            break
        length, covers = line.split(None, columns - 1)[1::columns - 2]
        frames = []
        for run in covers.split(", "):
            first, _, last = run.partition("..")
            frames += list(range(int(first), int(last or first) + 1))
        assert len(frames) == int(length)
        windows.append(frames)
    rows = [m.group(1) for m in map(re.compile(r"^\s*\d+ \|(.*)\|$").match, lines) if m]
    cover = next(m.group(1) for m in map(re.compile(r"^\s*cover \|(.*)\|$").match, lines) if m)
    return windows, rows, cover


@pytest.mark.parametrize("wrap", [True, False], ids=["wrap", "no-wrap"])
@pytest.mark.parametrize("overlap", [0, 4, 8])
@pytest.mark.parametrize("frames", [16, 17, 30, 100])
def test_plan_covers_every_padded_frame_with_windows_of_K_frames_without_loading_models(
        media, tmp_path, capsys, monkeypatch, frames, overlap, wrap):
    monkeypatch.setenv("COLUMNS", "200")  # wide enough for one chart column per frame
    code, out, err = cli(["fuse-long", media["ref"], media[f"plan{frames}"], "-o", tmp_path / "out.mp4",
                          "--weights", tmp_path / "no-weights-here", "--context-overlap", overlap,
                          "--wrap" if wrap else "--no-wrap", "--plan"], capsys)
    assert code == 0, err
    padded = -(-frames // 16) * 16
    windows, rows, cover = parse_plan(out)
    assert all(len(w) == 16 for w in windows)
    coverage = [sum(f in w for w in windows) for f in range(padded)]
    assert min(coverage) >= 1 and sorted({f for w in windows for f in w}) == list(range(padded))
    assert cover == "".join(str(c) for c in coverage)
    assert rows == ["".join("█" if f in w else "·" for f in range(padded)) for w in windows]
    assert (f"padded to {padded} by repeating the last frame" in out) == (padded != frames)
    if wrap:
        assert windows == official_windows(padded, 16, overlap)
    else:
        assert all(w == list(range(w[0], w[0] + 16)) for w in windows)
        assert windows[-1][-1] == padded - 1
    assert not (tmp_path / "out.mp4").exists()


def test_plan_reports_the_cost_per_step_and_per_run_and_each_process_share(media, tmp_path, capsys):
    code, out, err = cli(["fuse-long", media["ref"], media["plan100"], "-o", tmp_path / "out.mp4", "--plan",
                          "--steps", "10", "--nproc", "3"], capsys)
    assert code == 0, err
    # 112 padded frames, windows every 12 frames: 10 windows of 16, both guidance halves through the UNet.
    assert re.search(r"UNet frame-passes\s+320\s+3,200\n", out)
    assert re.search(r"appearance-encoder passes\s+3\s+30\n", out)  # once per process and step
    assert re.search(r"UNet frame-passes, busiest process\s+128\s+1,280\n", out)  # 4 + 3 + 3 windows
    owners = [int(line.split()[2]) for line in out.splitlines() if re.match(r"^\s+\d+\s+16\s+\d\s+\d", line)]
    assert owners == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_plan_needs_no_output_but_a_run_does(media, tmp_path, capsys):
    code, out, err = cli(["fuse-long", media["ref"], media["plan30"], "--plan"], capsys)
    assert code == 0, err
    assert "windows:" in out
    code, _, err = cli(["fuse-long", media["ref"], media["plan30"], "--weights", tmp_path / "none"], capsys)
    assert code != 0 and err.strip() == "error: -o/--output is required (only --plan runs without it)"


def test_plan_imports_no_torch(media, tmp_path):
    """`--plan` answers in well under a second because it loads no model library; torch alone takes seconds."""
    probe = ("import sys\n"
             "from magicanimate_cli.cli import main\n"
             "main(sys.argv[1:])\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'diffusers')))\n")
    proc = subprocess.run([sys.executable, "-c", probe, "fuse-long", str(media["ref"]), str(media["plan100"]),
                           "--plan", "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    plan_json, imported = proc.stdout.strip().splitlines()
    assert json.loads(plan_json)["frames"] == 100
    assert imported == "[]"


@pytest.mark.parametrize("wrap", [True, False], ids=["wrap", "no-wrap"])
def test_plan_json_gives_the_windows_their_frames_and_the_costs_of_the_text_report(media, tmp_path, capsys,
                                                                                     monkeypatch, wrap):
    monkeypatch.setenv("COLUMNS", "200")
    common = ["fuse-long", media["ref"], media["plan100"], "--plan", "--steps", "10", "--nproc", "3",
              "--wrap" if wrap else "--no-wrap"]
    code, text, err = cli(common, capsys)
    assert code == 0, err
    code, out, err = cli([*common, "--json"], capsys)
    assert code == 0, err
    plan = json.loads(out)
    windows, _, cover = parse_plan(text)
    assert (plan["frames"], plan["padded"], plan["context_frames"], plan["context_overlap"]) == (100, 112, 16, 4)
    assert [w["frames"] for w in plan["windows"]] == windows
    if wrap:
        assert windows == official_windows(112, 16, 4)
    owners = [int(line.split()[2]) for line in text.splitlines() if re.match(r"^\s+\d+\s+16\s+\d\s+\d", line)]
    assert [w["process"] for w in plan["windows"]] == owners and sorted(set(owners)) == [0, 1, 2]
    assert plan["windows"][-1]["covers"] == ("108..111, 0..11" if wrap else "96..111")
    assert "".join(str(c) for c in plan["coverage"]) == cover
    cost = plan["cost"]
    unet, controlnet, appearance = (cost["per_step"][k] for k in
                                    ("unet_frame_passes", "controlnet_frames", "appearance_passes"))
    assert re.search(rf"UNet frame-passes\s+{unet:,}\s+{10 * unet:,}\n", text)
    assert re.search(rf"ControlNet frame-passes\s+{controlnet:,}\s+{10 * controlnet:,}\n", text)
    assert re.search(rf"appearance-encoder passes\s+{appearance}\s+{10 * appearance}\n", text)
    assert cost["run"]["unet_frame_passes"] == 10 * unet == 10 * 2 * 16 * len(windows)
    busiest = cost["busiest_process"]["per_step"]["unet_frame_passes"]
    assert re.search(rf"UNet frame-passes, busiest process\s+{busiest}\s+{10 * busiest:,}\n", text)
    assert f"this layout costs {cost['relative_to_single_pass']:.2f}×" in text


# ------------------------------------------------------------------------------------ the long-video options


@pytest.fixture(scope="module")
def inputs(media, tmp_path_factory):
    """The fitted reference and motion frames exactly as the command reads them (frames in a FrameStore)."""
    settings = AnimateSettings(size=128, context_frames=K, context_overlap=S)
    prepared = open_long_inputs(settings, media["ref"], media[f"motion{FRAMES}"],
                                tmp_path_factory.mktemp("store"), keep=None)
    yield prepared
    prepared.motion.close()


def long_latents(animator, inputs, config: SamplerConfig, noise: str = "shared", **kwargs) -> torch.Tensor:
    padded = -(-FRAMES // config.context_frames) * config.context_frames
    return sample_long(animator, inputs.reference, inputs.motion.padded(padded), config, SEED, noise,
                       **kwargs)[:, :, :FRAMES]


BASE = SamplerConfig(steps=1, context_frames=K, context_overlap=S)


@pytest.fixture(scope="module")
def base_latents(animator, inputs) -> torch.Tensor:
    return long_latents(animator, inputs, BASE)


def test_mean_shared_wrap_samples_exactly_what_the_engine_default_path_samples(animator, inputs, base_latents):
    with torch.no_grad():
        engine = animator.sample(inputs.reference, np.stack(list(inputs.motion)), BASE, SEED)
    assert torch.equal(base_latents, engine)


@pytest.mark.parametrize("change", [{"fusion": "none"}, {"fusion": "pyramid"}, {"wrap": False},
                                    {"noise": "independent"}],
                         ids=["fusion-none", "fusion-pyramid", "no-wrap", "noise-independent"])
def test_each_long_video_option_changes_the_result(animator, inputs, base_latents, change):
    noise = change.get("noise", "shared")
    config = replace(BASE, **{k: v for k, v in change.items() if k != "noise"})
    latents = long_latents(animator, inputs, config, noise)
    assert (latents - base_latents).abs().max() > 1e-2


# --------------------------------------------------------------------------------------- several processes


def test_two_processes_give_the_single_process_latents_and_one_video(media, tmp_path, capsys, base_latents):
    out, checkpoint = tmp_path / "two.mp4", tmp_path / "two.ckpt"
    code, _, err = cli([*run_args(media, f"motion{FRAMES}", out, "--steps", "1", "--nproc", "2",
                                  "--checkpoint", checkpoint)], capsys)
    assert code == 0, err
    saved = load_checkpoint(checkpoint)
    assert saved.next_step == 1
    assert (saved.latents[:, :, :FRAMES] - base_latents).abs().max() <= 1e-5
    assert out.is_file() and (tmp_path / "two.mp4.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two.ckpt", "two.mp4", "two.mp4.json"]


# ------------------------------------------------------------------------------------- the motion's format


def test_fuse_long_letterboxes_with_the_clips_own_background_exactly_as_animate_does(media, tmp_path):
    clip = encode_video(tmp_path / "landscape.mp4", list(make_motion_frames(5, 192, 128)))
    settings = AnimateSettings(size=128, context_frames=K, context_overlap=S)
    animate_inputs = prepare_inputs(settings, media["ref"], clip)
    with open_long_inputs(settings, media["ref"], clip, tmp_path, keep=None).motion as stored:
        long_frames = np.stack(list(stored))
    assert np.array_equal(long_frames, animate_inputs.motion)
    own = tuple(int(c) for c in next(iter(open_motion(clip)))[0, 0])
    assert animate_inputs.fit.background == own != (0, 0, 0)
    assert np.all(long_frames[:, :20] == own)  # the letterbox above the 128×85 content


@pytest.mark.parametrize("kind", ["ordinary video", "render"])
def test_fuse_long_warns_once_about_a_motion_that_does_not_look_like_a_render(media, tmp_path, capsys, kind):
    motion = ordinary_video(tmp_path / "dance.mp4", FRAMES) if kind == "ordinary video" else media[f"motion{FRAMES}"]
    code, _, err = cli(["fuse-long", media["ref"], motion, "-o", tmp_path / "out.mp4", "--weights",
                        media["weights"], *SMALL, "--steps", "1"], capsys)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    expected = 1 if kind == "ordinary video" else 0
    assert len(warnings) == expected and all(f"warning: {motion}: " in w and "--motion-from-video" in w
                                             for w in warnings)


# ------------------------------------------------------------------------------------- checkpoint and resume


def test_a_run_killed_after_step_2_of_4_resumes_to_the_uninterrupted_result(animator, media, inputs, tmp_path,
                                                                             capsys):
    out, checkpoint = tmp_path / "resumed.mp4", tmp_path / "run.ckpt"
    args = run_args(media, f"motion{FRAMES}", out, "--steps", "4")
    proc = start_paused_at("checkpoint:2", [*args, "--checkpoint", checkpoint], env=single_threaded())
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert load_checkpoint(checkpoint).next_step == 2
    assert not out.exists()
    code, _, err = cli([*args, "--resume", checkpoint], capsys)  # the seed comes from the checkpoint
    assert code == 0, err
    resumed = load_checkpoint(checkpoint)
    assert resumed.next_step == 4 and out.is_file()
    uninterrupted = long_latents(animator, inputs, replace(BASE, steps=4))
    assert (resumed.latents[:, :, :FRAMES] - uninterrupted).abs().max() <= 1e-6


@pytest.fixture(scope="module")
def finished_checkpoint(media, tmp_path_factory) -> Path:
    """The checkpoint of a complete one-step run (what it was made with is all that matters here)."""
    folder = tmp_path_factory.mktemp("finished")
    checkpoint = folder / "done.ckpt"
    assert exit_code(run_args(media, f"motion{FRAMES}", folder / "first.mp4", "--steps", "1",
                              "--checkpoint", checkpoint)) == 0
    assert load_checkpoint(checkpoint).next_step == 1
    return checkpoint


@pytest.mark.parametrize("motion, change, named", [
    (f"motion{FRAMES}", ["--context-overlap", "3"], "context-overlap 2 (this run: 3)"),
    (f"motion{FRAMES}", ["--fusion", "pyramid"], "fusion mean (this run: pyramid)"),
    (f"motion{FRAMES}", ["--no-wrap"], "wrap wrap (this run: no-wrap)"),
    (f"motion{FRAMES}", ["--seed", "4"], "seed 3 (this run: 4)"),  # the last --seed given counts
    (f"motion{FRAMES}", ["--scheduler", "dpm++2m"], "scheduler ddim (this run: dpm++2m)"),
    (f"motion{2 * K}", [], "motion {root}/motion14.mp4 ["),
], ids=["overlap", "fusion", "wrap", "seed", "scheduler", "motion"])
def test_resume_refuses_a_checkpoint_of_other_settings_or_motion_naming_what_differs(
        media, tmp_path, capsys, finished_checkpoint, motion, change, named):
    output = tmp_path / "second.mp4"
    code, _, err = cli([*run_args(media, motion, output, "--steps", "1", *change), "--resume", finished_checkpoint],
                       capsys)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --resume {finished_checkpoint}: ")
    assert named.format(root=media["root"]) in lines[0]
    assert not output.exists()


def test_resume_with_another_scheduler_is_refused_before_any_model_loads(media, tmp_path, capsys,
                                                                        finished_checkpoint):
    code, _, err = cli([*run_args(media, f"motion{FRAMES}", tmp_path / "out.mp4", "--steps", "1"), "--weights",
                        tmp_path / "no-weights", "--scheduler", "euler-a", "--resume", finished_checkpoint], capsys)
    assert code == 1
    assert err.strip().splitlines() == [f"error: --resume {finished_checkpoint}: the checkpoint was made with other "
                                        "settings or inputs: scheduler ddim (this run: euler-a)"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("checkpoint", ["finished", "missing"])
def test_a_refused_resume_into_a_new_folder_leaves_nothing_behind(media, tmp_path, capsys, finished_checkpoint,
                                                                   checkpoint):
    resume = finished_checkpoint if checkpoint == "finished" else tmp_path / "nowhere.ckpt"
    folder = tmp_path / "new" / "deeper"
    code, _, err = cli([*run_args(media, f"motion{FRAMES}", folder / "out.mp4", "--steps", "1",
                                  "--context-overlap", "3"), "--resume", resume], capsys)
    assert code == 1 and err.startswith(f"error: --resume {resume}: " if checkpoint == "finished"
                                        else f"error: {resume}: checkpoint not found")
    assert not (tmp_path / "new").exists()


# ------------------------------------------------------------------------------------------------ memory


def peak_rss_bytes(*runs: list) -> list[int]:
    """Run the real command once per argument list, side by side; each process's own peak resident memory."""
    procs = [subprocess.Popen([*MAGICANIMATE, *map(str, args)], env=single_threaded(), stderr=subprocess.PIPE)
             for args in runs]
    peaks = []
    for proc in procs:
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        assert proc.returncode == 0, proc.stderr.read().decode()
        peaks.append(usage.ru_maxrss * 1024)  # Linux reports KiB
    return peaks


def test_peak_host_memory_for_8K_frames_is_within_a_quarter_of_that_for_2K(media, tmp_path):
    short, long = peak_rss_bytes(run_args(media, f"motion{2 * K}", tmp_path / "short.mp4", "--steps", "1"),
                                 run_args(media, f"motion{8 * K}", tmp_path / "long.mp4", "--steps", "1"))
    assert long <= 1.25 * short, f"peak RSS {long / 2**20:.0f} MiB for {8 * K} frames, {short / 2**20:.0f} for {2 * K}"
