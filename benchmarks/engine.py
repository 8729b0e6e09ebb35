"""Seconds per frame and peak memory of one animation, at any size, on any device.

    python benchmarks/engine.py --full-size --device cuda --dtype fp16 --size 512 --frames 32 96 --steps 5
    python benchmarks/engine.py --weights tests/data/tiny-bundle --size 128 --frames 32 128 --steps 2

Prints one line per job: frames, windows, sampling seconds per frame and per frame-step, decode seconds,
peak device memory (CUDA) and peak host RSS.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

from full_size import add_model_arguments, animator_from_args  # noqa: E402
from magicanimate_cli.engine.sampler import SamplerConfig, StepStats  # noqa: E402
from magicanimate_cli.engine.windows import padded_length, plan_windows  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument("--frames", type=int, nargs="+", default=[32, 96])
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()

    animator = animator_from_args(args)
    device, dtype = animator.device, animator.dtype
    rng = np.random.default_rng(0)
    reference = rng.integers(0, 255, (args.size, args.size, 3), dtype=np.uint8)
    config = SamplerConfig(args.steps, 7.5, args.context_frames, args.context_overlap)
    print(f"device {device} {dtype} size {args.size} steps {args.steps} K {args.context_frames} "
          f"overlap {args.context_overlap}", flush=True)
    animator.sample(reference, rng.integers(0, 255, (args.context_frames, args.size, args.size, 3), np.uint8),
                    SamplerConfig(1, 7.5, args.context_frames, args.context_overlap), seed=0)  # warm-up
    for frames in args.frames:
        motion = rng.integers(0, 255, (frames, args.size, args.size, 3), dtype=np.uint8)
        plan = plan_windows(padded_length(frames, args.context_frames), args.context_frames, args.context_overlap)
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        stats: list[StepStats] = []
        t0 = time.perf_counter()
        latents = animator.sample(reference, motion, config, seed=0, stats=stats)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t1 = time.perf_counter()
        decoded = sum(1 for _ in animator.decode(latents))
        if device.type == "cuda":
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"frames {frames:4d} windows {len(plan.windows):3d} | sample {t1 - t0:8.2f} s = "
              f"{(t1 - t0) / frames:.3f} s/frame ({(t1 - t0) / frames / args.steps * 1000:.1f} ms/frame/step) | "
              f"decode {t2 - t1:6.2f} s ({decoded} frames) | peak GPU {peak:6.2f} GiB | peak RSS {rss:5.2f} GiB "
              f"| cached ControlNet frames ≤ {max(s.peak_cached_frames for s in stats)}", flush=True)


if __name__ == "__main__":
    main()
