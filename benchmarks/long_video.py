"""Seconds per frame and peak memory of `fuse-long` jobs 2×K and 8×K frames long, through the command's own job
code (motion frames on disk, streamed decode and encode), so flat memory can be checked at full size.

    python benchmarks/long_video.py --full-size --device cuda --size 512 --steps 2
    python benchmarks/long_video.py --weights tests/data/tiny-bundle --device cpu --size 128 --steps 1

Prints one line per job: frames, windows, seconds per frame (sampling, decode+encode), peak device memory and the
job's peak host RSS (the kernel's high-water mark is reset between jobs where Linux allows it).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from full_size import add_model_arguments, animator_from_args  # noqa: E402

from magicanimate_cli.animate.settings import AnimateSettings  # noqa: E402
from magicanimate_cli.demo.inputs import make_motion_frames, make_reference_image  # noqa: E402
from magicanimate_cli.long.job import LongRequest, run_long_job  # noqa: E402
from magicanimate_cli.long.layout import Layout  # noqa: E402
from magicanimate_cli.media.writer import open_writer, write_image_atomic  # noqa: E402
from magicanimate_cli.runtime.progress import Reporter  # noqa: E402


def peak_rss_gib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def reset_peaks(device: torch.device) -> None:
    """Start each job's high-water marks afresh (Linux: writing 5 to clear_refs resets VmHWM)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def write_motion(path: Path, frames: int, size: int) -> Path:
    with open_writer(path, 25, size, size, crf=10) as writer:
        for frame in make_motion_frames(frames, size, size):
            writer.write(frame)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()

    animator = animator_from_args(args)
    device, dtype = animator.device, animator.dtype
    k = args.context_frames
    settings = AnimateSettings(size=args.size, steps=args.steps, seed=0, context_frames=k,
                               context_overlap=args.context_overlap, device=str(device))
    print(f"device {device} {str(dtype).replace('torch.', '')} size {args.size} steps {args.steps} K {k} "
          f"overlap {args.context_overlap}", flush=True)
    with tempfile.TemporaryDirectory(prefix="long-video-bench-") as folder:
        root = Path(folder)
        reference = write_image_atomic(root / "reference.png", make_reference_image(args.size))
        for frames in (2 * k, 8 * k):
            motion = write_motion(root / f"motion{frames}.mp4", frames, args.size)
            request = LongRequest(settings, reference, motion, root / f"out{frames}.mp4", {}, {})
            windows = len(Layout(frames, request.config).plan.windows)
            reset_peaks(device)
            started = time.perf_counter()
            result = run_long_job(animator, request, Reporter(), frames=frames, sidecar=False)
            total = time.perf_counter() - started
            peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
            sample, write = result.timings["sample_s"], result.timings["decode_encode_s"]
            print(f"frames {frames:4d} windows {windows:3d} | {total:7.1f} s | sample {sample / frames:6.3f} s/frame "
                  f"| decode+encode {write / frames:6.3f} s/frame | peak GPU {peak:6.2f} GiB | "
                  f"peak RSS {peak_rss_gib():5.2f} GiB", flush=True)


if __name__ == "__main__":
    main()
