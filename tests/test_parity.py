"""The engine reproduces runs of the official MagicAnimate implementation (tests/data/parity, CPU, fp32).

Bounds come from the issue: per-step and final latents within 1e-4 × max(1, max |saved|), decoded frames within
1e-4. Equally valid fp32 computations of the official run differ by ≤ 6.2e-6 here, while the smallest real
mistakes move the result by 1.4e-2 or more.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import load_case

LATENT_TOL = 1e-4
FRAME_TOL = 1e-4


@pytest.fixture(scope="module", params=["public_a", "public_b"])
def run(request, animator):
    case = load_case(request.param)
    steps: list[np.ndarray] = []
    result = animator(
        case.array("reference_image"),
        case.array("control_frames"),
        steps=case.settings["num_inference_steps"],
        guidance_scale=case.settings["guidance_scale"],
        seed=case.settings["seed"],
        context_frames=case.settings["context"]["context_frames"],
        context_overlap=case.settings["context"]["context_overlap"],
        callback=lambda i, latents: steps.append(latents.numpy().copy()),
    )
    return case, result, steps


def _relative(actual: np.ndarray, saved: np.ndarray) -> float:
    return float(np.abs(actual - saved).max() / max(1.0, float(np.abs(saved).max())))


def test_text_embedding_of_the_empty_prompt_matches(animator):
    case = load_case("public_a")
    saved = case.array("text_embeddings")
    assert np.abs(animator.text_embedding().numpy()[0] - saved[1]).max() <= 1e-5
    assert np.array_equal(saved[0], saved[1])  # prompt and negative prompt are both ""


def test_reference_latents_are_the_vae_mean_scaled(animator):
    case = load_case("public_a")
    ours = animator.encode_reference(case.array("reference_image")).numpy()
    assert _relative(ours, case.array("reference_latents")) <= LATENT_TOL


def test_initial_noise_is_one_window_drawn_on_cpu_and_tiled():
    from magicanimate_cli.engine.pipeline import initial_noise

    case = load_case("public_b")
    saved = case.array("initial_noise")
    noise = initial_noise(case.settings["seed"], 32, 128, 128, 16).numpy()
    assert np.array_equal(noise[:, :, :16], saved)
    assert np.array_equal(noise[:, :, 16:], saved)


def test_latents_after_every_step_match_the_official_run(run):
    case, _, steps = run
    saved = case.array("latents_steps")
    assert len(steps) == len(saved)
    for i, ours in enumerate(steps):
        diff = _relative(ours[:, :, : case.frames], saved[i][:, :, : case.frames])
        assert diff <= LATENT_TOL, f"{case.name} step {i}: {diff:.3g}"


def test_final_latents_match_the_official_run(run):
    case, result, _ = run
    saved = case.array("final_latents")[:, :, : case.frames]
    assert result.latents.shape == saved.shape
    assert _relative(result.latents.numpy(), saved) <= LATENT_TOL


def test_decoded_frames_match_the_official_video(run):
    case, result, _ = run
    saved = case.array("video")
    assert result.frames.shape == saved.shape and result.frames.dtype == np.float32
    assert np.abs(result.frames - saved).max() <= FRAME_TOL
