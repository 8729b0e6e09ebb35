"""`--scheduler`: diffusers' schedulers over the fused windows, on the tiny official-layout model.

Each scheduler is checked against a plain diffusers loop (set_timesteps, init_noise_sigma, scale_model_input,
step) fed the same model: the sampler must add nothing to what diffusers does. Sizes are tiny (128×128, windows of
4 frames, 3 steps) so the whole file stays cheap.
"""

from __future__ import annotations

import json

import diffusers
import numpy as np
import pytest
import torch

from magicanimate_cli.demo_inputs import make_motion_frames, make_reference_image
from magicanimate_cli.engine.pipeline import initial_noise, run_generator
from magicanimate_cli.engine.sampler import SamplerConfig, StepStats, guide, predict_windows, reference_features
from magicanimate_cli.engine.schedulers import SCHEDULER_NAMES
from conftest import run_cli
from media_helpers import encode_video, save_image

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


def test_checkpoints_with_a_scheduler_whose_state_they_do_not_carry_are_refused_before_loading(
        files, tmp_path, capsys):
    weights = tmp_path / "no-weights"  # nothing to load: a refusal must come first
    code, _, err = run_cli(["fuse-long", files["ref"], files["motion"], "-o", tmp_path / "x.mp4",
                            "--checkpoint", tmp_path / "run.ckpt", *small(files), "--weights", weights,
                            "--scheduler", "dpm++2m"], capsys)
    assert code != 0
    assert "--scheduler dpm++2m" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
