"""What `--smooth` does to a DensePose render, measured against a motion whose noise-free render is known.

    python benchmarks/smoothing.py                      # 512², 120 frames, slow and fast motion
    python benchmarks/smoothing.py --frames 60 --seed 3

The stand-in "model" (a plain callable with the model's output contract, `Detections`) sees one person whose box
follows a known smooth path (a sine sway; slow: ±40 px over 120 frames, fast: ±120 px over 24 frames, up to
~31 px a frame) and whose part map, in its own S×S box grid, moves too (the arms swing with the sway). Each
frame it adds what a real detector adds: a few pixels of box jitter, noise on every logit, and missed frames
(the person gone for 1–2 frames). The render of the noise-free outputs is the truth; the noisy outputs are drawn
as `pose` draws them (one frame at a time) and through `SteadyRenderer` (`--smooth`), and both are scored:

- label error: share of person pixels (in either render) whose label differs from the truth, over all frames
  (a missed frame counts 100%) and over the frames the detector saw;
- flicker: share of person pixels whose label changes between consecutive frames (the truth's own value, from
  the motion itself, is printed beside it);
- box error / box jitter: the drawn person's extent against the truth's, in px (mean |Δ| of its four sides), and
  of its frame-to-frame change against the truth's change;
- frames without a person.

`smooth_noise_free` smooths the noise-free outputs themselves: its distance from the truth is what smoothing
costs on its own (a lagging box, or a ghost of a fast-moving part), with no noise to remove.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from magicanimate_cli.densepose.model import Detections
from magicanimate_cli.densepose.render import render_labels
from magicanimate_cli.densepose.track import SmoothSettings, SteadyRenderer

GRID = 32  # S: the stand-in's segmentation size
MIN_SCORE, PEOPLE = 0.8, "all"


@dataclass(frozen=True)
class Motion:
    """A person swaying sideways by `amplitude` px with `period` frames, its arms swinging with it."""

    name: str
    amplitude: float
    period: float


@dataclass(frozen=True)
class Noise:
    box_px: float = 3.0  # standard deviation of each box side
    logit: float = 2.0  # standard deviation added to every logit (the clean ones are ±4)
    drop: float = 0.08  # chance that a frame starts a miss of 1–2 frames


SLOW = Motion("slow", 40.0, 120.0)
FAST = Motion("fast", 120.0, 24.0)


def part_map(phase: float, size: int = GRID) -> torch.Tensor:
    """(S, S) labels of the person in its box: head, torso, arms whose reach swings with `phase`, legs."""
    y = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    yy, xx = y[:, None].expand(size, size), y[None, :].expand(size, size)
    labels = torch.zeros(size, size, dtype=torch.long)
    body = ((xx - 0.5) / 0.45) ** 2 + ((yy - 0.55) / 0.47) ** 2 <= 1
    labels[body & (yy >= 0.62) & (xx < 0.5)] = 8
    labels[body & (yy >= 0.62) & (xx >= 0.5)] = 7
    labels[body & (yy < 0.62) & (xx > 0.3) & (xx < 0.7)] = 2
    left, right = 0.45 + 0.12 * math.sin(phase), 0.45 - 0.12 * math.sin(phase)  # one arm up as the other drops
    labels[body & (yy > 0.25) & (yy < left) & (xx <= 0.3)] = 4
    labels[body & (yy > 0.25) & (yy < right) & (xx >= 0.7)] = 3
    labels[((xx - 0.5) / 0.16) ** 2 + ((yy - 0.12) / 0.1) ** 2 <= 1] = 23
    return labels


def clean_output(motion: Motion, t: int, size: int) -> Detections:
    """The noise-free model output at frame t: box on the path, logits ±4 from the part map, softened."""
    phase = 2 * math.pi * t / motion.period
    cx = size / 2 + motion.amplitude * math.sin(phase) * size / 512
    cy = size / 2 + 0.02 * size * math.cos(phase)
    w, h = 0.3 * size, 0.62 * size
    box = torch.tensor([[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]])
    labels = part_map(phase)
    fine = F.one_hot(labels, 25).permute(2, 0, 1).float() * 8 - 4
    person = (labels > 0).float() * 8 - 4
    coarse = torch.stack([torch.zeros_like(person), person])
    soften = lambda m: F.avg_pool2d(m[None], 3, stride=1, padding=1, count_include_pad=False)  # noqa: E731
    return Detections(box, torch.tensor([0.97]), soften(coarse), soften(fine))


def noisy_output(clean: Detections, noise: Noise, rng: np.random.Generator, missed: bool) -> Detections:
    """What a per-frame detector gives: the clean output jittered and noised, or nobody on a missed frame."""
    if missed:
        return Detections(torch.zeros(0, 4), torch.zeros(0), clean.coarse[:0], clean.fine[:0])
    jitter = lambda shape, sd: torch.from_numpy(rng.normal(0, sd, shape).astype(np.float32))  # noqa: E731
    return Detections(clean.boxes + jitter((1, 4), noise.box_px), clean.scores,
                      clean.coarse + jitter(tuple(clean.coarse.shape), noise.logit),
                      clean.fine + jitter(tuple(clean.fine.shape), noise.logit))


def missed_frames(frames: int, noise: Noise, rng: np.random.Generator) -> set[int]:
    """Runs of 1–2 missed frames, none at the clip's ends (where nothing could fill them)."""
    missed: set[int] = set()
    t = 2
    while t < frames - 3:
        if rng.random() < noise.drop:
            missed.update(range(t, t + int(rng.integers(1, 3))))
            t += 4
        t += 1
    return missed


