"""FLOP of one denoising step at the released sizes, before and after the shared UNet prefix.

    python benchmarks/flops.py [--size 512] [--context-frames 16] [--context-overlap 4]

Counted with torch.utils.flop_counter on the meta device (no weights, no GPU; seconds): the UNet call of one
window (both guidance copies), the ControlNet per frame, the appearance encoder per step, and what one output
frame of a long video costs per step. "unshared" runs both copies through the whole UNet, as the official
pipeline does.
"""

from __future__ import annotations

import argparse

from magicanimate_cli.engine.cost import count_step_cost, released_size_models
from magicanimate_cli.engine.sampler import SamplerConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--context-frames", type=int, default=16)
    parser.add_argument("--context-overlap", type=int, default=4)
    args = parser.parse_args()
    models = released_size_models()
    tera = 1e12
    costs = {}
    for name, shared in (("unshared", False), ("shared prefix", True)):
        config = SamplerConfig(context_frames=args.context_frames, context_overlap=args.context_overlap,
                               shared_prefix=shared)
        costs[name] = cost = count_step_cost(models, args.size, args.size, config)
        print(f"{name:14s} | UNet per window {cost.unet_window / tera:6.2f} TFLOP | ControlNet per frame "
              f"{cost.controlnet_frame / tera:.3f} | appearance per step {cost.appearance_pass / tera:.3f} | "
              f"window-step {cost.per_window_step() / tera:6.2f} | long video per frame·step "
              f"{cost.per_output_frame() / tera:.3f} TFLOP")
    before, after = costs["unshared"], costs["shared prefix"]
    print(f"saved per window-step {(before.unet_window - after.unet_window) / tera:.2f} TFLOP; long video "
          f"{1 - after.per_output_frame() / before.per_output_frame():.1%} fewer FLOP per output frame·step")


if __name__ == "__main__":
    main()
