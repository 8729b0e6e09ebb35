"""--compile and --low-vram from the command line down to the engine.

Tracing the tiny UNet with torch.compile takes minutes on two busy cores, so the job-level tests set the
"force_eager" compiler stance (the compiled wrappers then run the original code): they pin down the wiring — what gets compiled, that the
first run of a frame size is a "compile" phase of its own and later runs are not — while the GPU benchmark
(benchmarks/gpu_check.sh) measures what compilation buys. On the CPU with the eager backend a compiled run was
measured bitwise equal to an uncompiled one, in 4 graphs with no graph break.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import TINY_BUNDLE, run_cli
from media_helpers import encode_video, save_image

from magicanimate_cli import Animator
from magicanimate_cli.animate.job import run_job
from magicanimate_cli.animate.settings import AnimateSettings
from magicanimate_cli.demo.inputs import make_motion_frames, make_reference_image
from magicanimate_cli.runtime.progress import Reporter


class PhaseLog(Reporter):
    def __init__(self) -> None:
        self.phases: list[str] = []

    def phase(self, name: str, total: int) -> None:
        self.phases.append(name)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("compile-inputs")
    return (save_image(root / "ref.png", make_reference_image(128)),
            encode_video(root / "motion.mp4", list(make_motion_frames(8, 128, 128)), 25))


@pytest.fixture
def no_dynamo():
    with torch.compiler.set_stance("force_eager"):
        yield


def test_compile_wraps_the_unet_halves_the_controlnet_and_the_vae_decoder():
    animator = Animator.from_pretrained(TINY_BUNDLE)
    prefix, suffix = animator.models.unet_prefix, animator.models.unet_suffix
    animator.compile(backend="eager")
    assert animator.compiled
    assert animator.models.unet_prefix is not prefix and animator.models.unet_suffix is not suffix
    assert animator.components.controlnet._compiled_call_impl is not None
    assert animator.components.vae.decoder._compiled_call_impl is not None


def test_first_run_of_a_frame_size_is_a_compile_phase_and_later_runs_are_not(inputs, tmp_path, no_dynamo):
    animator = Animator.from_pretrained(TINY_BUNDLE)
    animator.compile(backend="eager")
    settings = AnimateSettings(size=128, steps=1, context_frames=8, context_overlap=2, seed=3, weights=TINY_BUNDLE,
                               compile=True)
    first, second = PhaseLog(), PhaseLog()
    run_job(animator, settings, *inputs, tmp_path / "a.mp4", first)
    run_job(animator, settings, *inputs, tmp_path / "b.mp4", second)
    assert first.phases == ["compile", "denoise", "decode"]
    assert second.phases == ["denoise", "decode"]


def test_animate_takes_low_vram_and_compile_and_records_them(inputs, tmp_path, capsys, no_dynamo):
    out = tmp_path / "out.mp4"
    code, _, err = run_cli(["animate", *inputs, "-o", out, "--weights", TINY_BUNDLE, "--size", "128", "--steps", "1",
                            "--context-frames", "8", "--context-overlap", "2", "--seed", "3", "--quiet",
                            "--low-vram", "--compile"], capsys)
    assert code == 0, err
    record = json.loads(Path(f"{out}.json").read_text())
    assert record["settings"]["low_vram"] is True and record["settings"]["compile"] is True
    assert torch.cuda.is_available() or record["device"] == "cpu"
