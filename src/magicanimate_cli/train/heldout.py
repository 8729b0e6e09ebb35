"""The held-out loss: the denoising loss on a fixed set, and what each condition is worth on it.

A run's training loss is noisy (one random timestep per sample) and says nothing about what the model uses. The
held-out set is fixed once from the seed: N items, each a sample (frames, reference) of the held-out data, a
timestep and a noise tensor. Timesteps are the N evenly spaced quantiles of the schedule, so every part of the
noise range counts the same; noise comes from a generator of its own per item (never the run's generator, so
measuring changes nothing about training). The number is therefore a function of the weights alone: the same
across resumes, data workers, process counts and runs that share the validation set.

On the same items, with the condition taken away:

    ref_gain       loss without the reference (the unconditional path guidance uses) - loss with it
    pose_gain      loss with another item's render (or the background-only render) - loss with the right one
    temporal_gain  stage 2: loss with the motion modules bypassed - loss with them

Positive means the model uses that condition. Each is a mean over items of the paired difference, with its
standard error over the set.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..motion.palette import BACKGROUND
from ..runtime.errors import InputError
from .batches import DEFAULT_FIT, FrameSource, make_batch
from .model import TrainingParts, encode_latents
from .sampling import CLIP, FRAME, IMAGE, DataIndex, Sample, StepPlan, far_reference
from .schedule import NoiseSchedule

ITEMS = 16
"""Default size of the set: 16 timesteps, 4 per band; a stage-1 measurement is 3 forwards an item."""
BANDS = 4
"""Timestep bands the loss is also reported for (quarters of the schedule)."""


@dataclass(frozen=True)
class HeldOutItem:
    """One fixed measurement: a sample, its timestep and the seed of its noise."""

    sample: Sample
    branch: str
    timestep: int
    noise_seed: int


@dataclass(frozen=True)
class HeldOutSet:
    items: tuple[HeldOutItem, ...]
    timesteps: int  # the schedule's length (bands are fractions of it)


def quantile_timesteps(count: int, timesteps: int) -> list[int]:
    """`count` evenly spaced quantiles of [0, timesteps): the midpoints of equal slices."""
    return [min(timesteps - 1, int((i + 0.5) * timesteps / count)) for i in range(count)]


def choose_items(pool: DataIndex, stage: int, clip_frames: int, stride: int, seed: int, timesteps: int,
                 count: int = ITEMS, ref_margin: int = 0) -> HeldOutSet:
    """The fixed set: a pure function of the held-out data's names and lengths, the stage and the seed.

    Samples are taken in a seeded order of the pool, cycling when the pool is smaller than the set; stage 2
    measures clips of the videos long enough for one (images have no motion), stage 1 single frames of videos
    and images alike. A video's reference keeps `ref_margin` frames from its targets, as in training."""
    span = (clip_frames - 1) * stride + 1
    videos = [(name, n) for name, n in pool.videos if stage == 1 or n >= span]
    entries = [("video", name, n) for name, n in videos] + ([("image", name, 1) for name in pool.images]
                                                            if stage == 1 else [])
    if not entries:
        raise InputError("the held-out data has no " + (f"video of at least {span} frames" if stage == 2
                                                          else "video or image"))
    order = random.Random(f"{seed}/heldout/order").sample(entries, len(entries))
    items = []
    for i, t in enumerate(quantile_timesteps(count, timesteps)):
        kind, name, frames = order[i % len(order)]
        pick = random.Random(f"{seed}/heldout/item/{i}")
        items.append(HeldOutItem(*_sample(kind, name, frames, stage, span, stride, pick, ref_margin), t,
                                 _seed(f"{seed}/heldout/noise/{i}")))
    return HeldOutSet(tuple(items), timesteps)


