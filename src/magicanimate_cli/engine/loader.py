"""Reading a weights directory in the official MagicAnimate layout into our models.

    <root>/stable-diffusion-v1-5/{unet,text_encoder,tokenizer,scheduler}/
    <root>/sd-vae-ft-mse/
    <root>/MagicAnimate/{appearance_encoder,densepose_controlnet}/
    <root>/MagicAnimate/temporal_attention/temporal_attention.ckpt

`animation_weights` (the command line's `--animation-weights`) names a folder in the `MagicAnimate/` layout
(`appearance_encoder/`, `densepose_controlnet/`, `temporal_attention/temporal_attention.ckpt`) that replaces
`<root>/MagicAnimate/`, e.g. a training run's export; SD 1.5 and the VAE still come from `<root>`, so a fine-tuned
model needs no copy of the base.

Every model is built on the meta device and filled from its file with `assign=True`, so no memory is spent
on random initialisation and memory-mapped tensors are not copied. Nothing is dropped silently: a missing,
unexpected or mis-shaped key is an error naming the file and the first offending keys.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..runtime.errors import WeightsError, missing_weights
from ..runtime.torch_files import load_torch_file

SD_DIR = "stable-diffusion-v1-5"
VAE_DIR = "sd-vae-ft-mse"
MA_DIR = "MagicAnimate"
TEMPORAL_CKPT = f"{MA_DIR}/temporal_attention/temporal_attention.ckpt"
MOTION_MODULE = "animatediff/mm_sd_v15.ckpt"
"""AnimateDiff's motion module, where `download-weights --motion-module` puts it: the temporal layers MagicAnimate
started its second training stage from (not read by the engine; `train --stage 2` can start from it)."""

DIFFUSERS_WEIGHTS = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.fp16.safetensors",
    "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.fp16.bin",
)
TRANSFORMERS_WEIGHTS = ("model.safetensors", "model.fp16.safetensors", "pytorch_model.bin", "pytorch_model.fp16.bin")


ANIMATION_PARTS = ("appearance_encoder", "densepose_controlnet", "temporal_attention/temporal_attention.ckpt")
"""What a folder in the `MagicAnimate/` layout holds (the parts `--animation-weights` must have)."""


@dataclass(frozen=True)
class WeightsLayout:
    """Where each part of the release lives: under one root folder, the MagicAnimate part optionally elsewhere."""

    root: Path
    animation: Path | None = None  # a folder in the MagicAnimate/ layout replacing <root>/MagicAnimate/

    @property
    def animation_root(self) -> Path:
        return self.animation if self.animation is not None else self.root / MA_DIR

    @property
    def unet(self) -> Path:
        return self.root / SD_DIR / "unet"

    @property
    def text_encoder(self) -> Path:
        return self.root / SD_DIR / "text_encoder"

    @property
    def tokenizer(self) -> Path:
        return self.root / SD_DIR / "tokenizer"

    @property
    def scheduler(self) -> Path:
        return self.root / SD_DIR / "scheduler"

    @property
    def vae(self) -> Path:
        return self.root / VAE_DIR

    @property
    def appearance_encoder(self) -> Path:
        return self.animation_root / ANIMATION_PARTS[0]

    @property
    def controlnet(self) -> Path:
        return self.animation_root / ANIMATION_PARTS[1]

    @property
    def temporal_checkpoint(self) -> Path:
        return self.animation_root / ANIMATION_PARTS[2]

    @property
    def motion_module(self) -> Path:
        return self.root / MOTION_MODULE

    def check_animation_folder(self) -> None:
        """An `--animation-weights` folder must exist and hold every part; the error names the folder and the
        part (the missing-file error of the root's own parts suggests download-weights, which cannot help here)."""
        if self.animation is None:
            return
        if not self.animation.is_dir():
            raise WeightsError(f"{self.animation}: --animation-weights folder not found")
        for part in ANIMATION_PARTS:
            if not (self.animation / part).exists():
                raise WeightsError(f"{self.animation}: --animation-weights folder lacks {part} (a folder in the "
                                   f"MagicAnimate/ layout holds {', '.join(ANIMATION_PARTS)})")


def weights_layout(root: Path | str, animation_weights: Path | str | None = None) -> WeightsLayout:
    """The layout of `root`, with the MagicAnimate part from `animation_weights` when it is given."""
    animation = Path(animation_weights).expanduser() if animation_weights is not None else None
    return WeightsLayout(Path(root).expanduser(), animation)


# ---------------------------------------------------------------------------------------------- files


def find_weights_file(folder: Path, names: Iterable[str]) -> Path:
    """The first of `names` present in `folder` (safetensors before pickles, full precision before fp16)."""
    names = list(names)
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise missing_weights(folder / names[0])


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise missing_weights(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable JSON file ({exc})") from None


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The entries of a `.safetensors` or pickled checkpoint, memory-mapped where the format allows.

    A training checkpoint's `{"state_dict": ...}` wrapper is unwrapped, as the official loader does; the values
    are returned as they are (a checkpoint may carry bookkeeping such as `global_step` beside its tensors).
    """
    if not path.is_file():
        raise missing_weights(path)
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        except Exception as exc:
            problem = "the file is empty (0 bytes)" if path.stat().st_size == 0 else _first_line(exc)
            raise WeightsError(f"{path}: cannot read the weights: {problem}; the file may be truncated or "
                               "corrupt, fetch it again") from None
    state = load_torch_file(path)
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise WeightsError(f"{path}: not a state dict of tensors (it holds a {type(state).__name__})")
    return dict(state)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a weights file, which must hold nothing else (diffusers and transformers files)."""
    state = read_checkpoint(path)
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: not a state dict of tensors")
    return state


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a weights file without reading the tensors (safetensors header, or a mapped pickle)."""
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise missing_weights(path)
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                return {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}
        except Exception as exc:
            raise WeightsError(f"{path}: cannot read safetensors header ({_first_line(exc)}); the file may be "
                               "truncated") from None
    return {k: tuple(v.shape) for k, v in read_state_dict(path).items()}


def checkpoint_shapes(path: Path) -> dict[str, tuple[int, ...] | None]:
    """Key -> shape of every entry of a checkpoint (None for non-tensors), without copying its tensors."""
    if path.suffix == ".safetensors":
        return dict(read_shapes(path))
    return entry_shapes(read_checkpoint(path))


# ---------------------------------------------------------------------------------------------- checks


def _first(keys: Iterable[str], limit: int = 3) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def compare_shapes(expected: Mapping[str, tuple], found: Mapping[str, tuple], source: Path,
                   optional: Iterable[str] = ()) -> None:
    """Raise a WeightsError naming `source` unless `found` has exactly the expected keys and shapes."""
    optional = set(optional)
    missing = set(expected) - set(found)
    unexpected = set(found) - set(expected) - optional
    if missing:
        raise WeightsError(f"{source}: {len(missing)} missing keys: {_first(missing)}")
    if unexpected:
        raise WeightsError(f"{source}: {len(unexpected)} unexpected keys: {_first(unexpected)}")
    wrong = [k for k in expected if tuple(found[k]) != tuple(expected[k])]
    if wrong:
        k = wrong[0]
        raise WeightsError(
            f"{source}: {len(wrong)} keys with the wrong shape: {k} is {list(found[k])}, expected {list(expected[k])}"
        )


def model_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def fill(model: nn.Module, state: Mapping[str, torch.Tensor], source: Path, optional: Iterable[str] = ()) -> nn.Module:
    """Strictly load `state` into a meta-device `model`, keeping the given tensors (no copy)."""
    compare_shapes(model_shapes(model), {k: tuple(v.shape) for k, v in state.items()}, source, optional)
    expected = model.state_dict().keys()
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=True, assign=True)
    return model


def on_meta(factory: Callable[[], nn.Module]) -> nn.Module:
    with torch.device("meta"):
        return factory()


# ---------------------------------------------------------------------------------------------- models


@dataclass
class Components:
    """Every network MagicAnimate needs, ready to run."""

    unet: nn.Module
    appearance_encoder: nn.Module
    controlnet: nn.Module
    vae: nn.Module
    text_encoder: nn.Module
    prompt_tokens: "EmptyPromptTokens"  # noqa: F821 - defined in models.clip_text


def _unet_config(layout: WeightsLayout, checkpoint_shapes: Mapping[str, tuple | None] | None = None):
    from .models.unet3d import TemporalUNetConfig

    cfg = read_json(layout.unet / "config.json")
    if checkpoint_shapes:  # the checkpoint's position table fixes the longest window
        pe = [s for k, s in checkpoint_shapes.items() if k.endswith("pos_encoder.pe") and s is not None]
        if pe:
            cfg = {**cfg, "motion_max_len": int(pe[0][1])}
    return TemporalUNetConfig.from_dict(cfg)


def entry_shapes(entries: Mapping[str, Any]) -> dict[str, tuple[int, ...] | None]:
    """Key -> tensor shape, None for an entry that is not a tensor (training bookkeeping)."""
    return {k: tuple(v.shape) if isinstance(v, torch.Tensor) else None for k, v in entries.items()}


def temporal_keys(found: Mapping[str, tuple[int, ...] | None], expected: Mapping[str, tuple[int, ...]],
                  source: Path) -> dict[str, str]:
    """Which entries of `temporal_attention.ckpt` set which UNet keys: UNet key -> the checkpoint's key.

    The official loader's rule (MagicAnimate magicanimate/pipelines/animation.py, and demo/animate.py's
    MagicAnimate.__init__ alike), reproduced exactly:
      1. strip a leading `module.` (keeping what follows its last occurrence) and `load_state_dict(strict=False)`
         everything. If no key is unexpected or mis-shaped, that is all: every entry is applied.
      2. Otherwise the assertion fails, but that load has already copied every entry whose name and shape fit;
         then only the entries whose name contains `motion_modules` are loaded again, a leading `unet.` stripped.
    So a checkpoint whose keys all start with `unet.` contributes its motion modules only (SD 1.5's spatial
    weights stay), and entries that fit nowhere and are not motion modules are ignored. Where the official code
    stops with an AssertionError or a size-mismatch RuntimeError (a motion-module entry that fits no UNet key in
    step 2), this raises a one-line WeightsError naming them instead.
    """
    named: dict[str, str] = {}
    for key in found:
        named[key.split("module.")[-1] if key.startswith("module.") else key] = key
    fitting = {name: key for name, key in named.items() if name in expected and found[key] == expected[name]}
    if len(fitting) == len(named):
        return fitting
    motion: dict[str, str] = {}
    for name, key in named.items():
        if "motion_modules" in name:
            motion[name.split("unet.")[-1] if name.startswith("unet.") else name] = key
    unknown = [name for name in motion if name not in expected]
    if unknown:
        raise WeightsError(f"{source}: {len(unknown)} motion-module keys match no UNet key, even without a "
                           f"`module.` or `unet.` prefix: {_first(unknown)}")
    wrong = [name for name in motion if found[motion[name]] != expected[name]]
    if wrong:
        name = wrong[0]
        got = found[motion[name]]
        raise WeightsError(f"{source}: {len(wrong)} keys with the wrong shape: {motion[name]} is "
                           f"{list(got) if got is not None else 'not a tensor'}, expected {list(expected[name])}")
    return {**fitting, **motion}


@dataclass(frozen=True)
class TemporalPlan:
    """The UNet built for a temporal checkpoint and what the checkpoint sets in it."""

    config: Any
    expected: dict[str, tuple[int, ...]]
    keys: dict[str, str]  # UNet key -> checkpoint key

    @property
    def covers_unet(self) -> bool:
        return set(self.expected) <= set(self.keys)

    @property
    def uncovered(self) -> set[str]:
        return set(self.expected) - set(self.keys)


def plan_temporal(layout: WeightsLayout, found: Mapping[str, tuple[int, ...] | None]) -> TemporalPlan:
    """Build the UNet (on meta) for the checkpoint whose entries have shapes `found`, and apply the rule to it."""
    from .models.unet3d import TemporalUNet

    ckpt = layout.temporal_checkpoint
    config = _unet_config(layout, found)
    expected = model_shapes(on_meta(lambda: TemporalUNet(config)))
    keys = temporal_keys(found, expected, ckpt)
    if not keys:
        raise WeightsError(f"{ckpt}: none of its {len(found)} entries is a UNet weight (with or without a "
                           f"`module.`/`unet.` prefix): {_first(found)}; is it MagicAnimate's temporal_attention.ckpt?")
    return TemporalPlan(config, expected, keys)


def _spatial_shapes(plan: TemporalPlan) -> dict[str, tuple[int, ...]]:
    """What SD 1.5's unet file must hold: every UNet key but the motion modules."""
    return {k: v for k, v in plan.expected.items() if ".motion_modules." not in k}


def _temporal_unet(layout: WeightsLayout) -> nn.Module:
    """The UNet: SD 1.5's weights, with what `temporal_attention.ckpt` contributes (see `temporal_keys`) over them.

    The released checkpoint carries the whole temporal UNet without prefixes, so every entry applies; when it
    covers every key the SD 1.5 unet file is not read at all.
    """
    from .models.unet3d import TemporalUNet

    ckpt_path = layout.temporal_checkpoint
    entries = read_checkpoint(ckpt_path)
    plan = plan_temporal(layout, entry_shapes(entries))
    model = on_meta(lambda: TemporalUNet(plan.config))
    state = {name: entries[key] for name, key in plan.keys.items()}
    if plan.uncovered:
        sd_path = find_weights_file(layout.unet, DIFFUSERS_WEIGHTS)
        spatial = read_state_dict(sd_path)
        compare_shapes(_spatial_shapes(plan), {k: tuple(v.shape) for k, v in spatial.items()}, sd_path)
        state = {**spatial, **state}
        still = set(plan.expected) - set(state)
        if still:
            raise WeightsError(f"{ckpt_path}: {len(still)} UNet keys missing (set by no file): {_first(still)}")
    return fill(model, state, ckpt_path)


def _diffusers_model(folder: Path, factory: Callable[[dict], nn.Module]) -> nn.Module:
    config = read_json(folder / "config.json")
    model = on_meta(lambda: factory(config))
    path = find_weights_file(folder, DIFFUSERS_WEIGHTS)
    return fill(model, read_state_dict(path), path)


def _controlnet_factory(config: dict) -> nn.Module:
    from diffusers import ControlNetModel

    return ControlNetModel.from_config(config)


def _vae_factory(config: dict) -> nn.Module:
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_config(config)


def _appearance_factory(config: dict) -> nn.Module:
    from .models.appearance_encoder import build_appearance_encoder

    return build_appearance_encoder(config)


def _text_encoder(layout: WeightsLayout) -> nn.Module:
    from .models.clip_text import CLIPTextConfig, CLIPTextEncoder

    cfg_path = layout.text_encoder / "config.json"
    read_json(cfg_path)
    model = on_meta(lambda: CLIPTextEncoder(CLIPTextConfig.from_json(cfg_path)))
    path = find_weights_file(layout.text_encoder, TRANSFORMERS_WEIGHTS)
    return fill(model, read_state_dict(path), path, optional=CLIPTextEncoder.optional_keys)


def _prompt_tokens(layout: WeightsLayout):
    from .models.clip_text import EmptyPromptTokens

    for name in ("vocab.json",):
        if not (layout.tokenizer / name).is_file():
            raise missing_weights(layout.tokenizer / name)
    try:
        return EmptyPromptTokens.from_tokenizer_dir(layout.tokenizer)
    except (KeyError, ValueError) as exc:
        raise WeightsError(f"{layout.tokenizer}: unusable tokenizer files ({exc})") from None


def _ready(model: nn.Module, source: Path, device: torch.device | str, dtype: torch.dtype) -> nn.Module:
    leftovers = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftovers:
        raise WeightsError(f"{source}: tensors not set by the file: {_first(leftovers)}")
    # nn.Module.to, not diffusers' override: its fp32-module warning does not apply to these models.
    return nn.Module.to(model, device=device, dtype=dtype).eval().requires_grad_(False)


def load_components(root: Path | str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                    animation_weights: Path | str | None = None) -> Components:
    """Build and fill every network from a weights directory in the official layout (its MagicAnimate part from
    `animation_weights` when given)."""
    layout = weights_layout(root, animation_weights)
    if not layout.root.is_dir():
        raise WeightsError(f"{layout.root}: weights directory not found; run `magicanimate download-weights`")
    layout.check_animation_folder()
    # The scheduler folder is not read: the sampler uses DDIM exactly as MagicAnimate configures it.
    tokens = _prompt_tokens(layout)
    text_encoder = _ready(_text_encoder(layout), layout.text_encoder, device, dtype)
    unet = _ready(_temporal_unet(layout), layout.temporal_checkpoint, device, dtype)
    appearance = _ready(_diffusers_model(layout.appearance_encoder, _appearance_factory),
                        layout.appearance_encoder, device, dtype)
    controlnet = _ready(_diffusers_model(layout.controlnet, _controlnet_factory), layout.controlnet, device, dtype)
    vae = _ready(_diffusers_model(layout.vae, _vae_factory), layout.vae, device, dtype)
    return Components(unet, appearance, controlnet, vae, text_encoder, tokens)


def weight_files(root: Path | str, animation_weights: Path | str | None = None) -> list[Path]:
    """The files `load_components` reads, for records (sidecars) and checks."""
    layout = weights_layout(root, animation_weights)
    files = [layout.tokenizer / "vocab.json",
             layout.unet / "config.json", layout.temporal_checkpoint]
    for folder, names in [(layout.text_encoder, TRANSFORMERS_WEIGHTS), (layout.appearance_encoder, DIFFUSERS_WEIGHTS),
                          (layout.controlnet, DIFFUSERS_WEIGHTS), (layout.vae, DIFFUSERS_WEIGHTS)]:
        files.append(folder / "config.json")
        files.append(find_weights_file(folder, names))
    unet_file = next((layout.unet / n for n in DIFFUSERS_WEIGHTS if (layout.unet / n).is_file()), None)
    if unet_file is not None:
        files.append(unet_file)
    return files


def animation_files(root: Path | str, animation_weights: Path | str | None = None) -> list[Path]:
    """The files of the MagicAnimate part that `load_components` reads (configs, weights, the temporal checkpoint):
    what identifies the animation weights of a run."""
    layout = weights_layout(root, animation_weights)
    layout.check_animation_folder()
    files = []
    for folder in (layout.appearance_encoder, layout.controlnet):
        files += [folder / "config.json", find_weights_file(folder, DIFFUSERS_WEIGHTS)]
    return [*files, layout.temporal_checkpoint]


def check_weights(root: Path | str, animation_weights: Path | str | None = None) -> list[str]:
    """Problems with a weights directory, found without loading tensors; empty when it would load.

    Checks that every file is present, that safetensors headers are readable, and that the names and shapes of
    the tensors are exactly what the models built from the directory's configs expect. With `animation_weights`
    the MagicAnimate part is checked in that folder instead.
    """
    from .models.clip_text import CLIPTextConfig, CLIPTextEncoder

    layout = weights_layout(root, animation_weights)
    problems: list[str] = []
    try:
        layout.check_animation_folder()
    except WeightsError as exc:
        return [str(exc)]

    def attempt(step: Callable[[], None]) -> None:
        try:
            step()
        except WeightsError as exc:
            problems.append(str(exc))

    def diffusers_part(folder: Path, factory: Callable[[dict], nn.Module]) -> None:
        model = on_meta(lambda: factory(read_json(folder / "config.json")))
        path = find_weights_file(folder, DIFFUSERS_WEIGHTS)
        compare_shapes(model_shapes(model), read_shapes(path), path)

    def text_part() -> None:
        cfg_path = layout.text_encoder / "config.json"
        read_json(cfg_path)
        model = on_meta(lambda: CLIPTextEncoder(CLIPTextConfig.from_json(cfg_path)))
        path = find_weights_file(layout.text_encoder, TRANSFORMERS_WEIGHTS)
        compare_shapes(model_shapes(model), read_shapes(path), path, CLIPTextEncoder.optional_keys)

    def unet_part() -> None:
        plan = plan_temporal(layout, checkpoint_shapes(layout.temporal_checkpoint))
        if not plan.covers_unet:
            sd_path = find_weights_file(layout.unet, DIFFUSERS_WEIGHTS)
            compare_shapes(_spatial_shapes(plan), read_shapes(sd_path), sd_path)
            still = {k for k in plan.uncovered if ".motion_modules." in k}
            if still:
                raise WeightsError(f"{layout.temporal_checkpoint}: {len(still)} UNet keys missing (set by no "
                                   f"file): {_first(still)}")

    attempt(lambda: _prompt_tokens(layout))
    attempt(text_part)
    attempt(unet_part)
    attempt(lambda: diffusers_part(layout.appearance_encoder, _appearance_factory))
    attempt(lambda: diffusers_part(layout.controlnet, _controlnet_factory))
    attempt(lambda: diffusers_part(layout.vae, _vae_factory))
    return problems


def checkpoint_covers_unet(root: Path | str, animation_weights: Path | str | None = None) -> bool:
    """Whether `temporal_attention.ckpt` sets every UNet key, so SD 1.5's unet weights are not needed.

    Decided by the official loader's rule (`temporal_keys`): a full UNet saved with `unet.` prefixes contributes
    only its motion modules, so it does not cover the UNet. Reads only key names and shapes (memory-mapped);
    needs `unet/config.json` and the checkpoint.
    """
    layout = weights_layout(root, animation_weights)
    return plan_temporal(layout, checkpoint_shapes(layout.temporal_checkpoint)).covers_unet


