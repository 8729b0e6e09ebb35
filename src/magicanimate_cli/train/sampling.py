"""What each optimizer step trains on: the joint-training branch and the samples, a pure function of
(seed, epoch, index).

Nothing here depends on worker count, timing or a stateful generator, so a resumed run (or one with more
processes) sees exactly the data an uninterrupted one does, and every process of a step draws the same branch
(ranks that take different branches deadlock multi-GPU runs: Moore-AnimateAnyone #90).

Branches (paper section 3.4): stage 1: r <= tau0 an image (reference = target = the image, pose = its render),
otherwise a frame of a video with another frame as reference. Stage 2: r <= tau1 an image, tau1 < r <= tau2 one
video frame (reference another frame), otherwise a K-frame clip. One r per step, so a batch stacks.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

IMAGE, FRAME, CLIP = "image", "frame", "clip"
BRANCHES = (IMAGE, FRAME, CLIP)


@dataclass(frozen=True)
class Mix:
    """The joint-training shares: stage 1 uses tau0 (image_prob), stage 2 (tau1, tau2)."""

    stage: int
    image_prob: float = 0.0
    tau1: float = 0.0
    tau2: float = 0.0

    def branch(self, r: float) -> str:
        """The branch of a uniform draw r in [0, 1)."""
        if self.stage == 1:
            return IMAGE if r < self.image_prob else FRAME
        if r < self.tau1:
            return IMAGE
        return FRAME if r < self.tau2 else CLIP


@dataclass(frozen=True)
class Sample:
    """One training sample: a video's frames (target frames, reference frame) or an image."""

    kind: str  # "video" | "image"
    name: str
    frames: tuple[int, ...] = (0,)  # target frame indices (K for a clip, 1 otherwise)
    reference: int = 0  # reference frame index (images: 0, the image itself)


@dataclass(frozen=True)
class StepPlan:
    step: int
    epoch: int
    index: int
    branch: str
    samples: tuple[Sample, ...]


@dataclass(frozen=True)
class DataIndex:
    """What sampling needs to know about DATA: video names with their frame counts, image names (all sorted)."""

    videos: tuple[tuple[str, int], ...]
    images: tuple[str, ...] = ()


def _rng(seed: int, *key: object) -> random.Random:
    """A generator determined by the seed and the key alone (string seeding hashes with SHA-512: stable across
    runs, machines and Python versions)."""
    return random.Random("/".join(str(k) for k in (seed, *key)))


def batches_per_epoch(videos: int, batch_size: int) -> int:
    """An epoch walks the videos once in a shuffled order, batch by batch (the last batch wraps around)."""
    return -(-videos // batch_size)


def plan_step(step: int, seed: int, data: DataIndex, mix: Mix, batch_size: int, clip_frames: int,
              stride: int, ref_margin: int = 0) -> StepPlan:
    """Branch and samples of optimizer step `step` (0-based); the same arguments always give the same plan.
    `ref_margin` > 0 keeps each reference at least that many frames from its targets (`far_reference`)."""
    epoch, index = divmod(step, batches_per_epoch(len(data.videos), batch_size))
    draw = _rng(seed, "step", epoch, index)
    branch = mix.branch(draw.random())
    order = _rng(seed, "videos", epoch).sample(range(len(data.videos)), len(data.videos))
    image_order = (_rng(seed, "images", epoch).sample(range(len(data.images)), len(data.images))
                   if data.images else [])
    samples = []
    for j in range(batch_size):
        slot = index * batch_size + j
        pick = _rng(seed, "sample", epoch, index, j)
        if branch == IMAGE:
            samples.append(Sample("image", data.images[image_order[slot % len(image_order)]]))
            continue
        name, count = data.videos[order[slot % len(order)]]
        if branch == CLIP:
            span = (clip_frames - 1) * stride + 1
            start = pick.randrange(count - span + 1)
            frames = tuple(range(start, start + span, stride))
        else:
            frames = (pick.randrange(count),)
        reference = (far_reference(pick, count, frames, ref_margin) if ref_margin > 0
                     else _reference_frame(pick, count, frames, branch))
        samples.append(Sample("video", name, frames, reference))
    return StepPlan(step, epoch, index, branch, tuple(samples))


def _reference_frame(pick: random.Random, count: int, frames: tuple[int, ...], branch: str) -> int:
    """Another frame of the same video as the reference: any frame but the target of a frame sample (paper: i !=
    ref); any frame for a clip. A one-frame video has only itself."""
    if branch == FRAME and count > 1:
        choice = pick.randrange(count - 1)
        return choice + (choice >= frames[0])
    return pick.randrange(count)


def far_reference(pick: random.Random, count: int, frames: tuple[int, ...], margin: int) -> int:
    """A reference at least `margin` frames from every target frame, uniform over those allowed, so the model
    cannot learn to copy a near-identical neighbour (Moore-AnimateAnyone keeps 30 frames, MusePose 128). A video
    too short to leave any such frame gives the frame farthest from the targets (the first of them when tied)."""
    low, high = min(frames) - margin, max(frames) + margin  # frames in (low, high) are too close
    allowed = max(0, low + 1) + max(0, count - high)
    if allowed == 0:
        return max(range(count), key=lambda i: (min(abs(i - f) for f in frames), -i))
    choice = pick.randrange(allowed)
    return choice if choice <= low else high + (choice - max(0, low + 1))


def share(plan: StepPlan, rank: int, processes: int, micro: int, batch_size: int) -> StepPlan:
    """Process `rank`'s part of micro-batch `micro` of a step whose plan holds the global batch (batch_size ×
    processes × accumulation samples, in that nesting: micro-batch, then process, then sample).

    Every process plans the whole step (the branch and the frame counts are the step's, so every process runs the
    same graph) and takes its own slice; together the processes and micro-batches cover the global batch once,
    which is why N processes with batch B equal one process with batch N·B.
    """
    start = (micro * processes + rank) * batch_size
    return StepPlan(plan.step, plan.epoch, plan.index, plan.branch, plan.samples[start:start + batch_size])
