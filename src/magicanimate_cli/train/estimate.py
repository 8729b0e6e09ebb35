"""`train --dry-run`: parameter counts, FLOPs per step and peak GPU memory per process, with no weights loaded.

Everything is counted on the real training model built on the meta device (as `engine/cost.py` counts the
sampler), so the figures follow the code rather than a formula: parameter counts from the modules a run builds,
FLOPs from torch's `FlopCounterMode` over one forward and backward, and activations from the tensors autograd
keeps for the backward pass (`saved_tensors_hooks`), each storage counted once.

What the memory estimate assumes (it is an estimate, not a measurement):
- attention runs as a fused SDPA kernel on the GPU, which keeps no attention matrix (the meta device's math
  attention does; its softmax outputs are left out);
- with gradient checkpointing the segments are `train --gradient-checkpointing`'s (`checkpoint_units`): only
  their inputs stay, and one segment's activations are rebuilt at a time in the backward pass;
- mixed precision runs the networks in 16-bit (activations 2 bytes), keeps trainable weights, their gradients and
  the optimizer's states in fp32, casts frozen networks, and keeps a 16-bit copy of each trainable weight;
- AdamW holds two fp32 states per trained weight; 8-bit Adam (bitsandbytes) one byte per state for tensors of at
  least 4096 elements and fp32 states for smaller ones;
- the peak is the sum of weights, gradients, optimizer states and activations, plus the working memory of the
  backward pass (twice the largest kept activation); the VAE's encoding runs before the forward pass, so it counts
  only when its own working memory is larger.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..engine.loader import WeightsLayout, on_meta, read_json
from ..engine.models import sd15
from .lora_targets import adapter_parameters, lora_targets
from .settings import StepSettings
from .model import APPEARANCE_DIR, CONTROLNET_DIR, MOTION, TrainingModel, bypass_motion_modules, set_trainable

GiB = 2**30
SOFTMAX = frozenset({"SoftmaxBackward0", "SafeSoftmaxBackward0"})
PRECISIONS = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
OPTIMIZER_BYTES = {"adamw": 8, "adamw8bit": 2}
SMALL_8BIT = 4096
"""bitsandbytes keeps fp32 states for tensors smaller than this (its `min_8bit_size`)."""


@dataclass(frozen=True)
class ModelConfigs:
    """The configs the run's networks are built from; None: the paper's fresh stage-1 start (a copy of the UNet,
    a ControlNet made from it)."""

    unet: dict = field(default_factory=lambda: dict(sd15.UNET))
    vae: dict = field(default_factory=lambda: dict(sd15.VAE))
    text_encoder: dict = field(default_factory=lambda: dict(sd15.TEXT_ENCODER))
    appearance_encoder: dict | None = None
    controlnet: dict | None = None

    @classmethod
    def from_folders(cls, weights: Path, start_from: Path | None = None) -> "ModelConfigs":
        """The configs a run on these folders builds from (config.json files only; no weights are read). Without
        SD 1.5 in the weights folder: its released sizes."""
        layout = WeightsLayout(Path(weights))
        configs = cls()
        if (layout.unet / "config.json").is_file():
            configs = cls(unet=read_json(layout.unet / "config.json"), vae=read_json(layout.vae / "config.json"),
                          text_encoder=read_json(layout.text_encoder / "config.json"))
        if start_from is not None:
            configs = replace(configs, appearance_encoder=read_json(Path(start_from) / APPEARANCE_DIR / "config.json"),
                              controlnet=read_json(Path(start_from) / CONTROLNET_DIR / "config.json"))
        return configs


@dataclass(frozen=True)
class ModuleCount:
    name: str
    trainable: int
    frozen: int


@dataclass(frozen=True)
class Estimate:
    modules: tuple[ModuleCount, ...]
    flops_per_step: float  # one optimizer step: every micro-batch's forward, backward (and recompute), VAE encodes
    memory: dict[str, int]  # bytes: weights, gradients, optimizer, activations, working, peak
    activations_plain: int  # bytes kept for the backward pass without checkpointing
    activations_checkpointed: int  # and with it

    @property
    def trainable(self) -> int:
        return sum(m.trainable for m in self.modules)

    @property
    def frozen(self) -> int:
        return sum(m.frozen for m in self.modules)

    def record(self) -> dict:
        out = asdict(self)
        out["trainable"], out["frozen"] = self.trainable, self.frozen
        out["memory_gib"] = {k: round(v / GiB, 2) for k, v in self.memory.items()}
        return out


# ---------------------------------------------------------------------------------------------- models


@dataclass
class MetaParts:
    model: TrainingModel
    vae: nn.Module
    text_encoder: nn.Module


def meta_parts(stage: int, configs: ModelConfigs, dtype: torch.dtype = torch.float32) -> MetaParts:
    """The run's networks on the meta device, built as `model.load_parts` builds them (stage 1 without motion
    modules), in `dtype`."""
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel

    from ..engine.models.appearance_encoder import build_appearance_encoder, unet_config_kwargs
    from ..engine.models.clip_text import CLIPTextConfig, CLIPTextEncoder
    from ..engine.models.unet3d import TemporalUNet, TemporalUNetConfig

    def build() -> MetaParts:
        unet = TemporalUNet(TemporalUNetConfig.from_dict(configs.unet))
        if stage == 1:
            bypass_motion_modules(unet)
        appearance = build_appearance_encoder(configs.appearance_encoder or configs.unet)
        if configs.controlnet is None:
            controlnet = ControlNetModel.from_unet(UNet2DConditionModel(**unet_config_kwargs(configs.unet)))
        else:
            controlnet = ControlNetModel.from_config(configs.controlnet)
        model = TrainingModel(unet, appearance, controlnet)
        vae = AutoencoderKL.from_config(configs.vae)
        text = CLIPTextEncoder(CLIPTextConfig.from_dict(configs.text_encoder))
        return MetaParts(*(nn.Module.to(m, dtype=dtype) for m in (model, vae, text)))

    parts = on_meta(build)
    parts.vae.requires_grad_(False).eval()
    parts.text_encoder.requires_grad_(False).eval()
    return parts


def mark_trainable(model: TrainingModel, stage: int, lora: int) -> dict[str, int]:
    """Set requires_grad as the run will; returns the adapter sizes with --lora (the adapted layers' weights are
    marked trainable here only so that the graph keeps what an adapter's backward keeps: their inputs)."""
    if not lora:
        set_trainable(model, stage)
        return {}
    model.requires_grad_(False)
    targets = set(lora_targets(model, stage))
    for name, module in model.named_modules():
        if name in targets:
            module.weight.requires_grad_(True)
    model.train()
    return adapter_parameters(model, stage, lora)


def module_counts(parts: MetaParts, stage: int, adapters: dict[str, int]) -> tuple[ModuleCount, ...]:
    """Trainable and frozen parameters per network (with --lora the adapters train and every base weight is
    frozen)."""
    groups: dict[str, list[int]] = {g: [0, 0] for g in ("appearance encoder", "ControlNet", "UNet (spatial)",
                                                         "motion modules", "VAE", "text encoder")}
    for name, param in parts.model.named_parameters():
        group = _group(name)
        trains = param.requires_grad and not adapters
        groups[group][0 if trains else 1] += param.numel()
    for name, count in adapters.items():
        groups[_group(name)][0] += count
    groups["VAE"][1] = sum(p.numel() for p in parts.vae.parameters())
    groups["text encoder"][1] = sum(p.numel() for p in parts.text_encoder.parameters())
    return tuple(ModuleCount(g, t, f) for g, (t, f) in groups.items() if t or f)


def _group(name: str) -> str:
    if name.startswith("appearance_encoder."):
        return "appearance encoder"
    if name.startswith("controlnet."):
        return "ControlNet"
    return "motion modules" if MOTION in name else "UNet (spatial)"


# ---------------------------------------------------------------------------------------------- counting


def _storage(t: torch.Tensor) -> int:
    return t.untyped_storage()._cdata


@dataclass
class _Saved:
    """Bytes autograd keeps, per checkpoint unit (None: outside every unit), each storage once."""

    params: set[int]
    skip: set[int] = field(default_factory=set)  # attention probabilities (see `pack`)
    owner: dict[int, tuple[int | None, int]] = field(default_factory=dict)
    unit_inputs: dict[int, tuple[int, torch.Tensor]] = field(default_factory=dict)  # held: keys stay unique
    stack: list[int] = field(default_factory=list)

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        key = _storage(t)
        if type(t.grad_fn).__name__ in SOFTMAX:  # the meta device computes attention as math; a fused GPU kernel
            self.skip.add(key)  # keeps no probabilities (their views, saved by the next matmul, share the storage)
        if key not in self.params and key not in self.owner:
            self.owner[key] = (self.stack[0] if self.stack else None, t.untyped_storage().nbytes())
        return t

    def units_in_graph(self) -> set[int]:
        return {unit for unit, _ in self.owner.values() if unit is not None}

    def totals(self) -> tuple[int, int, int]:
        """(bytes without checkpointing, bytes with it, the largest kept tensor)."""
        kept = {k: v for k, v in self.owner.items() if k not in self.skip}
        plain = sum(n for _, n in kept.values())
        outside = sum(n for unit, n in kept.values() if unit is None)
        per_unit: dict[int, int] = {}
        for unit, n in kept.values():
            if unit is not None:
                per_unit[unit] = per_unit.get(unit, 0) + n
        # a unit's input stays; counted once, and not again when it is kept outside every unit anyway
        outside_keys = {k for k, (unit, _) in kept.items() if unit is None}
        inputs = sum(n for k, (n, _) in self.unit_inputs.items() if k not in outside_keys)
        largest = max((n for _, n in kept.values()), default=0)
        return plain, outside + inputs + max(per_unit.values(), default=0), largest


def checkpoint_units(model: TrainingModel) -> list[list[nn.Module]]:
    """The segments gradient checkpointing recomputes, each as the modules it runs (the first takes its input):
    in the UNet one per layer of a block (resnet, spatial transformer, motion module) and the mid block's head
    and tail; in the appearance encoder and ControlNet (diffusers' own switch) every resnet and transformer."""
    units: list[list[nn.Module]] = []
    unet = model.unet
    for block in [*unet.down_blocks, *unet.up_blocks]:
        for i, resnet in enumerate(block.resnets):
            layer = [resnet]
            if getattr(block, "attentions", None) is not None:
                layer.append(block.attentions[i])
            motion = getattr(block, "motion_modules", None)
            if motion is not None and not isinstance(motion[i], nn.Identity):
                layer.append(motion[i])
            units.append(layer)
    units += [[unet.mid_block.resnets[0]], [unet.mid_block.attentions[0], unet.mid_block.resnets[1]]]
    for net in (model.appearance_encoder, model.controlnet):
        for block in [*getattr(net, "down_blocks", []), getattr(net, "mid_block", None), *getattr(net, "up_blocks", [])]:
            for kind in ("resnets", "attentions"):
                units.extend([m] for m in getattr(block, kind, None) or [])
    return units


def _track_units(stack: ExitStack, saved: _Saved, units: list[list[nn.Module]]) -> None:
    def enter(index: int, head: bool):
        def hook(module, args):
            if head and torch.is_grad_enabled() and args and isinstance(args[0], torch.Tensor):
                saved.unit_inputs.setdefault(_storage(args[0]), (args[0].untyped_storage().nbytes(), args[0]))
            saved.stack.append(index)
        return hook

    def leave(module, args, output):
        saved.stack.pop()

    for index, members in enumerate(units):
        for position, member in enumerate(members):
            stack.callback(member.register_forward_pre_hook(enter(index, position == 0)).remove)
            stack.callback(member.register_forward_hook(leave).remove)


@dataclass(frozen=True)
class StepCount:
    forward_flops: float
    backward_flops: float
    recompute_flops: float  # the forward of the checkpointed (trained) networks, run again in the backward pass
    vae_flops: float
    activations_plain: int
    activations_checkpointed: int
    largest_activation: int
    vae_working: int


def count_step(parts: MetaParts, batch: int, frames: int, height: int, width: int, dropout: bool = True
               ) -> StepCount:
    """Run one micro-batch's VAE encodes, forward and backward on the meta device, counting as it goes."""
    model = parts.model
    dtype = next(model.parameters()).dtype
    meta = {"device": "meta", "dtype": dtype}
    h, w = height // 8, width // 8
    with FlopCounterMode(display=False) as vae_counter, torch.no_grad(), _largest_output(parts.vae) as largest:
        parts.vae.encode(torch.empty(batch * frames + batch, 3, height, width, **meta))
    vae_working = 3 * largest[0]  # input, output and one intermediate of its largest layer

    saved = _Saved({_storage(p) for p in model.parameters()})
    noisy = torch.empty(batch, 4, frames, h, w, **meta)
    keep = torch.ones(batch, dtype=torch.bool)  # read on the host, as the bank reads it
    keep[0] = not dropout  # a step that drops a reference computes both attentions: the costlier step
    args = (noisy, torch.zeros(batch, dtype=torch.long, device="meta"),
            torch.empty(batch, 77, model.unet.config.cross_attention_dim, **meta),
            torch.empty(batch, 4, h, w, **meta), torch.empty(batch, frames, 3, height, width, **meta), keep)
    units = checkpoint_units(model)
    with ExitStack() as stack:
        _track_units(stack, saved, units)
        with FlopCounterMode(display=False) as forward, torch.autograd.graph.saved_tensors_hooks(saved.pack,
                                                                                             lambda t: t):
            loss = (model(*args).float() ** 2).mean()
    # checkpointing runs again the forward of every unit the backward passes through (those that kept something)
    recompute = _recompute_flops(forward, model, [m for i in saved.units_in_graph() for m in units[i]])
    plain, checkpointed, largest = saved.totals()
    with FlopCounterMode(display=False) as backward:
        loss.backward()
    return StepCount(float(forward.get_total_flops()), float(backward.get_total_flops()), recompute,
                     float(vae_counter.get_total_flops()), plain, checkpointed, largest, vae_working)


@contextmanager
def _largest_output(module: nn.Module):
    """Yields [bytes]: the largest tensor any submodule of `module` returns while the block runs."""
    largest = [0]

    def hook(_, args, output):
        if isinstance(output, torch.Tensor):
            largest[0] = max(largest[0], output.numel() * output.element_size())

    with ExitStack() as stack:
        for sub in module.modules():
            stack.callback(sub.register_forward_hook(hook).remove)
        yield largest


def _recompute_flops(counter: FlopCounterMode, model: TrainingModel, units: list[nn.Module]) -> float:
    """The forward FLOPs of these checkpoint units (what checkpointing runs twice)."""
    names = {id(m): n for n, m in model.named_modules()}
    counts = counter.get_flop_counts()
    total = 0.0
    for unit in units:
        for key, ops in counts.items():
            if key.split(".", 1)[-1] == names[id(unit)]:  # the counter names modules "<root class>.<path>"
                total += sum(ops.values())
    return total


# ---------------------------------------------------------------------------------------------- the estimate


@dataclass(frozen=True)
class Counted:
    """What the meta-device run measured for a shape (stage, batch, frames, size, precision, adapters)."""

    modules: tuple[ModuleCount, ...]
    step: StepCount
    optimizer_sizes: tuple[int, ...]  # element counts of the tensors the optimizer updates


def count(settings: StepSettings, configs: ModelConfigs | None = None) -> Counted:
    """Build the run's networks on the meta device and run one micro-batch (the costly half of `estimate`)."""
    s = settings
    parts = meta_parts(s.stage, configs or ModelConfigs(), PRECISIONS[s.mixed_precision])
    adapters = mark_trainable(parts.model, s.stage, s.lora)
    modules = module_counts(parts, s.stage, adapters)
    if adapters:  # an adapter is two tensors (A and B); the split only matters for 8-bit Adam's small-tensor rule
        sizes = tuple(n // 2 for n in adapters.values() for _ in range(2))
    else:
        sizes = tuple(p.numel() for p in parts.model.parameters() if p.requires_grad)
    step = count_step(parts, s.batch_size, s.clip_frames, s.height, s.width, s.ref_dropout > 0)
    return Counted(modules, step, sizes)


def account(settings: StepSettings, counted: Counted) -> Estimate:
    """Memory and FLOPs from what was counted, for the optimizer, checkpointing, accumulation and caching."""
    s, step = settings, counted.step
    trainable = sum(m.trainable for m in counted.modules)
    frozen = sum(m.frozen for m in counted.modules)
    half = s.mixed_precision != "no"
    weights = 4 * trainable + (2 if half else 4) * frozen + (2 * trainable if half else 0)
    memory = {"weights": weights, "gradients": 4 * trainable,
              "optimizer": _optimizer_bytes(counted.optimizer_sizes, s.optimizer),
              "activations": step.activations_checkpointed if s.gradient_checkpointing else step.activations_plain,
              "working": 2 * step.largest_activation}
    static = memory["weights"] + memory["optimizer"]
    train_peak = static + memory["gradients"] + memory["activations"] + memory["working"]
    encode_peak = static + (memory["gradients"] if s.gradient_accumulation > 1 else 0) + step.vae_working
    memory["peak"] = train_peak if s.cache_latents else max(train_peak, encode_peak)

    per_micro = step.forward_flops + step.backward_flops
    if s.gradient_checkpointing:
        per_micro += step.recompute_flops
    if not s.cache_latents:
        per_micro += step.vae_flops
    return Estimate(counted.modules, per_micro * s.gradient_accumulation, memory, step.activations_plain,
                    step.activations_checkpointed)


def estimate(settings: StepSettings, configs: ModelConfigs | None = None) -> Estimate:
    """Counts, FLOPs per optimizer step and peak memory per process for `settings` (a pure function of its
    arguments: nothing is loaded, nothing is allocated beyond meta tensors)."""
    return account(settings, count(settings, configs))


def _optimizer_bytes(sizes: tuple[int, ...], optimizer: str) -> int:
    per = OPTIMIZER_BYTES[optimizer]
    return sum(n * (8 if optimizer == "adamw8bit" and n < SMALL_8BIT else per) for n in sizes)
