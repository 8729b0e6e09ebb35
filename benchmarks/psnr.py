"""PSNR between the frames two `benchmarks/engine.py --save` runs kept, job by job.

    python benchmarks/psnr.py out/default.npz out/compile.npz [out/low-vram.npz ...]

Compares every file with the first one (same seed, inputs and weights: the runs differ only in settings).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", type=Path, nargs="+")
    args = parser.parse_args()
    base = np.load(args.files[0])
    for other_path in args.files[1:]:
        other = np.load(other_path)
        for key in base.files:
            if key in other.files:
                a, b = base[key], other[key]
                diff = int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())
                print(f"{other_path.name} vs {args.files[0].name} {key}: PSNR {psnr(a, b):.1f} dB, max|Δ| {diff}")


if __name__ == "__main__":
    main()
