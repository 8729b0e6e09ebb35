"""Seconds per optimizer step and peak memory of `magicanimate train`'s step, at any size, stage and batch.

    python benchmarks/train_step.py --full-size --device cuda --stage 1 --size 512 --batch-size 4
    python benchmarks/train_step.py --full-size --device cuda --stage 2 --size 512 --frames 16
    python benchmarks/train_step.py --weights tests/data/tiny-bundle --stage 2 --size 128 --frames 4

The step is the training model's (encoder, ControlNet, UNet with per-sample reference attention), MSE, backward
and AdamW, on seeded random latents and poses (the VAE encode, a frozen inference pass, is left out). Prints the
median step time after one warm-up step, and the peak device memory (CUDA) or host RSS.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))

from full_size import random_components  # noqa: E402
from magicanimate_cli.train.model import TrainingModel, bypass_motion_modules, load_parts, set_trainable  # noqa: E402


def build(args, device: torch.device) -> tuple[TrainingModel, torch.Tensor]:
    if args.full_size:
        parts = random_components(device, torch.float32)
        if args.stage == 1:
            bypass_motion_modules(parts.unet)
        with torch.no_grad():
            text = parts.text_encoder(parts.prompt_tokens.ids().to(device))
        return TrainingModel(parts.unet, parts.appearance_encoder, parts.controlnet), text
    parts = load_parts(args.stage, args.weights, start_from=args.weights / "MagicAnimate", device=device)
    return parts.model, parts.text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, help="weights directory (official layout)")
    parser.add_argument("--full-size", action="store_true", help="random SD 1.5-size weights instead")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--stage", type=int, choices=(1, 2), default=1)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--frames", type=int, default=16, help="stage 2's clip length")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    model, text = build(args, device)
    params = set_trainable(model, args.stage)
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    b, f, h = args.batch_size, (args.frames if args.stage == 2 else 1), args.size // 8
    g = torch.Generator().manual_seed(0)
    noisy = torch.randn(b, 4, f, h, h, generator=g).to(device)
    noise = torch.randn(b, 4, f, h, h, generator=g).to(device)
    reference = torch.randn(b, 4, h, h, generator=g).to(device)
    pose = torch.rand(b, f, 3, args.size, args.size, generator=g).to(device)
    t = torch.randint(0, 1000, (b,), generator=g).to(device)
    keep = torch.ones(b, dtype=torch.bool, device=device)
    times = []
    for _ in range(args.steps + 1):
        start = time.perf_counter()
        loss = F.mse_loss(model(noisy, t, text.expand(b, -1, -1), reference, pose, keep), noise)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    memory = (f"peak CUDA {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if device.type == "cuda"
              else f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB")
    print(f"stage {args.stage} {args.size}px batch {b} frames {f}: {statistics.median(times[1:]):.3f} s/step, "
          f"{sum(p.numel() for p in params) / 1e6:.1f}M trainable, {memory}")


if __name__ == "__main__":
    main()
