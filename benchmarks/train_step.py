"""Seconds per optimizer step, samples/s, peak memory and FLOP rate of `magicanimate train`'s step, per setting.

    python benchmarks/train_step.py --flops                      # FLOPs per step at the released size (meta, CPU)
    python benchmarks/train_step.py --full-size --device cuda --stage 1 --size 512 --batch-size 1
    python benchmarks/train_step.py --full-size --device cuda --stage 2 --size 512 --frames 16 \\
        --precision bf16 --optimizer adamw8bit
    python benchmarks/train_step.py --weights tests/data/tiny-bundle --stage 2 --size 128 --frames 4

The step is the training model's (encoder, ControlNet, UNet with per-sample reference attention), MSE, backward
and the optimizer, on seeded random latents and poses (the VAE encode, a frozen inference pass, is left out and
so are its FLOPs). Rows: batch, frames, precision (autocast with frozen networks cast, trainable weights fp32),
optimizer (adamw, adamw8bit), LoRA rank, gradient checkpointing. A row that needs CUDA (16-bit precision, 8-bit
Adam) prints "needs CUDA" elsewhere. Each row prints the median step time after one warm-up step, samples/s,
the FLOPs of a step counted on the meta device (as `train --dry-run` counts them), the achieved FLOP rate and its
share of the GPU's bf16 dense peak, and the peak memory (CUDA) or host RSS beside the dry-run's estimate.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))

from full_size import random_components  # noqa: E402
from magicanimate_cli.train.estimate import (StepSettings, ModelConfigs, account, count,  # noqa: E402
                                             estimate)
from magicanimate_cli.train.model import TrainingModel, bypass_motion_modules, load_parts, set_trainable  # noqa: E402

BF16_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 70.0, "L4": 121.0,
                    "RTX 4090": 165.0, "RTX 3090": 71.0}
"""Dense bf16 tensor-core peaks (vendor data sheets, SXM parts), by a substring of the device name."""
TERA, GIB = 1e12, 2**30


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


def wanted(args) -> StepSettings:
    return StepSettings(stage=args.stage, batch_size=args.batch_size, frames=args.frames, width=args.size,
                            height=args.size, mixed_precision=args.precision,
                            gradient_checkpointing=args.gradient_checkpointing, optimizer=args.optimizer,
                            lora=args.lora, cache_latents=True)  # the benchmark's step has no VAE encode


def configs(args) -> ModelConfigs:
    return ModelConfigs() if args.full_size or args.weights is None else ModelConfigs.from_folders(
        args.weights, args.weights / "MagicAnimate")


def print_flops(args) -> None:
    """FLOPs per training step at the released size for each stage's headline shapes (meta device)."""
    for stage, frames in ((1, 1), (2, args.frames)):
        for batch in sorted({1, args.batch_size}):
            settings = StepSettings(stage=stage, batch_size=batch, frames=frames, width=args.size,
                                        height=args.size, cache_latents=False)
            counted = count(settings, ModelConfigs())
            step, ckpt = account(settings, counted), account(
                StepSettings(**{**vars(settings), "gradient_checkpointing": True}), counted)
            model_only = counted.step.forward_flops + counted.step.backward_flops
            print(f"stage {stage} {args.size}px batch {batch}" + (f" frames {frames}" if stage == 2 else "") +
                  f": {model_only / TERA:.2f} TFLOP forward+backward, {counted.step.vae_flops / TERA:.2f} VAE "
                  f"encode, {step.flops_per_step / TERA:.2f} per step ({ckpt.flops_per_step / TERA:.2f} with "
                  "checkpointing's recompute)")


def gpu_only_reason(args, device: torch.device) -> str | None:
    if device.type == "cuda":
        return None
    if args.precision != "no":
        return f"--precision {args.precision}"
    if args.optimizer == "adamw8bit":
        return "--optimizer adamw8bit"
    return None