def extent(labels: np.ndarray) -> np.ndarray | None:
    """x0, y0, x1, y1 of the drawn person, or None when nobody is drawn."""
    ys, xs = np.nonzero(labels)
    return None if len(xs) == 0 else np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)


def score(renders: list[np.ndarray], truth: list[np.ndarray], seen: set[int] | None = None) -> dict:
    """The benchmark's figures for one render of the clip; `seen_error` counts only the frames in `seen` (those
    the detector did not miss), so the logits' share of the gain shows apart from the filled frames'."""
    def share(a: np.ndarray, b: np.ndarray, ref_a: np.ndarray, ref_b: np.ndarray) -> float:
        person = (ref_a > 0) | (ref_b > 0)
        return float((a != b)[person].sum() / max(person.sum(), 1))

    errors = [share(r, c, r, c) for r, c in zip(renders, truth)]
    seen = set(range(len(truth))) if seen is None else seen
    flicker = np.mean([share(a, b, a, b) for a, b in zip(renders, renders[1:])])
    boxes = [extent(r) for r in renders]
    true_boxes = [extent(c) for c in truth]
    box_error = np.mean([np.abs(b - c).mean() for b, c in zip(boxes, true_boxes) if b is not None])
    jitter = np.mean([np.abs((b1 - b0) - (c1 - c0)).mean()
                      for b0, b1, c0, c1 in zip(boxes, boxes[1:], true_boxes, true_boxes[1:])
                      if b0 is not None and b1 is not None])
    return {"label_error": float(np.mean(errors)),
            "seen_error": float(np.mean([e for t, e in enumerate(errors) if t in seen])), "flicker": float(flicker), "box_error_px": float(box_error),
            "box_jitter_px": float(jitter), "empty_frames": sum(b is None for b in boxes)}


def run(motion: Motion, frames: int = 120, size: int = 512, seed: int = 0, noise: Noise = Noise(),
        smooth: SmoothSettings = SmoothSettings()) -> dict:
    """Scores of the clean render's own flicker, the per-frame render and the steady render of one motion."""
    rng = np.random.default_rng(seed)
    missed = missed_frames(frames, noise, rng)
    clean = [clean_output(motion, t, size) for t in range(frames)]
    noisy = [noisy_output(c, noise, rng, t in missed) for t, c in enumerate(clean)]
    truth = [render_labels(c, size, size, MIN_SCORE, PEOPLE)[0] for c in clean]
    plain = [render_labels(n, size, size, MIN_SCORE, PEOPLE)[0] for n in noisy]
    steady = [f.labels for f in SteadyRenderer(smooth, size, size, MIN_SCORE, PEOPLE).frames(iter(noisy))]
    # smoothing the noise-free outputs: what smoothing itself costs (lag, or ghosts of fast motion)
    bias = [f.labels for f in SteadyRenderer(smooth, size, size, MIN_SCORE, PEOPLE).frames(iter(clean))]
    seen = set(range(frames)) - missed
    return {"motion": motion.name, "missed": len(missed), "truth_flicker": score(truth, truth)["flicker"],
            "plain": score(plain, truth, seen), "smooth": score(steady, truth, seen),
            "smooth_noise_free": score(bias, truth)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--radius", type=int, default=SmoothSettings().radius)
    parser.add_argument("--fill-gap", type=int, default=SmoothSettings().fill_gap)
    args = parser.parse_args()
    smooth = SmoothSettings(radius=args.radius, fill_gap=args.fill_gap)
    print(f"{args.frames} frames at {args.size}², noise {Noise()}, smoothing {smooth.record()}")
    print(f"{'motion':6} {'render':17} {'label err':>9} {'(seen)':>7} {'flicker':>8} {'(truth)':>8} {'box err':>8} "
          f"{'jitter':>7} {'empty':>6}")
    for motion in (SLOW, FAST):
        result = run(motion, args.frames, args.size, args.seed, smooth=smooth)
        for name in ("plain", "smooth", "smooth_noise_free"):
            s = result[name]
            print(f"{motion.name:6} {name:17} {s['label_error']:9.2%} {s['seen_error']:7.2%} {s['flicker']:8.2%} "
                  f"{result['truth_flicker']:8.2%} {s['box_error_px']:8.2f} {s['box_jitter_px']:7.2f} "
                  f"{s['empty_frames']:3d}/{args.frames}")


if __name__ == "__main__":
    main()
