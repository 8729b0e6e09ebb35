"""RUN/checkpoints/step-N/: everything needed to continue a run exactly, written atomically.

A checkpoint holds the trainable weights (only they change; the frozen ones are re-read from their files), the
optimizer's state (with fp16's loss scale), the learning-rate schedule's, the run's random generator (the same in
every process), every process's global torch (and CUDA) generator, and the step count, which fixes the data
position (sampling is a pure function of seed, epoch and index). The main process alone writes it, to a hidden
temporary folder renamed into place, so a folder named step-N is always complete; it records the number of
processes, and a resume with another number is refused.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..runtime.atomic import write_folder_atomic
from ..runtime.errors import SettingsError

CHECKPOINTS = "checkpoints"
FORMAT = 1
PIECES = frozenset({"weights", "optimizer", "lr_schedule", "rng"})
"""What a checkpoint restores; `restore` takes a subset (e.g. weights alone to warm-start)."""


@dataclass
class TrainerState:
    """The mutable state of a run, as the loop holds it."""

    step: int
    trainable: dict[str, torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    lr_schedule: object
    generator: torch.Generator
    scaler: object = None  # fp16's loss scaler (its scale and growth tracker), restored with the optimizer


def checkpoint_dir(run: Path, step: int) -> Path:
    return Path(run) / CHECKPOINTS / f"step-{step}"


def process_rng() -> dict:
    """This process's global RNG states (torch's, and CUDA's where there is one)."""
    states = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def save(run: Path, state: TrainerState, keep: int, processes_rng: list[dict] | None = None) -> Path:
    """Write step-N atomically, then remove all but the `keep` newest. `processes_rng` holds every process's RNG
    states in process order (the main process writes them all)."""
    processes_rng = processes_rng or [process_rng()]
    folder = checkpoint_dir(run, state.step)

    def fill(temp: Path) -> None:
        save_file({k: v.detach().to("cpu").contiguous() for k, v in state.trainable.items()},
                  str(temp / "trainable.safetensors"))
        torch.save(state.optimizer.state_dict(), temp / "optimizer.pt")
        torch.save(state.lr_schedule.state_dict(), temp / "lr_schedule.pt")
        if state.scaler is not None:
            torch.save(state.scaler.state_dict(), temp / "scaler.pt")
        torch.save({"generator": state.generator.get_state(), "torch": processes_rng[0]["torch"],
                    "processes": processes_rng}, temp / "rng.pt")
        (temp / "state.json").write_text(json.dumps({"format": FORMAT, "step": state.step,
                                                     "processes": len(processes_rng)}) + "\n")

    write_folder_atomic(folder, fill, "checkpoint")
    for old in complete_checkpoints(run)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def complete_checkpoints(run: Path) -> list[Path]:
    """step-N folders, oldest first (temporary ones are never named step-N)."""
    root = Path(run) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and (p / "state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-", 1)[1]))


def latest(run: Path) -> Path | None:
    done = complete_checkpoints(run)
    return done[-1] if done else None


def restore(folder: Path, state: TrainerState, pieces: frozenset[str] = PIECES, rank: int = 0,
            processes: int = 1) -> int:
    """Put a checkpoint's `pieces` back into `state` (process `rank` of `processes` takes its own RNG states);
    returns the step it was taken at."""
    info = json.loads((folder / "state.json").read_text())
    if info.get("format") != FORMAT:
        raise SettingsError(f"{folder}: checkpoint format {info.get('format')}, this version reads {FORMAT}")
    if info.get("processes", 1) != processes:
        raise SettingsError(f"{folder}: written by {info.get('processes', 1)} process(es), resumed with {processes}; "
                            "resume with the same number of processes")
    if "weights" in pieces:
        saved = load_file(str(folder / "trainable.safetensors"))
        if set(saved) != set(state.trainable):
            raise SettingsError(f"{folder}: its trainable tensors are not this run's (another stage or model)")
        with torch.no_grad():
            for name, param in state.trainable.items():
                param.copy_(saved[name])
    if "optimizer" in pieces:
        state.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
        if state.scaler is not None and (folder / "scaler.pt").is_file():
            state.scaler.load_state_dict(torch.load(folder / "scaler.pt", weights_only=True))
    if "lr_schedule" in pieces:
        state.lr_schedule.load_state_dict(torch.load(folder / "lr_schedule.pt", weights_only=True))
    if "rng" in pieces:
        rng = torch.load(folder / "rng.pt", weights_only=True)
        state.generator.set_state(rng["generator"])
        mine = rng.get("processes", [{"torch": rng["torch"]}])[rank]
        torch.set_rng_state(mine["torch"])
        if "cuda" in mine and torch.cuda.is_available():
            torch.cuda.set_rng_state(mine["cuda"])
    state.step = int(info["step"])
    return state.step
