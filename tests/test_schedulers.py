"""`--scheduler`: diffusers' schedulers over the fused windows, on the tiny official-layout model.

Each scheduler is checked against a plain diffusers loop (set_timesteps, init_noise_sigma, scale_model_input,
step) fed the same model: the sampler must add nothing to what diffusers does. Sizes are tiny (128×128, windows of
4 frames, 3 steps) so the whole file stays cheap.
"""

from __future__ import annotations

import io
import json
import os
import signal
from dataclasses import replace

import diffusers
import numpy as np
import pytest
import torch
from conftest import run_cli, start_paused_at
from media_helpers import encode_video, save_image

from magicanimate_cli.animate.settings import AnimateSettings
from magicanimate_cli.demo.inputs import make_motion_frames, make_reference_image
from magicanimate_cli.engine.pipeline import initial_noise, run_generator
from magicanimate_cli.engine.sampler import (SamplerConfig, StepStats, guide, predict_windows, reference_features,
                                             start_scheduler, take_step)
from magicanimate_cli.engine.schedulers import SCHEDULER_NAMES, load_scheduler_state, make_scheduler, scheduler_state
from magicanimate_cli.long.checkpoint import Checkpoint, check_resumable, load_checkpoint, save_checkpoint
from magicanimate_cli.long.job import open_long_inputs
from magicanimate_cli.long.sampling import sample_long
from magicanimate_cli.runtime.errors import SettingsError

K, SEED, STEPS, SIZE = 4, 5, 3, 128
TRAINING = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "linear",
            "prediction_type": "epsilon", "steps_offset": 1, "timestep_spacing": "leading"}
DIFFUSERS = {  # what each name must mean, written out here independently of the module under test
    "ddim": (diffusers.DDIMScheduler, {"clip_sample": False, "set_alpha_to_one": True}),
    "dpm++2m": (diffusers.DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpm++2m-karras": (diffusers.DPMSolverMultistepScheduler,
                       {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}),
    "unipc": (diffusers.UniPCMultistepScheduler, {}),
    "euler": (diffusers.EulerDiscreteScheduler, {}),
    "euler-a": (diffusers.EulerAncestralDiscreteScheduler, {}),
}


@pytest.fixture(scope="module")
def clip():
    reference = make_reference_image(SIZE)
    motion = np.stack(list(make_motion_frames(K, SIZE, SIZE, seed=1)))
    return reference, motion


def plain_diffusers_loop(animator, reference, motion, config: SamplerConfig) -> torch.Tensor:
    """The textbook diffusers loop over one window, the guided model prediction as the model."""
    scheduler_class, extra = DIFFUSERS[config.scheduler]
    scheduler = scheduler_class(**TRAINING, **extra)
    scheduler.set_timesteps(config.steps)
    cond = animator.prepare(reference, motion, config)
    plan = config.window_plan(len(cond.control))
    banks = reference_features(animator.models, cond, scheduler.timesteps)
    generator = run_generator(SEED)
    x = initial_noise(SEED, K, SIZE, SIZE, K, "shared", generator) * scheduler.init_noise_sigma
    for t, bank in zip(scheduler.timesteps, banks):
        model_input = scheduler.scale_model_input(x, t)
        sums = predict_windows(animator.models, cond, model_input, t, plan, [0], config, StepStats(), bank)
        eps = guide(*sums, config.guidance_scale)
        options = {"generator": generator} if config.scheduler == "euler-a" else {}
        x = scheduler.step(eps, t, x, **options).prev_sample
    return x


@pytest.mark.parametrize("name", SCHEDULER_NAMES)
def test_one_window_through_the_sampler_equals_the_plain_diffusers_loop(animator, clip, name):
    config = SamplerConfig(steps=STEPS, context_frames=K, context_overlap=1, scheduler=name)
    with torch.no_grad():
        ours = animator.sample(*clip, config, SEED)
        plain = plain_diffusers_loop(animator, *clip, config)
    assert ((ours - plain).abs().max() / plain.abs().max()).item() <= 1e-6


