"""Running an evaluation: pair the inputs, check frame counts, stream batches through the metrics.

Per-frame metrics are averaged per video and, for the aggregate, over all frames of all videos
(DisCo averaged over the pooled frame files). Distribution metrics are computed once, over the
whole set, from statistics accumulated batch by batch.

Protocols differ only in which metrics see generated frames resized to the ground truth's size:
  * `gt-size` (the default): every metric;
  * `disco`: only L1, PSNR and SSIM, exactly as DisCo's code (github.com/Wangt-CN/DisCo): its
    compute_ssim_l1_psnr (tool/metrics/ssim_l1_lpips_psnr.py) calls cv2.resize when the shapes differ;
    compute_lpips there does not resize (LPIPS then needs equal sizes); FID runs pytorch-fid on the frame
    files (gen_eval.sh, gen_eval_tm.sh), whose network resizes each image itself; FID-VID and FVD resize
    every frame straight to 112 / 224 (DatasetFVDVideoResize in tool/metrics/utils.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..runtime.errors import InputError
from ..runtime.model_guard import running_model
from . import pixels
from .features import ClipFeatures, FrameFeatures
from .frames import VideoPair, pair_inputs
from .frechet import frechet_distance_of
from .metrics import FRAME_METRICS, METRICS, SET_METRICS, plan_metrics
from .networks import i3d, inception, lpips, resnet3d
from .resize import resize_to
from .weights import FID_INCEPTION, I3D_KINETICS, LPIPS_VGG_HEADS, R3D50_KINETICS, VGG16, require_file

RESIZED_FOR = {"gt-size": frozenset(METRICS), "disco": frozenset({"l1", "psnr", "ssim"})}
"""Per protocol, the metrics that see generated frames resized to the ground truth's size."""
SAMPLING = {"16": {"fid-vid": "clips", "fvd": "clips"},
            "video": {"fid-vid": "video-mean", "fvd": "video-whole"},
            "sliding": {"fid-vid": "sliding", "fvd": "sliding"}}
"""`--clips` -> ClipFeatures sampling per video metric (see features.py for DisCo's sources)."""
SAMPLE_UNIT = {"16": "16-frame clips", "video": "videos", "sliding": "16-frame windows"}