def _sample(kind: str, name: str, frames: int, stage: int, span: int, stride: int, pick: random.Random,
            ref_margin: int = 0) -> tuple[Sample, str]:
    """A sample of one entry: an image is its own reference; a video's reference is another of its frames."""
    if kind == "image":
        return Sample("image", name), IMAGE
    if stage == 2:
        start = pick.randrange(frames - span + 1)
        clip = tuple(range(start, start + span, stride))
        reference = far_reference(pick, frames, clip, ref_margin) if ref_margin > 0 else pick.randrange(frames)
        return Sample("video", name, clip, reference), CLIP
    target = pick.randrange(frames)
    if ref_margin > 0:
        return Sample("video", name, (target,), far_reference(pick, frames, (target,), ref_margin)), FRAME
    if frames == 1:
        return Sample("video", name, (target,), target), FRAME
    other = pick.randrange(frames - 1)  # any frame but the target
    return Sample("video", name, (target,), other + (other >= target)), FRAME


def _seed(key: str) -> int:
    """A 63-bit seed from a key (SHA-256: stable across machines and Python versions)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little") >> 1


# ---------------------------------------------------------------------------------------------- tensors


@dataclass
class ItemTensors:
    """An item's inputs, read and encoded once (the VAE is frozen): batch 1 on the measuring device."""

    latents: torch.Tensor  # (1, 4, f, h, w)
    reference: torch.Tensor  # (1, 4, h, w)
    pose: torch.Tensor  # (1, f, 3, H, W)
    noise: torch.Tensor  # like latents
    timestep: torch.Tensor  # (1,)
    name: str


def item_tensors(item: HeldOutItem, source: FrameSource, vae: nn.Module, width: int, height: int,
                 device: torch.device, fit: str) -> ItemTensors:
    """Read, fit (as training does: `fit` is --fit) and encode one item with the training's own batch code; its
    noise from its own generator."""
    plan = StepPlan(0, 0, 0, item.branch, (item.sample,))
    batch = make_batch(plan, source, width, height, fit).to(device)
    b, f = batch.target.shape[:2]
    latents = encode_latents(vae, batch.target.flatten(0, 1))
    latents = latents.reshape(b, f, *latents.shape[1:]).transpose(1, 2).contiguous()
    noise = torch.randn(latents.shape, generator=torch.Generator("cpu").manual_seed(item.noise_seed))
    return ItemTensors(latents, encode_latents(vae, batch.reference), batch.pose, noise.to(device),
                       torch.tensor([item.timestep], device=device), item.sample.name)


def foil_pose(items: Sequence[ItemTensors], i: int) -> torch.Tensor:
    """The wrong render for item i: the next item's of another sample, else the background-only render."""
    for j in range(1, len(items)):
        other = items[(i + j) % len(items)]
        if other.name != items[i].name and other.pose.shape == items[i].pose.shape:
            return other.pose
    pose = torch.empty_like(items[i].pose)
    for c, value in enumerate(BACKGROUND):
        pose[:, :, c] = value / 255.0
    return pose


# ---------------------------------------------------------------------------------------------- measuring


def item_losses(model: nn.Module, text: torch.Tensor, schedule: NoiseSchedule, items: Sequence[ItemTensors],
                i: int, temporal: bool, autocast=nullcontext) -> dict[str, float]:
    """Item i's loss with every condition, and with each taken away (one forward each, no gradients)."""
    x = items[i]
    noisy = schedule.add_noise(x.latents, x.noise, x.timestep)
    keep = torch.ones(1, dtype=torch.bool, device=x.latents.device)
    drop = ~keep

    def loss(pose: torch.Tensor, flags: torch.Tensor) -> float:
        with torch.no_grad(), autocast():
            pred = model(noisy, x.timestep, text, x.reference, pose, flags)
        return float(F.mse_loss(pred.float(), x.noise.float()))

    out = {"loss": loss(x.pose, keep), "no_ref": loss(x.pose, drop), "foil_pose": loss(foil_pose(items, i), keep)}
    if temporal:
        with bypassed_motion_modules(model.unet):
            out["no_temporal"] = loss(x.pose, keep)
    return out


