"""What the denoising loop is asked to do: steps, guidance, windows and how they are fused.

Kept apart from the sampler, which needs torch, so that planning a run (`fuse-long --plan`) imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from .windows import WindowPlan, plan_windows


@dataclass(frozen=True)
class SamplerConfig:
    steps: int = 25
    guidance_scale: float = 7.5
    context_frames: int = 16
    context_overlap: int = 4
    wrap: bool = True
    fusion: str = "mean"  # mean | pyramid | none (none: windows laid back to back)
    shared_prefix: bool = True  # False: both guidance copies run the whole UNet, as the official pipeline does
    scheduler: str = "ddim"  # a name of engine/schedulers.py: ddim (official) | dpm++2m | unipc | euler | ...

    @property
    def guided(self) -> bool:
        return self.guidance_scale > 1.0

    def window_plan(self, frames: int) -> WindowPlan:
        """The windows over `frames` (padded) frames; without fusion they are laid back to back, not overlapped."""
        overlap = 0 if self.fusion == "none" else self.context_overlap
        return plan_windows(frames, self.context_frames, overlap, self.wrap)
