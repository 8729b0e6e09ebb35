"""`--lora RANK`: train low-rank adapters (peft) on the stage's attention projections instead of every weight.

Stage 1 adapts the appearance encoder's and ControlNet's attention projections, stage 2 the motion modules'
(`lora_targets.py`). Each adapted Linear W gains W + B·A·(alpha / r) with A (r×in) random and B (out×r) zero, so a
run starts exactly at its base; alpha = r (scale 1). Only A and B train: a stage-2 run at rank 16 updates a few
million weights instead of 417 million, and its gradients and optimizer states shrink accordingly.

The export merges every adapter into its weight (`plain_state_dict`), so RUN/export/ holds the released files'
keys and shapes and loads unchanged in `animate`, the official code and ComfyUI; the adapters themselves are kept
beside it in export/lora/ (`adapter_state`).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch
from torch import nn

from ..runtime.errors import SettingsError
from .lora_targets import lora_targets

ADAPTER = "default"
LORA_DIR = "lora"


def check_peft() -> None:
    if importlib.util.find_spec("peft") is None:
        raise SettingsError("--lora needs peft, which is not installed (pip install 'magicanimate-cli[train]')")


def trainable_parameters(model: nn.Module, stage: int, rank: int, seed: int) -> dict[str, nn.Parameter]:
    """What a run trains, name -> parameter in the optimizer's order: rank-`rank` adapters, or (rank 0) the stage's
    own weights. Everything else is frozen."""
    from .model import set_trainable

    params = add_adapters(model, stage, rank, seed) if rank else set_trainable(model, stage)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    return dict(zip(names, params))


def add_adapters(model: nn.Module, stage: int, rank: int, seed: int) -> list[nn.Parameter]:
    """Wrap the stage's targets with rank-`rank` adapters and freeze everything else; the adapters' parameters,
    in module order (the optimizer's). The random A matrices come from `seed` (torch's global generator is left
    as it was), so a resumed run rebuilds the same adapters before its checkpoint overwrites them."""
    check_peft()
    from peft import LoraConfig, inject_adapter_in_model

    targets = lora_targets(model, stage)
    if not targets:
        raise SettingsError(f"--lora {rank}: stage {stage}'s networks have no attention projections to adapt")
    config = LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, target_modules=targets, bias="none")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        inject_adapter_in_model(config, model, adapter_name=ADAPTER)
    params = []
    for name, param in model.named_parameters():
        param.requires_grad_(".lora_" in name)
        if param.requires_grad:
            params.append(param)
    model.train()
    return params


def _adapted_layers(module: nn.Module) -> dict[str, nn.Module]:
    """Name -> peft's wrapper, for every adapted layer under `module`."""
    return {name: sub for name, sub in module.named_modules()
            if hasattr(sub, "base_layer") and hasattr(sub, "get_delta_weight")}


def plain_state_dict(module: nn.Module, state: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """`module.state_dict()` (or `state`, its tensors under the same names, e.g. fp32 originals of weights a run
    holds in half precision) under the plain layer names, each adapter merged into its weight (W + B·A·scale);
    the state itself when nothing is adapted."""
    layers = _adapted_layers(module)
    state = module.state_dict() if state is None else state
    if not layers:
        return dict(state)
    merged = {}
    for key, value in state.items():
        if ".lora_" in key:
            continue
        if ".base_layer." in key:
            layer, _, leaf = key.partition(".base_layer.")
            if leaf == "weight":
                with torch.no_grad():
                    value = value + layers[layer].get_delta_weight(ADAPTER).to(value.dtype)
            key = f"{layer}.{leaf}"
        merged[key] = value
    return merged


def adapter_state(module: nn.Module) -> tuple[dict[str, torch.Tensor], dict]:
    """The adapters under `module` (`<layer>.lora_A.weight`, `<layer>.lora_B.weight`) and their settings."""
    layers = _adapted_layers(module)
    tensors = {}
    for key, value in module.state_dict().items():
        if ".lora_" in key:
            tensors[key.replace(f".{ADAPTER}.", ".")] = value
    config = {}
    if layers:
        first = next(iter(layers.values()))
        config = {"peft_type": "LORA", "r": first.r[ADAPTER], "lora_alpha": first.lora_alpha[ADAPTER],
                  "target_modules": sorted(layers), "merged_into": "the export beside this folder"}
    return tensors, config


def write_adapters(parts: dict[str, nn.Module], folder: Path) -> None:
    """folder/<part>/adapter_model.safetensors and adapter_config.json for each part that has adapters."""
    from safetensors.torch import save_file

    for part, module in parts.items():
        tensors, config = adapter_state(module)
        if not tensors:
            continue
        (folder / part).mkdir(parents=True)
        save_file({k: v.detach().to("cpu", torch.float32).contiguous() for k, v in tensors.items()},
                  str(folder / part / "adapter_model.safetensors"))
        (folder / part / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
