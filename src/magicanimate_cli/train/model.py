"""The trainable MagicAnimate: the engine's own networks and reference attention, arranged for a training step.

One implementation of the model serves inference and training: the UNet is the engine's `TemporalUNet`, the
appearance encoder its `build_appearance_encoder`, the ControlNet diffusers' `ControlNetModel`, and the
reference features travel through the engine's attention processors (`attach_writer` on the encoder,
`SampleReferenceReadProcessor` on the UNet: the per-sample, dropout-capable twin of inference's reader).

Stage 1 leaves the temporal layers out: the UNet's motion modules are replaced by identities, which makes the
TemporalUNet on one frame exactly SD 1.5's image UNet (its GroupNorms over one frame are per-image). Stage 2 keeps
them and trains only them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..engine.loader import (DIFFUSERS_WEIGHTS, TRANSFORMERS_WEIGHTS, WeightsLayout, compare_shapes, entry_shapes,
                             fill, find_weights_file, model_shapes, on_meta, read_checkpoint, read_json,
                             read_state_dict, temporal_keys)
from ..engine.models.appearance_encoder import build_appearance_encoder
from ..engine.models.layers import fold_frames, unfold_frames
from ..engine.models.reference_attention import (SampleReferenceBank, attach_sample_reader, attach_writer,
                                                 reference_blocks)
from ..engine.models.unet3d import TemporalUNet, TemporalUNetConfig
from ..runtime.errors import SettingsError, WeightsError

APPEARANCE_DIR = "appearance_encoder"
CONTROLNET_DIR = "densepose_controlnet"
TEMPORAL_FILE = "temporal_attention/temporal_attention.ckpt"
VAE_SCALE = 0.18215
MOTION = ".motion_modules."


class TrainingModel(nn.Module):
    """UNet, appearance encoder and ControlNet in one module (one `accelerator.prepare` sees every trainable part).

    `forward` is one noise prediction of a batch of clips, as the sampler makes it for the conditional copy: the
    appearance encoder reads the clean reference latents at the same timestep, the ControlNet sees every frame's
    pose, the UNet reads the reference features in its mid and up self-attention.
    """

    def __init__(self, unet: nn.Module, appearance_encoder: nn.Module, controlnet: nn.Module) -> None:
        super().__init__()
        self.unet, self.appearance_encoder, self.controlnet = unet, appearance_encoder, controlnet
        self.bank = SampleReferenceBank(len(reference_blocks(unet)))
        attach_writer(appearance_encoder, self.bank)
        attach_sample_reader(unet, self.bank)
        self.bank_kept = False  # keep_bank_for_backward

    def keep_bank_for_backward(self, keep: bool) -> None:
        """With gradient checkpointing the backward pass re-runs the UNet's reading attention, which needs the
        reference features: `forward` then leaves the bank filled (the next forward, or the optimizer step,
        clears it) instead of clearing it as it returns."""
        self.bank_kept = keep

    def attach(self) -> None:
        """(Re)install the training processors: after validation, the engine's Animator installs its own."""
        attach_writer(self.appearance_encoder, self.bank)
        attach_sample_reader(self.unet, self.bank)

    def forward(self, noisy: torch.Tensor, t: torch.Tensor, text: torch.Tensor, reference_latents: torch.Tensor,
                pose: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """noisy (b, 4, f, h, w), t (b,), text (b, 77, c), reference_latents (b, 4, h, w), pose (b, f, 3, H, W) in
        [0, 1], keep (b,) bool (False: the sample's reference is dropped) -> predicted noise (b, 4, f, h, w)."""
        b, _, frames = noisy.shape[:3]
        self.bank.clear()
        self.bank.keep = keep
        with _grad_if_training(self.appearance_encoder):
            self.appearance_encoder(reference_latents, t, encoder_hidden_states=text, return_dict=False)
        if not self.bank.complete:
            raise RuntimeError("the appearance encoder did not fill every reference slot")
        with _grad_if_training(self.controlnet):
            down, mid = self.controlnet(fold_frames(noisy), t.repeat_interleave(frames),
                                        encoder_hidden_states=text.repeat_interleave(frames, dim=0),
                                        controlnet_cond=pose.reshape(b * frames, *pose.shape[2:]),
                                        conditioning_scale=1.0, return_dict=False)
        down = [unfold_frames(d, frames) for d in down]
        try:
            return self.unet(noisy, t, text, down, unfold_frames(mid, frames))
        finally:
            if not self.bank_kept:
                self.bank.clear()
                self.bank.keep = None


def _grad_if_training(module: nn.Module):
    """A frozen network (stage 2's encoder and ControlNet) runs without autograd: nothing upstream of it trains,
    so keeping its activations would only cost memory (a K-frame ControlNet pass at 512² is several GB)."""
    return torch.set_grad_enabled(torch.is_grad_enabled() and any(p.requires_grad for p in module.parameters()))


def bypass_motion_modules(unet: TemporalUNet) -> TemporalUNet:
    """Leave the temporal layers out (stage 1): every motion module becomes an identity, so the UNet is SD 1.5's
    image UNet run frame by frame. Module composition, as `build_appearance_encoder` does; the engine's own UNet
    (inference) is never touched."""
    for block in [*unet.down_blocks, *unet.up_blocks]:
        block.motion_modules = nn.ModuleList(nn.Identity() for _ in block.motion_modules)
    return unet


def trainable_names(model: TrainingModel, stage: int) -> list[str]:
    """Parameter names that train: stage 1 the appearance encoder and ControlNet, stage 2 the motion modules."""
    names = []
    for name, _ in model.named_parameters():
        if stage == 1 and name.startswith(("appearance_encoder.", "controlnet.")):
            names.append(name)
        elif stage == 2 and name.startswith("unet.") and MOTION in name:
            names.append(name)
    return names


def set_trainable(model: TrainingModel, stage: int) -> list[nn.Parameter]:
    """Freeze everything but the stage's parts; their parameters, in a fixed order (the optimizer's)."""
    names = set(trainable_names(model, stage))
    params = []
    for name, param in model.named_parameters():
        param.requires_grad_(name in names)
        if name in names:
            params.append(param)
    model.train()
    return params


# ---------------------------------------------------------------------------------------------- building


@dataclass
class TrainingParts:
    """What a run trains and what it keeps fixed, with what the export needs to write the released layout."""

    model: TrainingModel
    vae: nn.Module
    text: torch.Tensor  # (1, 77, c): the empty prompt, MagicAnimate's only prompt
    appearance_config: dict
    controlnet_config: dict
    motion_state: dict[str, torch.Tensor] | None  # stage 1: the temporal start, exported unchanged
    sources: list[Path] = field(default_factory=list)  # files the starting weights came from
    text_encoder: nn.Module | None = None  # kept for validation through the engine's Animator
    prompt_tokens: Any = None


def from_folder_parts(folder: Path, stage: int, motion_module: Path | None) -> dict[str, Path]:
    """The parts of a --from folder this stage reads; a missing one is an error naming it. Without
    --motion-module the folder's temporal file is the temporal start: stage 2 trains it, stage 1 carries it to
    its export unchanged (so the export animates), and may go without when the folder has none."""
    needed = {"appearance_encoder": folder / APPEARANCE_DIR, "densepose_controlnet": folder / CONTROLNET_DIR}
    if not folder.is_dir():
        raise SettingsError(f"{folder}: --from folder not found")
    if motion_module is None and (stage == 2 or (folder / TEMPORAL_FILE).is_file()):
        needed["temporal_attention"] = folder / TEMPORAL_FILE
    for part, path in needed.items():
        ok = path.is_file() if part == "temporal_attention" else (path / "config.json").is_file()
        if not ok:
            raise SettingsError(f"{folder}: --from folder has no {part} ({path} missing); expected the MagicAnimate/ "
                                f"layout: {APPEARANCE_DIR}/, {CONTROLNET_DIR}/, {TEMPORAL_FILE}")
    return needed


def load_parts(stage: int, weights: Path, start_from: Path | None = None, motion_module: Path | None = None,
               device: torch.device | str = "cpu", seed: int = 0) -> TrainingParts:
    """Build the run's networks from the weights folder (SD 1.5, the VAE) and the starting points. `seed` fixes
    the one random initialisation (a fresh ControlNet's conditioning embedding)."""
    layout = WeightsLayout(Path(weights))
    if not layout.root.is_dir():
        raise WeightsError(f"{layout.root}: weights directory not found; run `magicanimate download-weights`")
    parts = from_folder_parts(start_from, stage, motion_module) if start_from is not None else {}
    sources: list[Path] = []
    sd_config = read_json(layout.unet / "config.json")
    sd_file = find_weights_file(layout.unet, DIFFUSERS_WEIGHTS)
    sd_state = read_state_dict(sd_file)
    sources.append(sd_file)

    temporal = motion_module or parts.get("temporal_attention")
    if temporal is None and stage == 2:  # settings.validate refuses this first; kept for API callers
        raise SettingsError("--stage 2 needs a temporal start: --motion-module FILE or --from DIR")
    motion_entries = read_checkpoint(Path(temporal)) if temporal is not None else None
    if temporal is not None:
        sources.append(Path(temporal))
    unet, motion_state = build_unet(sd_config, sd_state, sd_file, motion_entries, temporal, with_motion=stage == 2)

    if start_from is None:
        appearance, appearance_config = fresh_appearance_encoder(sd_config, sd_state, sd_file)
        controlnet = fresh_controlnet(sd_config, sd_state, sd_file, seed)
        controlnet_config = {"_class_name": "ControlNetModel",
                             **{k: v for k, v in dict(controlnet.config).items() if not k.startswith("_")}}
    else:
        appearance, appearance_config, a_file = load_diffusers_part(parts["appearance_encoder"], build_appearance_encoder)
        controlnet, controlnet_config, c_file = load_diffusers_part(parts["densepose_controlnet"], _controlnet)
        sources += [a_file, c_file]
    vae, _, vae_file = load_diffusers_part(layout.vae, _vae)
    sources.append(vae_file)
    text_encoder, tokens = text_encoder_and_tokens(layout)
    with torch.no_grad():
        text = text_encoder(tokens.ids()).float()

    model = TrainingModel(unet, appearance, controlnet)
    nn.Module.to(model, device=device, dtype=torch.float32)
    vae = nn.Module.to(vae, device=device, dtype=torch.float32).eval().requires_grad_(False)
    text_encoder = nn.Module.to(text_encoder, device=device).requires_grad_(False)
    return TrainingParts(model, vae, text.to(device), _json_config(appearance_config), _json_config(controlnet_config),
                         None if stage == 2 else motion_state, sources, text_encoder, tokens)


def build_unet(sd_config: dict, sd_state: dict[str, torch.Tensor], sd_file: Path,
               motion_entries: dict[str, Any] | None, motion_file: Path | None, with_motion: bool
               ) -> tuple[TemporalUNet, dict[str, torch.Tensor] | None]:
    """The TemporalUNet with SD 1.5's spatial weights and the temporal start's motion modules (or none)."""
    config = dict(sd_config)
    if motion_entries is not None:
        pe = [v.shape for k, v in motion_entries.items() if k.endswith("pos_encoder.pe") and hasattr(v, "shape")]
        if pe:
            config["motion_max_len"] = int(pe[0][1])
    cfg = TemporalUNetConfig.from_dict(config)
    unet = on_meta(lambda: TemporalUNet(cfg))
    motion_state = None
    if motion_entries is not None:
        motion_state = motion_weights(motion_entries, model_shapes(unet), Path(motion_file))
    if not with_motion:
        bypass_motion_modules(unet)
        return fill(unet, sd_state, sd_file), motion_state
    # the trained tensors get storage of their own: a checkpoint may be memory-mapped
    trained = {k: v.clone() for k, v in motion_state.items()}
    return fill(unet, {**sd_state, **trained}, Path(motion_file)), motion_state


def motion_weights(entries: dict[str, Any], expected: dict[str, tuple[int, ...]], source: Path
                   ) -> dict[str, torch.Tensor]:
    """The motion-module tensors of a temporal checkpoint under the UNet's key names.

    Reads MagicAnimate's temporal_attention.ckpt and AnimateDiff's motion modules (mm_sd_v15.ckpt: the same names,
    possibly behind `module.`/`unet.` prefixes) by the official loader's rule (`engine.loader.temporal_keys`).
    """
    keys = temporal_keys(entry_shapes(entries), expected, source)
    motion = {name: entries[key] for name, key in keys.items() if MOTION in name}
    compare_shapes({k: v for k, v in expected.items() if MOTION in k}, {k: tuple(v.shape) for k, v in motion.items()},
                   source)
    return motion


def fresh_appearance_encoder(sd_config: dict, sd_state: dict[str, torch.Tensor], sd_file: Path
                             ) -> tuple[nn.Module, dict]:
    """The paper's start: the appearance encoder is a copy of SD 1.5's UNet (the released encoder's layout)."""
    model = on_meta(lambda: build_appearance_encoder(sd_config))
    keys = model.state_dict().keys()
    fill(model, {k: v.clone() for k, v in sd_state.items() if k in keys}, sd_file)
    return model, {**sd_config, "_class_name": "AppearanceEncoderModel"}


def fresh_controlnet(sd_config: dict, sd_state: dict[str, torch.Tensor], sd_file: Path, seed: int = 0) -> nn.Module:
    """The paper's (ControlNet's) start: the UNet's encoder with zeroed output convolutions (`from_unet`).

    The pose encoder (`controlnet_cond_embedding`) starts random, from `seed` (torch's global generator is left
    as it was): a run is a function of its settings, so an interrupted run's restart and its resume agree.
    """
    from diffusers import ControlNetModel, UNet2DConditionModel

    from ..engine.models.appearance_encoder import unet_config_kwargs

    unet2d = on_meta(lambda: UNet2DConditionModel(**unet_config_kwargs(sd_config)))
    fill(unet2d, sd_state, sd_file)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ControlNetModel.from_unet(unet2d)


def load_diffusers_part(folder: Path, factory) -> tuple[nn.Module, dict, Path]:
    """A diffusers-layout folder (config.json + weights) into the engine's model, strictly."""
    config = read_json(folder / "config.json")
    model = on_meta(lambda: factory(config))
    path = find_weights_file(folder, DIFFUSERS_WEIGHTS)
    return fill(model, read_state_dict(path), path), config, path


def _controlnet(config: dict) -> nn.Module:
    from diffusers import ControlNetModel

    return ControlNetModel.from_config(config)


def _vae(config: dict) -> nn.Module:
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_config(config)


def text_encoder_and_tokens(layout: WeightsLayout) -> tuple[nn.Module, Any]:
    """The frozen CLIP text encoder and the empty prompt's tokens ("" is MagicAnimate's prompt and negative
    prompt, so its embedding is computed once)."""
    from ..engine.models.clip_text import CLIPTextConfig, CLIPTextEncoder, EmptyPromptTokens

    cfg_path = layout.text_encoder / "config.json"
    read_json(cfg_path)
    encoder = on_meta(lambda: CLIPTextEncoder(CLIPTextConfig.from_json(cfg_path)))
    path = find_weights_file(layout.text_encoder, TRANSFORMERS_WEIGHTS)
    fill(encoder, read_state_dict(path), path, optional=CLIPTextEncoder.optional_keys)
    tokens = EmptyPromptTokens.from_tokenizer_dir(layout.tokenizer)
    return nn.Module.to(encoder, dtype=torch.float32).eval(), tokens


@torch.no_grad()
def encode_latents(vae: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """(n, 3, H, W) in [-1, 1] -> (n, 4, H/8, W/8): the VAE mean × 0.18215 (the mean, as the engine's reference)."""
    return vae.encode(pixels.to(vae.dtype)).latent_dist.mean.float() * VAE_SCALE


def _json_config(config: dict) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(config).items()}