class SkippedMotion(nn.Module):
    """A motion module's residual path alone: its input, in the memory layout a motion module returns (frame by
    frame, channels last: its attention works on (frames, pixels, channels) rows). A plain identity keeps the
    input's layout instead, and the convolutions and norms after it then round differently: the gain would
    measure layout, not the temporal layers (a motion module whose output projection is zero gives exactly
    this)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 4, 1).contiguous().permute(0, 4, 1, 2, 3)


@contextmanager
def bypassed_motion_modules(unet: nn.Module) -> Iterator[None]:
    """The UNet without its temporal layers while inside: each block's motion modules are set aside for
    `SkippedMotion` and put back afterwards, parameters untouched."""
    blocks = [b for b in (*unet.down_blocks, *unet.up_blocks) if hasattr(b, "motion_modules")]
    kept = [b.motion_modules for b in blocks]
    try:
        for block in blocks:
            block.motion_modules = nn.ModuleList(SkippedMotion() for _ in block.motion_modules)
        yield
    finally:
        for block, modules in zip(blocks, kept):
            block.motion_modules = modules


# ---------------------------------------------------------------------------------------------- summaries


def mean_and_error(values: Sequence[float]) -> tuple[float, float]:
    """The mean and its standard error (sample standard deviation / sqrt n; 0 for one value)."""
    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return mean, 0.0
    variance = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(variance / n)


GAINS = {"ref_gain": "no_ref", "pose_gain": "foil_pose", "temporal_gain": "no_temporal"}
"""Each gain and the loss it subtracts the full loss from."""


def summarise(held: HeldOutSet, losses: Sequence[dict[str, float]]) -> dict:
    """The record metrics.jsonl and the trackers get: mean loss with its standard error, the loss per timestep
    band, and each gain with its standard error (paired differences over the items)."""
    full = [x["loss"] for x in losses]
    loss, loss_se = mean_and_error(full)
    out: dict = {"loss": loss, "loss_se": loss_se, "items": len(losses)}
    width = held.timesteps / BANDS
    bands = {}
    for b in range(BANDS):
        inside = [x["loss"] for x, item in zip(losses, held.items) if int(item.timestep // width) == b]
        if inside:
            bands[f"t{int(b * width)}-{int((b + 1) * width) - 1}"] = math.fsum(inside) / len(inside)
    out["bands"] = bands
    for gain, without in GAINS.items():
        if all(without in x for x in losses):
            mean, se = mean_and_error([x[without] - x["loss"] for x in losses])
            out[gain], out[f"{gain}_se"] = mean, se
    return out


# ---------------------------------------------------------------------------------------------- the measurer


class HeldOut:
    """Measures the fixed set on the current weights. Items are read and encoded on first use; with several
    processes each measures every P-th item and `gather` (every process's list, in process order) joins them,
    so the record does not depend on the process count."""

    def __init__(self, held: HeldOutSet, source: FrameSource, parts: TrainingParts, schedule: NoiseSchedule,
                 stage: int, width: int, height: int, fit: str = DEFAULT_FIT) -> None:
        self.held, self.source, self.parts, self.schedule = held, source, parts, schedule
        self.stage, self.width, self.height, self.fit = stage, width, height, fit
        self.tensors: list[ItemTensors] | None = None

    def measure(self, rank: int = 0, processes: int = 1, autocast=nullcontext,
                gather: Callable[[list], list[list]] = lambda mine: [mine]) -> dict:
        device = self.parts.text.device
        if self.tensors is None:
            self.tensors = [item_tensors(item, self.source, self.parts.vae, self.width, self.height, device,
                                         self.fit)
                            for item in self.held.items]
        model = self.parts.model
        mine = [(i, item_losses(model, self.parts.text, self.schedule, self.tensors, i, self.stage == 2, autocast))
                for i in range(rank, len(self.tensors), processes)]
        model.bank.clear()
        joined = sorted((pair for part in gather(mine) for pair in part), key=lambda pair: pair[0])
        return summarise(self.held, [losses for _, losses in joined])