@dataclass(frozen=True)
class EvalSettings:
    """What to compute and how; `metrics=None` means every metric the weights on disk allow."""

    weights_dir: Path
    device: torch.device
    metrics: tuple[str, ...] | None = None
    batch_size: int = 16
    align: str = "strict"
    protocol: str = "gt-size"
    legacy_psnr: bool = False
    clips: str = "16"

    def resized(self, metric: str) -> bool:
        """Whether `metric` sees generated frames at the ground truth's size under this protocol."""
        return metric in RESIZED_FOR[self.protocol]


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
    clips: str
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
    files: dict[str, Path] = field(default_factory=dict)
    """Per metric, the weights file its network was loaded from: what a failure names."""
    warnings_seen: set[str] = field(default_factory=set)

    def running(self, metric: str, where: str):
        """Guard one call of `metric`'s network (see model_guard)."""
        return running_model(self.files[metric], where, self.warnings_seen)


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
        pipeline.files["lpips"] = require_file(LPIPS_VGG_HEADS, weights)
        model = lpips.load_lpips(require_file(VGG16, weights), pipeline.files["lpips"])
        pipeline.lpips = model.to(device)
    clips_per_batch = max(1, settings.batch_size // 16)
    if "fid" in metrics:
        pipeline.files["fid"] = require_file(FID_INCEPTION, weights)
        net = inception.load_fid_inception(pipeline.files["fid"]).to(device)
        pipeline.sets["fid"] = tuple(FrameFeatures(net, inception.FEATURE_DIM, device) for _ in range(2))
    if "fid-vid" in metrics:
        pipeline.files["fid-vid"] = require_file(R3D50_KINETICS, weights)
        net = resnet3d.load_resnet3d50(pipeline.files["fid-vid"]).to(device)
        mean = np.asarray(resnet3d.PIXEL_MEAN, dtype=np.float32)
        pipeline.sets["fid-vid"] = tuple(
            ClipFeatures(net, resnet3d.FEATURE_DIM, device, resnet3d.INPUT_SIZE, lambda c: c - mean,
                         resnet3d.CLIP_LENGTH, clips_per_batch, SAMPLING[settings.clips]["fid-vid"])
            for _ in range(2))
    if "fvd" in metrics:
        pipeline.files["fvd"] = require_file(I3D_KINETICS, weights)
        net = i3d.load_i3d(pipeline.files["fvd"]).to(device)
        pipeline.sets["fvd"] = tuple(
            ClipFeatures(net, i3d.FEATURE_DIM, device, i3d.INPUT_SIZE, lambda c: c / 127.5 - 1.0,
                         i3d.CLIP_LENGTH, clips_per_batch, SAMPLING[settings.clips]["fvd"]) for _ in range(2))
    return pipeline


@dataclass(frozen=True)
class Batch:
    """Frames of one pair: generated as decoded and at the ground truth's size, and the ground truth."""

    generated: np.ndarray
    resized: np.ndarray
    truth: np.ndarray

    def generated_for(self, metric: str, settings: EvalSettings) -> np.ndarray:
        return self.resized if settings.resized(metric) else self.generated


def _paired_batches(pair: VideoPair, count: int, batch_size: int) -> Iterator[Batch]:
    """Batches of uint8 frames, generated ones also resized to the ground truth's size."""
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


def _stack(items: list[tuple[np.ndarray, np.ndarray]]) -> Batch:
    truth = np.stack([t for _, t in items])
    generated = np.stack([g for g, _ in items])
    return Batch(generated, resize_to(generated, truth.shape[1:3]), truth)


def _frame_scores(metrics: list[str], settings: EvalSettings, pipeline: _Pipeline,
                  batch: Batch, where: str) -> dict[str, np.ndarray]:
    """Per-frame values of the frame metrics for one batch (`where` names it if a network fails)."""
    scores: dict[str, np.ndarray] = {}
    truth = batch.truth
    if "l1" in metrics:
        scores["l1"] = pixels.l1_disco(batch.generated_for("l1", settings), truth)
    if "psnr" in metrics:
        psnr = pixels.psnr_legacy_uint8 if settings.legacy_psnr else pixels.psnr
        scores["psnr"] = psnr(batch.generated_for("psnr", settings), truth)
    if "ssim" in metrics:
        scores["ssim"] = pixels.ssim_grey(batch.generated_for("ssim", settings), truth)
    if pipeline.lpips is not None:
        # DisCo's protocol: [0, 1] tensors go to LPIPS unchanged (no normalize=True).
        gen = batch.generated_for("lpips", settings)
        a = torch.from_numpy(gen).to(settings.device).permute(0, 3, 1, 2).float() / 255.0
        b = torch.from_numpy(truth).to(settings.device).permute(0, 3, 1, 2).float() / 255.0
        with torch.no_grad(), pipeline.running("lpips", where):
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
    if "lpips" in metrics and not settings.resized("lpips"):
        _lpips_needs_equal_sizes(pairs, settings, metrics, skipped)
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
        first = 0
        for batch in _paired_batches(pair, count, settings.batch_size):
            where = f"frames {first}-{first + len(batch.truth) - 1} of {pair.generated.path}"
            for metric, values in _frame_scores(frame_metrics, settings, pipeline, batch, where).items():
                per_video[metric].append(values)
            for metric, (gen_side, truth_side) in pipeline.sets.items():
                with pipeline.running(metric, where):
                    gen_side.push(batch.generated_for(metric, settings))
                    truth_side.push(batch.truth)
            on_frames(len(batch.truth))
            first += len(batch.truth)
        for metric, sides in pipeline.sets.items():
            with pipeline.running(metric, f"the last clips of {pair.generated.path}"):
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
        with pipeline.running(metric, "the last clips"):
            gen_side.finish()
            truth_side.finish()
        samples = min(gen_side.stats.count, truth_side.stats.count)
        if samples < 2:
            aggregate[metric] = None
            unit = "frames" if metric == "fid" else SAMPLE_UNIT[settings.clips]
            notes[metric] = f"needs at least 2 {unit} per side, got {samples}"
        else:
            aggregate[metric] = frechet_distance_of(gen_side.stats, truth_side.stats)
    psnr_mode = "legacy-uint8" if settings.legacy_psnr else "standard"
    return EvalReport(settings.protocol, psnr_mode, settings.clips, metrics, skipped, videos, aggregate, notes)


def _lpips_needs_equal_sizes(pairs: list[VideoPair], settings: EvalSettings, metrics: list[str],
                             skipped: dict[str, str]) -> None:
    """DisCo's compute_lpips compares frames as they are: of different sizes, it has no value.

    Named with --metrics, that is an error; in a default run LPIPS is skipped with the reason.
    """
    for pair in pairs:
        if tuple(pair.generated.size) != tuple(pair.truth.size):
            (gh, gw), (th, tw) = pair.generated.size, pair.truth.size
            reason = (f"--protocol {settings.protocol} compares LPIPS frames unresized, as DisCo's compute_lpips, "
                      f"and {pair.generated.path} is {gw}x{gh} while {pair.truth.path} is {tw}x{th}")
            if settings.metrics is not None:
                raise InputError(f"{reason}; use --protocol gt-size or leave lpips out of --metrics")
            metrics.remove("lpips")
            skipped["lpips"] = reason
            return

