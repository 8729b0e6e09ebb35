"""--validate-every N --validation DIR: animate fixed pairs with the current weights through the engine.

DIR holds pairs `NAME.png` (reference) + `NAME.mp4` (DensePose motion), and optionally `NAME.truth.mp4` (the
ground-truth video). Every N steps each pair is animated by the engine's own `Animator` (the networks being
trained, at a fixed seed) and written to RUN/validation/step-N/NAME.mp4; with ground truth, the scores the
command's scorer returns (our `eval`: L1, PSNR, SSIM, and LPIPS when its weights are present) go to
metrics.jsonl. With several processes every process animates its share of the pairs and the main process
records them all. Stage 1 animates frame by frame (one-frame windows): it trains without temporal layers, and a
window's ResNets normalise across its frames.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..runtime.errors import InputError
from ..media.reader import load_reference, open_motion
from ..media.writer import open_writer
from ..motion.fit import fit_motion_frame, fit_reference, plan_fit
from .model import TrainingParts

TRUTH_SUFFIX = ".truth.mp4"
VALIDATION = "validation"
SEED = 1
STEPS = 25  # the engine's default DDIM steps

Scorer = Callable[[Path, Path], dict]
"""(generated video, ground-truth video) -> {metric: value, ...} (and "skipped": {metric: reason})."""


@dataclass(frozen=True)
class ValidationPair:
    name: str
    reference: Path
    motion: Path
    truth: Path | None


def find_pairs(folder: Path) -> list[ValidationPair]:
    """The pairs of a validation folder; none, or a reference without its motion, is an error."""
    if not folder.is_dir():
        raise InputError(f"{folder}: validation folder not found")
    pairs = []
    for reference in sorted(folder.glob("*.png")):
        motion = reference.with_suffix(".mp4")
        if not motion.is_file():
            raise InputError(f"{motion}: missing: the validation reference {reference.name} has no motion beside it")
        truth = folder / f"{reference.stem}{TRUTH_SUFFIX}"
        pairs.append(ValidationPair(reference.stem, reference, motion, truth if truth.is_file() else None))
    if not pairs:
        raise InputError(f"{folder}: no validation pairs (expected NAME.png + NAME.mp4, optionally NAME{TRUTH_SUFFIX})")
    return pairs


class Validator:
    """Called with a step number by the loop; returns the metric records to append."""

    def __init__(self, parts: TrainingParts, stage: int, frames: int, width: int, height: int, run: Path,
                 pairs: list[ValidationPair], scorer: Scorer | None = None, steps: int = STEPS) -> None:
        self.parts, self.stage, self.frames = parts, stage, frames
        self.width, self.height, self.run, self.pairs, self.scorer, self.steps = width, height, run, pairs, scorer, steps

    @torch.no_grad()
    def __call__(self, step: int, rank: int = 0, processes: int = 1) -> list[dict]:
        """Animate this process's share of the pairs (every `processes`-th from `rank`): with several processes
        each animates its own, so none waits in a collective for longer than about one pair takes."""
        from ..engine.loader import Components
        from ..engine.pipeline import Animator

        model, parts = self.parts.model, self.parts
        device = next(model.parameters()).device
        components = Components(model.unet, model.appearance_encoder, model.controlnet, parts.vae,
                                parts.text_encoder, parts.prompt_tokens)
        records = []
        try:
            animator = Animator(components, device)
            window = self.frames if self.stage == 2 else 1
            for pair in self.pairs[rank::processes]:
                # a centre crop, so that the video lines up with its ground truth at the training size
                reference = fit_reference(load_reference(pair.reference), self.width, self.height, "crop", "bilinear")
                clip = open_motion(pair.motion)
                crop = plan_fit(clip.width, clip.height, self.width, self.height, "crop")
                motion = np.stack([fit_motion_frame(frame, crop, "nearest") for frame in clip])
                result = animator(reference, motion, steps=self.steps, seed=SEED, context_frames=window,
                                  context_overlap=0)
                video = self.run / VALIDATION / f"step-{step}" / f"{pair.name}.mp4"
                _write(video, result.frames, clip.fps, self.width, self.height)
                record = {"step": step, "validation": pair.name, "video": str(video.relative_to(self.run))}
                if pair.truth is not None and self.scorer is not None:
                    record.update(self.scorer(video, pair.truth))
                records.append(record)
        finally:
            model.attach()
            nn.Module.to(model, device=device)
        return records


def _write(path: Path, frames: np.ndarray, fps: Fraction, width: int, height: int) -> None:
    with open_writer(path, fps, width, height) as writer:
        for frame in frames:
            writer.write(frame)
