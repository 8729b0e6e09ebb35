"""How far reduced precision moves the result: PSNR of decoded frames against fp32 (and the official golden).

    python benchmarks/precision.py                      # CPU: fp32 and bf16
    python benchmarks/precision.py --device cuda        # CUDA: fp32, fp16 and bf16
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from magicanimate_cli.engine.pipeline import Animator
from magicanimate_cli.runtime.devices import resolve_device

CASES = Path(__file__).resolve().parent.parent / "tests" / "data" / "parity" / "cases"
BUNDLE = Path(__file__).resolve().parent.parent / "tests" / "data" / "tiny-bundle"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--case", default="public_a")
    args = parser.parse_args()
    device = resolve_device(args.device)
    folder = CASES / args.case
    case = json.loads((folder / "case.json").read_text())
    reference = np.load(folder / "reference_image.npy")
    control = np.load(folder / "control_frames.npy")
    golden = np.load(folder / "video.npy")
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    if device.type == "cuda":
        dtypes["fp16"] = torch.float16
    results = {}
    for name, dtype in dtypes.items():
        animator = Animator.from_pretrained(BUNDLE, device, dtype)
        t0 = time.perf_counter()
        result = animator(reference, control, steps=case["num_inference_steps"],
                          guidance_scale=case["guidance_scale"], seed=case["seed"],
                          context_overlap=case["context"]["context_overlap"])
        results[name] = result.frames
        print(f"{args.case} {device} {name:>4}: {time.perf_counter() - t0:6.2f} s | vs official golden: "
              f"max |Δ| {np.abs(result.frames - golden).max():.2e}, PSNR {psnr(result.frames, golden):6.2f} dB"
              + ("" if name == "fp32" else f" | vs our fp32: PSNR {psnr(result.frames, results['fp32']):6.2f} dB"),
              flush=True)


if __name__ == "__main__":
    main()