def prepare(args, model: TrainingModel, device: torch.device):
    """Trainable parameters and optimizer as `train` makes them for this row."""
    from magicanimate_cli.train.optim import make_optimizer

    if args.lora:
        from magicanimate_cli.train.lora import add_adapters

        params = add_adapters(model, args.stage, args.lora, seed=0)
    else:
        params = set_trainable(model, args.stage)
    if args.precision != "no":  # frozen networks cast, trainable weights stay fp32 (as --mixed-precision)
        half = {"fp16": torch.float16, "bf16": torch.bfloat16}[args.precision]
        for p in model.parameters():
            if not p.requires_grad:
                p.data = p.data.to(half)
    if args.gradient_checkpointing:
        try:
            from magicanimate_cli.train.precision import enable_gradient_checkpointing
        except ImportError:
            raise SystemExit("--gradient-checkpointing: this version has no train --gradient-checkpointing "
                             "(train/precision.py)") from None
        enable_gradient_checkpointing(model)
    return params, make_optimizer(args.optimizer, params, 1e-5, 1e-2, str(device))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, help="weights directory (official layout)")
    parser.add_argument("--full-size", action="store_true", help="random SD 1.5-size weights instead")
    parser.add_argument("--flops", action="store_true", help="only count FLOPs per step at the released size")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--stage", type=int, choices=(1, 2), default=1)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--frames", type=int, default=16, help="stage 2's clip length")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--precision", choices=("no", "fp16", "bf16"), default="no")
    parser.add_argument("--optimizer", choices=("adamw", "adamw8bit"), default="adamw")
    parser.add_argument("--lora", type=int, default=0, metavar="RANK")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak, if not in the table")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    if args.flops:
        print_flops(args)
        return
    device = torch.device(args.device)
    frames = args.frames if args.stage == 2 else 1
    label = (f"stage {args.stage} {args.size}px batch {args.batch_size} frames {frames} precision {args.precision} "
             f"checkpointing {'on' if args.gradient_checkpointing else 'off'} {args.optimizer}"
             + (f" lora {args.lora}" if args.lora else ""))
    reason = gpu_only_reason(args, device)
    if reason is not None:
        print(f"{label}: needs CUDA ({reason})")
        return
    model, text = build(args, device)
    params, optimizer = prepare(args, model, device)
    predicted = estimate(wanted(args), configs(args))
    flops = predicted.flops_per_step
    b, h = args.batch_size, args.size // 8
    g = torch.Generator().manual_seed(0)
    noisy = torch.randn(b, 4, frames, h, h, generator=g).to(device)
    noise = torch.randn(b, 4, frames, h, h, generator=g).to(device)
    reference = torch.randn(b, 4, h, h, generator=g).to(device)
    pose = torch.rand(b, frames, 3, args.size, args.size, generator=g).to(device)
    t = torch.randint(0, 1000, (b,), generator=g).to(device)
    keep = torch.ones(b, dtype=torch.bool, device=device)
    keep[0] = False  # a step that drops a reference: both attentions, the costlier step the estimate counts
    half = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(args.precision)
    scaler = torch.amp.GradScaler("cuda") if args.precision == "fp16" else None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.steps + 1):
        start = time.perf_counter()
        autocast = torch.autocast(device.type, dtype=half) if half else contextlib.nullcontext()
        with autocast:
            pred = model(noisy, t, text.expand(b, -1, -1).to(half or torch.float32), reference, pose, keep)
        loss = F.mse_loss(pred.float(), noise)
        if scaler:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times[1:])
    rate = flops / seconds / TERA
    line = (f"{label}: {seconds:.3f} s/step, {b / seconds:.2f} samples/s, {flops / 1e9:,.1f} GFLOP/step, "
            f"{rate:.2f} TFLOP/s, {sum(p.numel() for p in params) / 1e6:.2f}M trainable")
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = args.peak_tflops or next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)
        if peak:
            line += f", {rate / peak:.1%} of {name}'s bf16 peak"
        measured = torch.cuda.max_memory_allocated() / GIB
        line += (f", peak CUDA {measured:.2f} GiB (dry-run estimate {predicted.memory['peak'] / GIB:.2f} GiB, "
                 f"{predicted.memory['peak'] / GIB / measured - 1:+.0%})")
    else:
        line += f", peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB"
    print(line)


if __name__ == "__main__":
    main()
