"""How fast `train`'s data path feeds a GPU: samples/s, peak host memory and where the time goes, with no model.

    python benchmarks/train_data.py DATA --stage 1 --size 512 --workers 1 --samples 200 --json
    python benchmarks/train_data.py DATA --stage 2 --frames 16 --frame-stride 4 --workers 1 --samples 40 --json

The samples are read exactly as `train` reads them: DATA checked as at start-up (dataset.startup), the step plans
of a seed-0 run (every step a video frame in stage 1, a clip in stage 2; --ref-margin's default) and the same
DataLoader feed (train/feed.py) with --workers worker processes. Prints one JSON line (--json) or a short table:

  samples_per_s   steady state: timed from the first sample every worker has delivered (start-up not counted)
  peak_rss_mib    peak resident memory of the main process plus each worker's (an upper bound: forked workers
                  share pages with the main process, counted in both)
  breakdown_ms    per sample, in this process on the same samples: decode (JPEG / PNG, or video seek and decode
                  with RGB conversion), convert_resize (fit: resize, pad), collate (stack into uint8 tensors); and
                  to_float_on_cpu, the palette
                  and float conversion `train` does on the training device after the worker hands the bytes over
                  (not part of samples_per_s: on a GPU it costs next to nothing)
  u_ms            the time PyAV takes to decode one frame of DATA's first video sequentially on one thread (no
                  RGB conversion), measured just before and just after the timed samples (the mean), so that
                  figures in u hold across machines and loads
  per_sample_u    1 / samples_per_s in u
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import av
import numpy as np
import torch

from magicanimate_cli.dataset.reader import DataFolder
from magicanimate_cli.dataset.startup import check_once
from magicanimate_cli.motion.fit import fit_reference
from magicanimate_cli.train.batches import RawBatch, fit_labels
from magicanimate_cli.train.feed import Feed, FeedPlan
from magicanimate_cli.train.sampling import DataIndex, Mix, plan_step
from magicanimate_cli.train.settings import DEFAULT_REF_MARGIN


def decode_unit(video: Path, frames: int = 120) -> float:
    """Seconds to decode one frame sequentially (one thread, no conversion), the median of three passes."""
    times = []
    for _ in range(3):
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1
            started, n = time.perf_counter(), 0
            for _frame in container.decode(stream):
                n += 1
                if n == frames:
                    break
            times.append((time.perf_counter() - started) / n)
    return statistics.median(times)


def feed_plan(data: DataIndex, args) -> FeedPlan:
    mix = Mix(1) if args.stage == 1 else Mix(2, 0.0, 0.0, 0.0)  # stage 1: frames; stage 2: clips, no images
    frames = 1 if args.stage == 1 else args.frames
    return FeedPlan(0, data, mix, 1, frames, args.frame_stride, args.ref_margin, 0, 1, 1, 1, args.size, args.size,
                    args.fit)


def peak_rss_mib(pids: list[int]) -> float:
    """Sum of VmHWM (peak resident set) over the processes."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def children() -> list[int]:
    me = os.getpid()
    try:
        return [int(p) for p in Path(f"/proc/{me}/task/{me}/children").read_text().split()]
    except OSError:
        return []


def throughput(folder: DataFolder, plan: FeedPlan, args) -> tuple[float, float]:
    """(samples/s in steady state, peak RSS MiB of main + workers)."""
    warm = max(1, args.workers)
    feed = Feed(plan, folder, 0, warm + args.samples, args.workers)
    for step in range(warm):
        feed.take(step, 0)
    started = time.perf_counter()
    for step in range(warm, warm + args.samples):
        feed.take(step, 0)
    seconds = time.perf_counter() - started
    rss = peak_rss_mib([os.getpid(), *children()])
    feed.close()
    return args.samples / seconds, rss


def breakdown(folder: DataFolder, plan: FeedPlan, args, count: int) -> dict[str, float]:
    """Mean milliseconds per sample of each phase, in this process."""
    read = fit = collate = floats = 0.0
    for step in range(count):
        sample = plan_step(step, plan.seed, plan.data, plan.mix, 1, plan.clip_frames, plan.frame_stride,
                           plan.ref_margin).samples[0]
        t0 = time.perf_counter()
        frames, labels, reference = folder.video_sample(sample.name, sample.frames, sample.reference)
        t1 = time.perf_counter()
        targets = np.stack([fit_reference(x, args.size, args.size, args.fit) for x in frames])
        poses = np.stack([fit_labels(x, args.size, args.size, args.fit) for x in labels])
        ref = fit_reference(reference, args.size, args.size, args.fit)
        t2 = time.perf_counter()
        raw = RawBatch(*(torch.from_numpy(np.stack([x])) for x in (targets, poses, ref)))
        t3 = time.perf_counter()
        raw.to("cpu")
        t4 = time.perf_counter()
        read, fit, collate, floats = read + t1 - t0, fit + t2 - t1, collate + t3 - t2, floats + t4 - t3
    return {"decode": 1000 * read / count, "convert_resize": 1000 * fit / count, "collate": 1000 * collate / count,
            "to_float_on_cpu": 1000 * floats / count}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--stage", type=int, choices=(1, 2), required=True)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--frame-stride", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--ref-margin", type=int, default=DEFAULT_REF_MARGIN)
    parser.add_argument("--fit", default="pad", choices=("pad", "crop", "stretch"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    folder = DataFolder(args.data)
    started = time.perf_counter()
    contents = check_once(folder)
    check_s = time.perf_counter() - started
    span = (args.frames - 1) * args.frame_stride + 1 if args.stage == 2 else 1
    data = DataIndex(tuple(v for v in contents.videos if v[1] >= span))
    plan = feed_plan(data, args)
    source = folder.layout.video(contents.videos[0][0])
    before = decode_unit(source)
    rate, rss = throughput(folder, plan, args)
    u = (before + decode_unit(source)) / 2  # around the timed run: a busy machine slows both alike
    parts = breakdown(folder, plan, args, min(args.samples, 20))
    record = {"stage": args.stage, "size": args.size, "frames": plan.clip_frames,
              "frame_stride": args.frame_stride, "workers": args.workers, "samples": args.samples,
              "videos": len(data.videos), "ready": len(contents.ready), "samples_per_s": round(rate, 2),
              "peak_rss_mib": round(rss, 1), "breakdown_ms": {k: round(v, 2) for k, v in parts.items()},
              "u_ms": round(1000 * u, 3), "per_sample_u": round(1 / rate / u, 1), "check_s": round(check_s, 3)}
    if args.json:
        print(json.dumps(record))
    else:
        for key, value in record.items():
            print(f"{key:>14}  {value}")


if __name__ == "__main__":
    main()
