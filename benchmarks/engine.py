"""Speed and peak memory of one animation, at any size, on any device, for each memory/compile setting.

    python benchmarks/engine.py --full-size --device cuda --dtype fp16 --size 512 --frames 16 96 752 --steps 4
    python benchmarks/engine.py --full-size --device cuda --compile --frames 16 96 --save out/compile.npz
    python benchmarks/engine.py --weights tests/data/tiny-bundle --size 128 --frames 32 128 --steps 2

Prints one line per job: frames, windows, sampling ms per frame·step, decode s per frame, peak device memory
allocated/reserved over the whole job (CUDA; the weights included) and peak host RSS. `--save` keeps the first
16 frames of every job (uint8) for `benchmarks/psnr.py`. The inputs are seeded noise, the same for every run.
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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument("--frames", type=int, nargs="+", default=[32, 96])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--no-shared-prefix", action="store_true",
                        help="run both guidance copies through the whole UNet (the official arithmetic)")
    parser.add_argument("--save", type=Path, help="npz file for the first 16 frames of each job")
    args = parser.parse_args()

    animator = animator_from_args(args)
    device, dtype = animator.device, animator.dtype
    rng = np.random.default_rng(0)
    reference = rng.integers(0, 255, (args.size, args.size, 3), dtype=np.uint8)
    config = SamplerConfig(args.steps, 7.5, args.context_frames, args.context_overlap,
                           shared_prefix=not args.no_shared_prefix)
    mode = "low-vram" if args.low_vram else "default"
    print(f"device {device} {dtype} size {args.size} steps {args.steps} K {args.context_frames} overlap "
          f"{args.context_overlap} | {mode}{' compile' if args.compile else ''}"
          f"{' unshared-prefix' if args.no_shared_prefix else ''}", flush=True)
    t0 = time.perf_counter()
    animator.warm_up(args.size, args.size, config)  # compiles with --compile; warms kernels otherwise
    _sync(device)
    print(f"warm-up {time.perf_counter() - t0:.1f} s", flush=True)
    saved = {}
    for frames in args.frames:
        motion = np.random.default_rng(frames).integers(0, 255, (frames, args.size, args.size, 3), dtype=np.uint8)
        plan = plan_windows(padded_length(frames, args.context_frames), args.context_frames, args.context_overlap)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        stats: list[StepStats] = []
        _sync(device)
        t0 = time.perf_counter()
        latents = animator.sample(reference, motion, config, seed=0, stats=stats)
        _sync(device)
        t1 = time.perf_counter()
        first = []
        for index, frame in enumerate(animator.decode(latents)):
            if index < 16:
                first.append((frame * 255).round().astype(np.uint8))
        _sync(device)
        t2 = time.perf_counter()
        saved[f"frames_{frames}"] = np.stack(first)
        alloc = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
        reserved = torch.cuda.max_memory_reserved() / 2**30 if device.type == "cuda" else float("nan")
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"frames {frames:4d} windows {len(plan.windows):3d} | sample {t1 - t0:8.2f} s = "
              f"{(t1 - t0) / frames / args.steps * 1000:6.1f} ms/frame·step | decode {(t2 - t1) / frames:.3f} "
              f"s/frame | peak GPU alloc {alloc:5.2f} GiB reserved {reserved:5.2f} GiB | peak RSS {rss:5.2f} GiB "
              f"| cached ControlNet frames ≤ {max(s.peak_cached_frames for s in stats)}", flush=True)
    if args.save is not None:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(args.save, **saved)


if __name__ == "__main__":
    main()
