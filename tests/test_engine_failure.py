"""A failure inside the animation engine reaches the user as one line naming the window, its frames, the step and
the device (as a DensePose failure names the model file and the frame), with the traceback kept for --debug."""

from __future__ import annotations

import numpy as np
import pytest

from magicanimate_cli.engine.models.reference_attention import ReferenceReadProcessor
from magicanimate_cli.engine.sampler import EngineFailure
from magicanimate_cli.engine.sampler_config import SamplerConfig
from magicanimate_cli.runtime.errors import MagicAnimateError


class FailingAfter:
    """An attention processor that does what the one it wraps does until `armed` is set, then raises."""

    def __init__(self, wrapped) -> None:
        self.wrapped = wrapped
        self.armed = False

    def __call__(self, attn, hidden_states, *args, **kwargs):
        if self.armed:
            raise RuntimeError("CUDA error: an illegal memory access was encountered\nmore lines of detail")
        return self.wrapped(attn, hidden_states, *args, **kwargs)


def test_a_failing_network_names_the_window_its_frames_the_step_and_the_device(animator):
    unet = animator.components.unet
    attention = next(m for m in unet.modules() if isinstance(getattr(m, "processor", None), ReferenceReadProcessor))
    original = attention.processor
    failing = FailingAfter(original)
    attention.set_processor(failing)
    windows_done = []

    def on_window() -> None:  # the engine's own progress hook: arm the failure after the first window
        windows_done.append(1)
        failing.armed = len(windows_done) == 1

    rng = np.random.default_rng(0)
    reference = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
    motion = rng.integers(0, 256, (5, 128, 128, 3), dtype=np.uint8)
    config = SamplerConfig(steps=1, context_frames=4, context_overlap=1)
    plan = config.window_plan(8)
    try:
        with pytest.raises(EngineFailure) as failure:
            animator.sample(reference, motion, config, seed=1, on_window=on_window)
    finally:
        attention.set_processor(original)
    windows = len(plan.windows)
    window = 1  # the second window (0-based), the first run after arming
    frames = plan.windows[window]
    message = str(failure.value)
    assert isinstance(failure.value, MagicAnimateError) and "\n" not in message
    assert message == (f"the animation engine failed on window {window + 1}/{windows} (frames {min(frames)}-"
                       f"{max(frames)}), step 1/1, on cpu: RuntimeError: CUDA error: an illegal memory "
                       "access was encountered")
    assert isinstance(failure.value.__cause__, RuntimeError)


def test_the_step_is_counted_from_one_of_all_the_runs_steps():
    failure = EngineFailure(2, 5, [8, 9, 10, 11], "cuda:1", "RuntimeError: boom").at_step(11, 25)
    assert str(failure) == ("the animation engine failed on window 3/5 (frames 8-11), step 12/25, on cuda:1: "
                            "RuntimeError: boom")