def test_the_api_takes_a_scheduler_and_refuses_an_unknown_one(animator, clip):
    result = animator(*clip, steps=2, context_frames=K, context_overlap=1, scheduler="euler-a")
    assert result.latents.shape == (1, 4, K, SIZE // 8, SIZE // 8)
    with pytest.raises(ValueError, match="dpm\\+\\+2m"):
        animator(*clip, steps=2, context_frames=K, context_overlap=1, scheduler="plms")


# ---------------------------------------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_bundle):
    root = tmp_path_factory.mktemp("sched-media")
    return {"ref": save_image(root / "ref.png", make_reference_image(SIZE)),
            "motion": encode_video(root / "motion.mp4", list(make_motion_frames(K, SIZE, SIZE, seed=1))),
            "weights": tiny_bundle}


def small(files) -> list:
    return ["--weights", files["weights"], "--device", "cpu", "--size", SIZE, "--context-frames", K,
            "--context-overlap", 1, "--seed", SEED, "--steps", 2, "--quiet"]


@pytest.mark.parametrize("command", ["animate", "fuse-long"])
def test_help_lists_the_schedulers(command, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # the choices on one line, not wrapped inside the table
    code, out, _ = run_cli([command, "--help"], capsys)
    assert code == 0
    for name in SCHEDULER_NAMES:
        assert name in out


@pytest.mark.parametrize("command", ["animate", "fuse-long"])
def test_an_unknown_scheduler_is_a_usage_error_listing_the_choices(command, files, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    code, _, err = run_cli([command, files["ref"], files["motion"], "-o", tmp_path / "x.mp4",
                            "--scheduler", "plms", *small(files)], capsys)
    assert code == 2
    flat = " ".join(err.split())
    assert "plms" in flat and all(name in flat for name in SCHEDULER_NAMES)
    assert not (tmp_path / "x.mp4").exists()


def test_the_sidecar_records_the_scheduler_and_its_full_config(files, tmp_path, capsys):
    out = tmp_path / "clip.mp4"
    code, _, err = run_cli(["animate", files["ref"], files["motion"], "-o", out, "--scheduler", "dpm++2m-karras",
                            *small(files)], capsys)
    assert code == 0, err
    record = json.loads((tmp_path / "clip.mp4.json").read_text())
    assert record["settings"]["scheduler"] == "dpm++2m-karras"
    assert record["scheduler"]["name"] == "dpm++2m-karras"
    assert record["scheduler"]["class"] == "DPMSolverMultistepScheduler"
    config = record["scheduler"]["config"]
    assert config["use_karras_sigmas"] is True and config["beta_start"] == 0.00085 and config["steps_offset"] == 1


def test_fuse_long_plan_shows_the_scheduler_and_its_steps(files, capsys):
    code, out, err = run_cli(["fuse-long", files["ref"], files["motion"], "--plan", "--scheduler", "unipc",
                              *small(files)], capsys)
    assert code == 0, err
    assert "scheduler: unipc (UniPCMultistepScheduler), 2 steps" in out
    code, out, _ = run_cli(["fuse-long", files["ref"], files["motion"], "--plan", "--json", "--scheduler", "unipc",
                            *small(files)], capsys)
    assert json.loads(out)["scheduler"] == "unipc"


# ------------------------------------------------------------------------------ ancestral noise, laid out


def test_euler_a_under_shared_noise_adds_one_K_frame_draw_tiled_over_the_video():
    """Blocks that are equal before the step stay equal after it; the generator moves on by one K-frame draw."""
    config = SamplerConfig(steps=4, context_frames=K, scheduler="euler-a")
    scheduler = start_scheduler(config, "cpu")
    block = torch.randn((1, 4, K, 2, 3), generator=torch.Generator().manual_seed(1))
    latents, prediction = block.repeat(1, 1, 3, 1, 1), (0.5 * block).repeat(1, 1, 3, 1, 1)
    generator = run_generator(SEED)
    t = scheduler.timesteps[0]
    stepped = take_step(scheduler, config, prediction, t, scheduler.scale_model_input(latents, t), generator,
                        "shared")
    assert torch.equal(stepped[:, :, :K], stepped[:, :, K:2 * K]) and torch.equal(stepped[:, :, :K],
                                                                                stepped[:, :, 2 * K:])
    one_block = run_generator(SEED)
    torch.randn((1, 4, K, 2, 3), generator=one_block)
    assert torch.equal(generator.get_state(), one_block.get_state())

    alone = start_scheduler(config, "cpu")  # the same step on one block is the same numbers
    single = take_step(alone, config, prediction[:, :, :K], t, alone.scale_model_input(latents[:, :, :K], t),
                       run_generator(SEED), "shared")
    assert torch.equal(single, stepped[:, :, :K])


def test_euler_a_under_independent_noise_draws_for_every_frame():
    config = SamplerConfig(steps=4, context_frames=K, scheduler="euler-a")
    scheduler = start_scheduler(config, "cpu")
    latents = torch.zeros((1, 4, 2 * K, 2, 3))
    t = scheduler.timesteps[0]
    stepped = take_step(scheduler, config, latents, t, scheduler.scale_model_input(latents, t), run_generator(SEED),
                        "independent")
    assert not torch.equal(stepped[:, :, :K], stepped[:, :, K:])


# ---------------------------------------------------------------------------- scheduler state in checkpoints


@pytest.mark.parametrize("name", SCHEDULER_NAMES)
def test_a_saved_scheduler_state_continues_exactly_as_the_scheduler_it_was_taken_from(name):
    """Two steps, save the state through torch.save/weights_only load, then both schedulers take the same steps."""
    torch.manual_seed(0)
    latents = torch.randn(1, 4, K, 3, 3)
    original = make_scheduler(name)
    original.set_timesteps(6)
    options = lambda: {"generator": torch.Generator().manual_seed(9)} if name == "euler-a" else {}  # noqa: E731
    for t in original.timesteps[:2]:
        original.scale_model_input(latents, t)
        latents = original.step(torch.sin(latents), t, latents, **options()).prev_sample
    buffer = io.BytesIO()
    torch.save(scheduler_state(original), buffer)
    buffer.seek(0)
    restored = make_scheduler(name)
    restored.set_timesteps(6)
    load_scheduler_state(restored, torch.load(buffer, weights_only=True), "cpu")
    a = b = latents
    for t in original.timesteps[2:]:
        original.scale_model_input(a, t), restored.scale_model_input(b, t)
        a = original.step(torch.sin(a), t, a, **options()).prev_sample
        b = restored.step(torch.sin(b), t, b, **options()).prev_sample
    assert torch.equal(a, b)


def test_a_version_1_checkpoint_resumes_only_the_schedulers_whose_state_follows_from_the_step(tmp_path):
    path = tmp_path / "old.ckpt"
    payload = Checkpoint(torch.zeros(1, 4, K, 2, 2), 1, SEED, {"scheduler": "dpm++2m"}).payload()
    del payload["scheduler"], payload["generator"]
    torch.save({**payload, "version": 1}, path)
    old = load_checkpoint(path)
    assert old.scheduler is None and old.generator is None
    with pytest.raises(SettingsError, match="version 1 checkpoint holds no dpm\\+\\+2m state"):
        check_resumable(path, old, {"scheduler": "dpm++2m"}, {}, SEED)
    check_resumable(path, replace(old, fingerprint={"scheduler": "euler"}), {"scheduler": "euler"}, {}, SEED)


def test_a_checkpoint_carries_the_scheduler_and_generator_state(tmp_path):
    scheduler = start_scheduler(SamplerConfig(steps=3, scheduler="unipc"), "cpu")
    path = tmp_path / "run.ckpt"
    save_checkpoint(path, Checkpoint(torch.zeros(1, 4, K, 2, 2), 1, SEED, {}, {}, scheduler_state(scheduler),
                                     run_generator(SEED).get_state()))
    saved = load_checkpoint(path)
    assert torch.equal(saved.scheduler["timesteps"], scheduler.timesteps)
    assert torch.equal(saved.generator, run_generator(SEED).get_state())


# ------------------------------------------------------------------- fuse-long: windows, resume, processes

LONG = 3 * K  # three windows of K frames overlapping by 1, wrapping: every frame fused from two windows
MULTI_STEP = ["dpm++2m", "euler-a"]


@pytest.fixture(scope="module")
def long_files(files, tmp_path_factory):
    root = tmp_path_factory.mktemp("sched-long")
    return {**files, "motion": encode_video(root / "long.mp4", list(make_motion_frames(LONG, SIZE, SIZE, seed=2)))}


@pytest.fixture
def one_thread():
    """This process samples with one thread, as the subprocesses do, so results compare across processes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def single_threaded() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.mark.parametrize("name", MULTI_STEP)
def test_fuse_long_with_mean_fusion_samples_exactly_what_animate_samples(animator, long_files, tmp_path, name):
    config = SamplerConfig(steps=2, context_frames=K, context_overlap=1, scheduler=name)
    settings = AnimateSettings(size=SIZE, context_frames=K, context_overlap=1)
    inputs = open_long_inputs(settings, long_files["ref"], long_files["motion"], tmp_path, keep=None)
    with inputs.motion:
        frames = np.stack(list(inputs.motion))
        with torch.no_grad():
            long = sample_long(animator, inputs.reference, inputs.motion.padded(LONG), config, SEED)
            engine = animator.sample(inputs.reference, frames, config, SEED)
    assert torch.equal(long, engine)


def long_args(files, output, steps: int, name: str) -> list:
    return ["fuse-long", files["ref"], files["motion"], "-o", output, *small(files), "--steps", steps,
            "--scheduler", name]


@pytest.mark.parametrize("name", MULTI_STEP)
def test_a_run_killed_after_step_2_of_4_resumes_to_the_uninterrupted_result(long_files, tmp_path, capsys,
                                                                             one_thread, name):
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    args = long_args(long_files, killed / "out.mp4", 4, name)
    proc = start_paused_at("checkpoint:2", [*args, "--checkpoint", killed / "run.ckpt"], env=single_threaded())
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL and load_checkpoint(killed / "run.ckpt").next_step == 2
    code, _, err = run_cli([*args, "--resume", killed / "run.ckpt"], capsys)
    assert code == 0, err
    code, _, err = run_cli([*long_args(long_files, whole / "out.mp4", 4, name), "--checkpoint", whole / "run.ckpt"],
                           capsys)
    assert code == 0, err
    resumed, uninterrupted = load_checkpoint(killed / "run.ckpt"), load_checkpoint(whole / "run.ckpt")
    assert resumed.next_step == uninterrupted.next_step == 4
    assert (resumed.latents - uninterrupted.latents).abs().max() <= 1e-6
    assert torch.equal(resumed.generator, uninterrupted.generator)


@pytest.mark.parametrize("name", ["euler-a"])  # its noise is the part that could differ between processes
def test_two_processes_give_the_single_process_latents(long_files, tmp_path, capsys, one_thread, name):
    code, _, err = run_cli([*long_args(long_files, tmp_path / "two.mp4", 2, name), "--nproc", 2,
                            "--checkpoint", tmp_path / "two.ckpt"], capsys)
    assert code == 0, err
    code, _, err = run_cli([*long_args(long_files, tmp_path / "one.mp4", 2, name),
                            "--checkpoint", tmp_path / "one.ckpt"], capsys)
    assert code == 0, err
    two, one = load_checkpoint(tmp_path / "two.ckpt"), load_checkpoint(tmp_path / "one.ckpt")
    assert (two.latents - one.latents).abs().max() <= 1e-5 * one.latents.abs().max()


# ------------------------------------------------------------------ the steps benchmark's analytic model


@pytest.fixture(scope="module")
def steps_benchmark():
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "steps.py"
    spec = importlib.util.spec_from_file_location("steps_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("steps", [6, 12])
def test_the_analytic_odes_errors_through_our_sampler_equal_those_of_a_plain_diffusers_loop(steps_benchmark,
                                                                                             steps):
    """Windows (three, wrapping), fusion and guidance change nothing for a model that ignores its conditioning,
    so the benchmark's numbers are the schedulers' own."""
    bench = steps_benchmark
    data = bench.GaussianData()
    models = bench.analytic_models(data)
    noise = bench.shared_noise(32, 64, 16)
    errors = {}
    for name in ("ddim", "dpm++2m", "dpm++2m-karras", "unipc", "euler"):
        ours = bench.ode_error(data, noise, name, steps, bench.our_final(models, noise, SamplerConfig(
            steps=steps, scheduler=name)))
        direct = bench.ode_error(data, noise, name, steps, bench.direct_final(data, noise, name, steps))
        assert abs(ours - direct) <= 1e-5, name
        errors[name] = ours
    assert abs(errors["euler"] - errors["ddim"]) <= 1e-6  # both are the first-order solver of the same ODE
    assert errors["dpm++2m"] < errors["ddim"] and errors["unipc"] < errors["ddim"]


def test_the_analytic_model_solves_its_own_ode(steps_benchmark):
    """With many small steps DDIM lands on the closed-form end point: the formula and the predictor agree."""
    bench = steps_benchmark
    data = bench.GaussianData()
    noise = bench.shared_noise(16, 32, 16)
    assert bench.ode_error(data, noise, "ddim", 500, bench.direct_final(data, noise, "ddim", 500)) <= 1e-2
