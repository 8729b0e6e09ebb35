"""`Animator`: the public Python API that turns a reference image and a DensePose clip into a video."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .loader import Components, load_components
from .models.reference_attention import ReferenceBank, attach_reader, attach_writer, reference_blocks
from .placement import Placement
from .schedulers import scheduler_class_name
from .sampler import (Conditioning, SamplerConfig, SamplerModels, StepStats, denoise, reference_features,
                      start_scheduler)
from .windows import WindowPlan, padded_length, validate_context

VAE_SCALE = 0.18215


@dataclass
class AnimationResult:
    frames: np.ndarray  # float32 (N, H, W, 3) in [0, 1]
    latents: torch.Tensor  # (1, 4, N, H/8, W/8)
    seed: int
    timings: dict[str, float] = field(default_factory=dict)
    stats: list[StepStats] = field(default_factory=list)


def initial_noise(seed: int, frames: int, height: int, width: int, context_frames: int,
                  noise: str = "shared", generator: torch.Generator | None = None) -> torch.Tensor:
    """The starting latents, drawn on the CPU so a seed means the same video on every machine.

    `shared`: one K-frame draw tiled over the video (MagicAnimate); `independent`: a fresh draw for each frame.
    `generator`: the run's generator (`run_generator(seed)`), which an ancestral scheduler then keeps drawing from.
    """
    generator = run_generator(seed) if generator is None else generator
    h, w = height // 8, width // 8
    if noise == "independent":
        return torch.randn((1, 4, frames, h, w), generator=generator)
    if noise != "shared":
        raise ValueError(f"unknown noise mode {noise!r} (shared or independent)")
    base = torch.randn((1, 4, context_frames, h, w), generator=generator)
    return base.repeat(1, 1, -(-frames // context_frames), 1, 1)[:, :, :frames]


def run_generator(seed: int) -> torch.Generator:
    """The run's seeded CPU generator: the initial noise first, then any noise an ancestral scheduler draws."""
    return torch.Generator("cpu").manual_seed(int(seed))


def pad_motion(motion: np.ndarray, context_frames: int) -> np.ndarray:
    """Repeat the last frame up to a whole number of windows (the output is trimmed back later)."""
    n = len(motion)
    target = padded_length(n, context_frames)
    if target == n:
        return motion
    return np.concatenate([motion, np.repeat(motion[-1:], target - n, axis=0)], axis=0)


