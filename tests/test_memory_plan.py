"""Which networks occupy the sampling device while denoising, and what --low-vram changes.

Every step's reference features are computed before denoising, so the appearance encoder (1.7 GB in fp16) and
the text encoder (used once, for the empty prompt) wait in host memory for the whole loop. With `low_vram` the
VAE waits there too, and the guidance copies run one at a time after the UNet's fork — the same numbers.
"""

from __future__ import annotations

import pytest
import torch

from conftest import TINY_BUNDLE, load_case
from magicanimate_cli import Animator
from magicanimate_cli.engine.sampler import SamplerConfig


def _held_while_denoising(animator: Animator, steps: int = 2) -> list[frozenset[str]]:
    case = load_case("public_a")
    held: list[frozenset[str]] = []
    animator.sample(case.array("reference_image"), case.array("control_frames"), SamplerConfig(steps=steps),
                    seed=1, callback=lambda step, latents: held.append(animator.placement.held))
    return held


@pytest.fixture(scope="module")
def low_vram_animator():
    return Animator.from_pretrained(TINY_BUNDLE, low_vram=True)


def test_appearance_and_text_encoders_are_off_the_device_while_denoising(animator):
    assert _held_while_denoising(animator) == [frozenset({"unet", "controlnet", "vae"})] * 2


def test_low_vram_also_keeps_the_vae_off_the_device_while_denoising(low_vram_animator):
    assert _held_while_denoising(low_vram_animator) == [frozenset({"unet", "controlnet"})] * 2


def test_every_steps_reference_features_are_computed_before_the_first_unet_call(animator):
    calls: list[str] = []
    components = animator.components
    handles = [components.appearance_encoder.register_forward_pre_hook(lambda m, a: calls.append("appearance")),
               components.unet.conv_in.register_forward_pre_hook(lambda m, a: calls.append("unet"))]
    try:
        _held_while_denoising(animator, steps=3)
    finally:
        for h in handles:
            h.remove()
    assert calls == ["appearance"] * 3 + ["unet"] * 3


def test_low_vram_gives_the_same_video():
    # float64: the copies run one after the other from the same fork, so any difference would be a real one
    case = load_case("public_a")
    args = (case.array("reference_image"), case.array("control_frames"), SamplerConfig(steps=2))
    normal = Animator.from_pretrained(TINY_BUNDLE, dtype=torch.float64).sample(*args, seed=1)
    low = Animator.from_pretrained(TINY_BUNDLE, dtype=torch.float64, low_vram=True)
    assert torch.equal(low.sample(*args, seed=1), normal)
    frames = list(low.decode(normal))
    assert len(frames) == case.frames
