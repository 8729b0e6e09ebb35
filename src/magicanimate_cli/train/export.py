"""RUN/export/: the trained model in the released `MagicAnimate/` layout.

    export/appearance_encoder/{config.json, diffusion_pytorch_model.safetensors}
    export/densepose_controlnet/{config.json, diffusion_pytorch_model.safetensors}
    export/temporal_attention/temporal_attention.ckpt

Each file holds exactly the released file's keys (tests check them against the release's manifests), so the
official code, ComfyUI wrappers and `animate --animation-weights` read it as they read the release. Written into
a hidden temporary folder and renamed into place: an export is never half there.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..runtime.atomic import write_folder_atomic
from .diskspace import WRITE_ERRORS, failure, write_failure
from .finite import DivergedError, first_nonfinite
from .lora import LORA_DIR, plain_state_dict, write_adapters
from .model import APPEARANCE_DIR, CONTROLNET_DIR, MOTION, TEMPORAL_FILE, TrainingModel

EXPORT = "export"
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"


def export_states(model: TrainingModel, motion_state: dict[str, torch.Tensor] | None,
                  originals: dict[str, torch.Tensor] | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """The three released files' tensors: part -> state dict. The temporal file is left out when the run has no
    temporal layers (a stage-1 run started without any). `originals` (model name -> tensor) stand in for frozen
    tensors that the run holds in half precision (--mixed-precision)."""
    originals = originals or {}

    def state(module: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor]:
        raw = {k: originals.get(prefix + k, v) for k, v in module.state_dict().items()}
        return plain_state_dict(module, raw)  # adapters (--lora) merged

    states = {APPEARANCE_DIR: state(model.appearance_encoder, "appearance_encoder."),
              CONTROLNET_DIR: state(model.controlnet, "controlnet.")}
    unet_motion = {k: v for k, v in state(model.unet, "unet.").items() if MOTION in k}
    motion = unet_motion or motion_state
    if motion:
        states[TEMPORAL_FILE] = dict(motion)
    return states


def write_export(run: Path, model: TrainingModel, motion_state: dict[str, torch.Tensor] | None,
                 appearance_config: dict, controlnet_config: dict, record: dict,
                 originals: dict[str, torch.Tensor] | None = None) -> Path:
    """Write RUN/export atomically (replacing an earlier one); `record` goes to export/training.json. Weights with a
    non-finite value are never written; a full disk is said plainly."""
    target = Path(run) / EXPORT
    states = export_states(model, motion_state, originals)
    bad = first_nonfinite((f"{part}: {name}", t) for part, state in states.items() for name, t in state.items())
    if bad is not None:
        raise DivergedError(f"{target}: not written: {bad} is not finite")

    def fill(temp: Path) -> None:
        for part, state in states.items():
            tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state.items()}
            if part == TEMPORAL_FILE:
                (temp / part).parent.mkdir(parents=True)
                torch.save(tensors, temp / part)
                continue
            (temp / part).mkdir(parents=True)
            config = appearance_config if part == APPEARANCE_DIR else controlnet_config
            (temp / part / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
            save_file(tensors, str(temp / part / WEIGHTS_FILE))
        write_adapters({APPEARANCE_DIR: model.appearance_encoder, CONTROLNET_DIR: model.controlnet,
                        "temporal_attention": model.unet}, temp / LORA_DIR)  # --lora: the adapters, beside
        (temp / "training.json").write_text(json.dumps(record, indent=2) + "\n")

    problem = None
    try:
        write_folder_atomic(target, fill, "export")
    except WRITE_ERRORS as exc:
        problem = failure(exc)
    if problem is not None:
        needed = sum(t.numel() * 4 for state in states.values() for t in state.values())
        raise write_failure(Path(run), target, "the export", needed, problem,
                            "the checkpoints are intact: free some space, then run the same command with --resume "
                            "to write it")
    return target
