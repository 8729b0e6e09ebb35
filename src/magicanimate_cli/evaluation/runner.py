"""Running an evaluation: pair the inputs, check frame counts, stream batches through the metrics.

Per-frame metrics are averaged per video and, for the aggregate, over all frames of all videos
(DisCo averaged over the pooled frame files). Distribution metrics are computed once, over the
whole set, from statistics accumulated batch by batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from . import pixels
from .features import ClipFeatures, FrameFeatures
from .frames import VideoPair, pair_inputs
from .frechet import frechet_distance_of
from .metrics import FRAME_METRICS, SET_METRICS, plan_metrics
from .networks import i3d, inception, lpips, resnet3d
from .resize import resize_to
from .weights import FID_INCEPTION, I3D_KINETICS, LPIPS_VGG_HEADS, R3D50_KINETICS, VGG16, require_file

ALIGN_CHOICES = ("strict", "truncate")
PROTOCOL_CHOICES = ("disco",)


@dataclass(frozen=True)
class EvalSettings:
    """What to compute and how; `metrics=None` means every metric the weights on disk allow."""

    weights_dir: Path
    device: torch.device
    metrics: tuple[str, ...] | None = None
    batch_size: int = 16
    align: str = "strict"
    protocol: str = "disco"
    legacy_psnr: bool = False


@dataclass
class VideoResult:
    """One pair's per-frame metric means."""

    name: str
    generated: Path
    truth: Path
    frames: int
    values: dict[str, float] = field(default_factory=dict)


@dataclass
class EvalReport:
    """Everything the table, JSON and CSV show."""

    protocol: str
    psnr_mode: str
    metrics: list[str]
    skipped: dict[str, str]
    videos: list[VideoResult]
    aggregate: dict[str, float | None]
    notes: dict[str, str]

    @property
    def frames(self) -> int:
        return sum(video.frames for video in self.videos)


@dataclass
class _Pipeline:
    """Loaded networks and the per-side feature accumulators of one run."""

    lpips: lpips.LPIPS | None = None
    sets: dict[str, tuple[FrameFeatures | ClipFeatures, FrameFeatures | ClipFeatures]] = field(default_factory=dict)


def _frame_counts(pairs: list[VideoPair], align: str) -> list[int]:
    """Frames compared per pair: equal counts, or the shorter one's with `--align truncate`."""
    counts = []
    for pair in pairs:
        n_gen, n_truth = pair.generated.count, pair.truth.count
        if n_gen != n_truth and align != "truncate":
            raise InputError(f"{pair.generated.path}: {n_gen} frames but ground truth {pair.truth.path} has "
                             f"{n_truth}; pass --align truncate to compare the first {min(n_gen, n_truth)}")
        if min(n_gen, n_truth) == 0:
            raise InputError(f"{pair.generated.path}: no frames to compare")
        counts.append(min(n_gen, n_truth))
    return counts