class Animator:
    """MagicAnimate inference on one device and dtype; load once, call many times."""

    def __init__(self, components: Components, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32, low_vram: bool = False) -> None:
        """`low_vram`: the VAE also waits in host memory while denoising, and the two guidance copies run one
        after the other from the fork (the same numbers, about half the UNet activations)."""
        self.components = components
        self.device = torch.device(device)
        self.dtype = dtype
        self.low_vram = low_vram
        bank = ReferenceBank(len(reference_blocks(components.unet)))
        attach_writer(components.appearance_encoder, bank)
        attach_reader(components.unet, bank)
        self.models = SamplerModels(components.unet, components.appearance_encoder, components.controlnet, bank,
                                    split_copies=low_vram)
        self.placement = Placement({"unet": components.unet, "appearance_encoder": components.appearance_encoder,
                                    "controlnet": components.controlnet, "vae": components.vae,
                                    "text_encoder": components.text_encoder}, self.device)
        self._text: torch.Tensor | None = None
        self.compiled = False
        self._warm: set[tuple[int, int, int]] = set()

    @classmethod
    def from_pretrained(cls, weights_dir: str | Path, device: torch.device | str = "cpu",
                        dtype: torch.dtype = torch.float32, low_vram: bool = False,
                        animation_weights: str | Path | None = None) -> "Animator":
        """Load a weights folder in the official layout; `animation_weights`, a folder in the `MagicAnimate/`
        layout (a fine-tuned model, a training run's export), replaces its MagicAnimate part."""
        return cls(load_components(weights_dir, device, dtype, animation_weights), device, dtype, low_vram)

    def compile(self, backend: str = "inductor") -> None:
        """torch.compile what runs every window: the UNet's prefix and suffix, the ControlNet, the VAE decoder.

        `dynamic=False`: a window always has the same shape, so each graph is specialised to it (the ControlNet
        sees a few batch sizes, one graph each). The first window of a run pays for compilation; `warm_up` does
        that before the timed work. Inductor fuses the GroupNorm + SiLU pairs and the attention projections.
        """
        options = {"dynamic": False, "backend": backend}
        self.models.unet_prefix = torch.compile(self.components.unet.prefix, **options)
        self.models.unet_suffix = torch.compile(self.components.unet.suffix, **options)
        self.components.controlnet.compile(**options)
        self.components.vae.decoder.compile(**options)
        self.compiled = True

    def warm_up(self, height: int, width: int, config: SamplerConfig) -> None:
        """One step on one window of blank frames and one decoded frame: compiles every graph a run will use."""
        if self.warmed_up(height, width, config):
            return
        blank = np.zeros((config.context_frames, height, width, 3), dtype=np.uint8)
        latents = self.sample(blank[0], blank, replace(config, steps=1), seed=0)
        for _ in self.decode(latents[:, :, :1]):
            pass
        self._warm.add((height, width, config.context_frames))

    def warmed_up(self, height: int, width: int, config: SamplerConfig) -> bool:
        return (height, width, config.context_frames) in self._warm

    def precision(self):
        """fp32 means fp32: cuDNN's TF32 convolutions (on by default) would move an fp32 run by ~1e-3."""
        if self.dtype == torch.float32 and self.device.type == "cuda":
            return torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, allow_tf32=False)
        return contextlib.nullcontext()

    @property
    def max_context_frames(self) -> int:
        return int(self.components.unet.config.motion_max_len)

    # -- conditioning -------------------------------------------------------------------------------

    @torch.no_grad()
    def text_embedding(self) -> torch.Tensor:
        """CLIP embedding of the empty prompt: MagicAnimate's prompt and negative prompt alike."""
        if self._text is None:  # computed once; the encoder then leaves the device for good
            with self.placement.using("text_encoder", keep=False):
                ids = self.components.prompt_tokens.ids().to(self.device)
                self._text = self.components.text_encoder(ids)
        return self._text

    @torch.no_grad()
    def encode_reference(self, reference: np.ndarray) -> torch.Tensor:
        """VAE mean of the reference image × 0.18215 (the mean, not a sample, as the official pipeline)."""
        image = torch.from_numpy(np.array(reference, copy=True)).to(self.device).permute(2, 0, 1)[None]
        image = (image.to(torch.float32) / 127.5 - 1.0).to(self.dtype)
        with self.placement.using("vae", keep=not self.low_vram):
            latent = self.components.vae.encode(image).latent_dist.mean
        return latent.float() * VAE_SCALE

    @torch.no_grad()
    def denoise(self, cond: Conditioning, latents: torch.Tensor, plan: WindowPlan, config: SamplerConfig,
                start_step: int = 0, scheduler=None, **loop) -> torch.Tensor:
        """The sampler's loop (`sampler.denoise`, `loop` its keyword options) with the networks placed for it.

        Every step's reference features are computed first, then the appearance encoder leaves the device (its
        1.7 GB in fp16 outweigh 25 steps of features, ≈0.35 GB at 512²); the loop holds the UNet, the ControlNet
        and, unless low_vram, the VAE. `scheduler`: one continued from a checkpoint; otherwise a fresh one.
        """
        if scheduler is None:
            scheduler = start_scheduler(config, self.device)
        with self.placement.using("appearance_encoder", keep=False):
            banks = reference_features(self.models, cond, scheduler.timesteps[start_step:])
        self.placement.hold("unet", "controlnet", *(() if self.low_vram else ("vae",)))
        return denoise(self.models, cond, latents, plan, config, start_step=start_step, banks=banks,
                       scheduler=scheduler, **loop)

    # -- sampling -----------------------------------------------------------------------------------

    def prepare(self, reference: np.ndarray, motion: np.ndarray, config: SamplerConfig) -> Conditioning:
        _check_inputs(reference, motion)
        validate_context(config.context_frames, config.context_overlap, self.max_context_frames)
        return Conditioning(self.text_embedding(), self.encode_reference(reference),
                            pad_motion(np.asarray(motion), config.context_frames))

    @torch.no_grad()
    def sample(self, reference: np.ndarray, motion: np.ndarray, config: SamplerConfig, seed: int,
               callback: Callable[[int, torch.Tensor], None] | None = None,
               on_window: Callable[[], None] | None = None, noise: str = "shared",
               stats: list[StepStats] | None = None) -> torch.Tensor:
        """Final latents (1, 4, N, h, w), trimmed to the motion's length."""
        with self.precision():
            return self._sample(reference, motion, config, seed, callback, on_window, noise, stats)

    def _sample(self, reference, motion, config, seed, callback, on_window, noise, stats) -> torch.Tensor:
        cond = self.prepare(reference, motion, config)
        frames = len(cond.control)
        height, width = reference.shape[:2]
        generator = run_generator(seed)
        latents = initial_noise(seed, frames, height, width, config.context_frames, noise, generator)
        latents = self.denoise(cond, latents.to(self.device), config.window_plan(frames), config,
                               callback=callback, on_window=on_window, stats=stats, generator=generator,
                               noise=noise)
        return latents[:, :, : len(motion)]

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, batch_size: int = 8) -> Iterator[np.ndarray]:
        """Frames as float32 (H, W, 3) in [0, 1], decoded a batch at a time so memory stays flat."""
        vae = self.components.vae
        frames = latents.shape[2]
        batch_size = 1 if self.low_vram else batch_size
        self.placement.hold("vae")
        for start in range(0, frames, batch_size):
            chunk = latents[0, :, start:start + batch_size].permute(1, 0, 2, 3)
            with self.precision():
                images = vae.decode((chunk / VAE_SCALE).to(self.dtype), return_dict=False)[0]
            images = (images.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
            yield from images

    def __call__(self, reference: np.ndarray, motion: np.ndarray, steps: int = 25, guidance_scale: float = 7.5,
                 seed: int = 1, context_frames: int = 16, context_overlap: int = 4,
                 callback: Callable[[int, torch.Tensor], None] | None = None,
                 scheduler: str = "ddim") -> AnimationResult:
        """`scheduler`: ddim (official) | dpm++2m | dpm++2m-karras | unipc | euler | euler-a."""
        config = SamplerConfig(steps=steps, guidance_scale=guidance_scale, context_frames=context_frames,
                               context_overlap=context_overlap, scheduler=scheduler)
        scheduler_class_name(scheduler)  # an unknown name is a ValueError before any work
        if steps < 1:
            raise ValueError(f"steps must be at least 1 (got {steps})")
        stats: list[StepStats] = []
        t0 = time.perf_counter()
        latents = self.sample(reference, motion, config, seed, callback=callback, stats=stats)
        t1 = time.perf_counter()
        frames = np.stack(list(self.decode(latents)))
        t2 = time.perf_counter()
        return AnimationResult(frames, latents, seed, {"sample_s": t1 - t0, "decode_s": t2 - t1}, stats)


def _check_inputs(reference: np.ndarray, motion: np.ndarray) -> None:
    """The API takes pixels as they are: same size, multiples of 8, uint8 RGB; nothing is resized here."""
    if reference.ndim != 3 or reference.shape[2] != 3 or reference.dtype != np.uint8:
        raise ValueError(f"reference must be uint8 (H, W, 3), got {reference.dtype} {reference.shape}")
    motion = np.asarray(motion) if not hasattr(motion, "shape") else motion
    if motion.ndim != 4 or motion.shape[3] != 3 or motion.dtype != np.uint8:
        raise ValueError(f"motion must be uint8 (N, H, W, 3), got {motion.dtype} {motion.shape}")
    if len(motion) == 0:
        raise ValueError("motion has no frames")
    if motion.shape[1:3] != reference.shape[:2]:
        raise ValueError(f"reference is {reference.shape[:2]} but motion frames are {motion.shape[1:3]}")
    h, w = reference.shape[:2]
    if h % 8 or w % 8:
        raise ValueError(f"height and width must be multiples of 8, got {h}×{w}")