def _load_pipeline(metrics: list[str], settings: EvalSettings) -> _Pipeline:
    """Load each needed network once, on the chosen device."""
    device, weights = settings.device, settings.weights_dir
    pipeline = _Pipeline()
    if "lpips" in metrics:
        model = lpips.load_lpips(require_file(VGG16, weights), require_file(LPIPS_VGG_HEADS, weights))
        pipeline.lpips = model.to(device)
    clips_per_batch = max(1, settings.batch_size // 16)
    if "fid" in metrics:
        net = inception.load_fid_inception(require_file(FID_INCEPTION, weights)).to(device)
        pipeline.sets["fid"] = tuple(FrameFeatures(net, inception.FEATURE_DIM, device) for _ in range(2))
    if "fid-vid" in metrics:
        net = resnet3d.load_resnet3d50(require_file(R3D50_KINETICS, weights)).to(device)
        mean = np.asarray(resnet3d.PIXEL_MEAN, dtype=np.float32)
        pipeline.sets["fid-vid"] = tuple(
            ClipFeatures(net, resnet3d.FEATURE_DIM, device, resnet3d.INPUT_SIZE, lambda c: c - mean,
                         resnet3d.CLIP_LENGTH, clips_per_batch) for _ in range(2))
    if "fvd" in metrics:
        net = i3d.load_i3d(require_file(I3D_KINETICS, weights)).to(device)
        pipeline.sets["fvd"] = tuple(
            ClipFeatures(net, i3d.FEATURE_DIM, device, i3d.INPUT_SIZE, lambda c: c / 127.5 - 1.0,
                         i3d.CLIP_LENGTH, clips_per_batch) for _ in range(2))
    return pipeline


def _paired_batches(pair: VideoPair, count: int, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(generated, truth) uint8 batches; generated frames resized to the ground truth's size."""
    gen_frames, truth_frames = pair.generated.frames(), pair.truth.frames()

    def both() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for index in range(count):
            gen, truth = next(gen_frames, None), next(truth_frames, None)
            for frame, source in ((gen, pair.generated), (truth, pair.truth)):
                if frame is None:
                    raise InputError(f"{source.path}: ended after {index} frames, expected {count}")
            yield gen, truth

    try:
        pending: list[tuple[np.ndarray, np.ndarray]] = []
        for item in both():
            pending.append(item)
            if len(pending) == batch_size:
                yield _stack(pending)
                pending = []
        if pending:
            yield _stack(pending)
    finally:
        gen_frames.close()
        truth_frames.close()


def _stack(items: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    truth = np.stack([t for _, t in items])
    generated = resize_to(np.stack([g for g, _ in items]), truth.shape[1:3])
    return generated, truth


def _frame_scores(metrics: list[str], settings: EvalSettings, pipeline: _Pipeline,
                  gen: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame values of the frame metrics for one batch."""
    scores: dict[str, np.ndarray] = {}
    if "l1" in metrics:
        scores["l1"] = pixels.l1_disco(gen, truth)
    if "psnr" in metrics:
        scores["psnr"] = (pixels.psnr_legacy_uint8 if settings.legacy_psnr else pixels.psnr)(gen, truth)
    if "ssim" in metrics:
        scores["ssim"] = pixels.ssim_grey(gen, truth)
    if pipeline.lpips is not None:
        # DisCo's protocol: [0, 1] tensors go to LPIPS unchanged (no normalize=True).
        a = torch.from_numpy(gen).to(settings.device).permute(0, 3, 1, 2).float() / 255.0
        b = torch.from_numpy(truth).to(settings.device).permute(0, 3, 1, 2).float() / 255.0
        with torch.no_grad():
            scores["lpips"] = pipeline.lpips(a, b).cpu().double().numpy()
    return scores


def _mean(values: list[np.ndarray]) -> float:
    joined = np.concatenate(values)
    return float(np.inf) if np.isposinf(joined).any() else float(joined.mean())


def evaluate(generated: Path, truth: Path, settings: EvalSettings,
             on_start: Callable[[int], None] = lambda total: None,
             on_frames: Callable[[int], None] = lambda n: None) -> EvalReport:
    """Compare GENERATED with GROUND_TRUTH; `on_start`/`on_frames` drive a progress display."""
    pairs = pair_inputs(generated, truth)
    counts = _frame_counts(pairs, settings.align)
    metrics, skipped = plan_metrics(settings.metrics, settings.weights_dir)
    if "ssim" in metrics:
        for pair in pairs:
            if min(pair.truth.size) < pixels.SSIM_WINDOW:
                raise InputError(f"{pair.truth.path}: frames smaller than {pixels.SSIM_WINDOW}x"
                                 f"{pixels.SSIM_WINDOW} have no SSIM; leave ssim out of --metrics")
    pipeline = _load_pipeline(metrics, settings)
    frame_metrics = [m for m in metrics if m in FRAME_METRICS]
    on_start(sum(counts))
    videos: list[VideoResult] = []
    pooled: dict[str, list[np.ndarray]] = {m: [] for m in frame_metrics}
    for pair, count in zip(pairs, counts):
        per_video: dict[str, list[np.ndarray]] = {m: [] for m in frame_metrics}
        for gen, truth_batch in _paired_batches(pair, count, settings.batch_size):
            for metric, values in _frame_scores(frame_metrics, settings, pipeline, gen, truth_batch).items():
                per_video[metric].append(values)
            for gen_side, truth_side in pipeline.sets.values():
                gen_side.push(gen)
                truth_side.push(truth_batch)
            on_frames(len(gen))
        for sides in pipeline.sets.values():
            for side in sides:
                side.end_video()
        for metric, values in per_video.items():
            pooled[metric] += values
        videos.append(VideoResult(pair.name, pair.generated.path, pair.truth.path, count,
                                  {m: _mean(v) for m, v in per_video.items()}))
    aggregate: dict[str, float | None] = {m: _mean(v) for m, v in pooled.items()}
    notes: dict[str, str] = {}
    for metric in SET_METRICS:
        if metric not in pipeline.sets:
            continue
        gen_side, truth_side = pipeline.sets[metric]
        gen_side.finish()
        truth_side.finish()
        samples = min(gen_side.stats.count, truth_side.stats.count)
        if samples < 2:
            aggregate[metric] = None
            unit = "frames" if metric == "fid" else "16-frame clips"
            notes[metric] = f"needs at least 2 {unit} per side, got {samples}"
        else:
            aggregate[metric] = frechet_distance_of(gen_side.stats, truth_side.stats)
    psnr_mode = "legacy-uint8" if settings.legacy_psnr else "standard"
    return EvalReport(settings.protocol, psnr_mode, metrics, skipped, videos, aggregate, notes)

