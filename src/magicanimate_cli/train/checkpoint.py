"""RUN/checkpoints/step-N/: everything needed to continue a run exactly, written atomically.

A checkpoint holds the trainable weights (only they change; the frozen ones are re-read from their files), the
optimizer's state (with fp16's loss scale), the learning-rate schedule's, the run's random generator (the same in
every process), every process's global torch (and CUDA) generator, and the step count, which fixes the data
position (sampling is a pure function of seed, epoch and index). The main process alone writes it, to a hidden
temporary folder renamed into place, so a folder named step-N is always complete; it records the number of
processes, and a resume with another number is refused.

state.json, written last, records each file's size and SHA-256: `--resume` verifies the newest checkpoint and,
when a file is damaged (a copy cut short, a bad block), names it, sets the checkpoint aside as `damaged-step-N`
and continues from the newest intact one, which exactness makes the same run. A checkpoint is never written with
a non-finite tensor (finite.py), and one that cannot be written for want of space says so (diskspace.py); the
older ones stay as they were.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..runtime.atomic import write_folder_atomic
from ..runtime.errors import InputError, SettingsError
from .diskspace import WRITE_ERRORS, failure, write_failure
from .finite import DivergedError, first_nonfinite, last_good, state_tensors

CHECKPOINTS = "checkpoints"
FORMAT = 1
STATE = "state.json"
DAMAGED = "damaged-"
SMALL_FILES = 2**20
"""Room the checkpoint's small files (schedule, RNG states, state.json) take, at most."""
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
    skipped: int = 0  # non-finite steps skipped so far (--max-skipped-steps)


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for _, t in tensors)


def expected_bytes(state: TrainerState, optimizer_bytes_per_weight: int) -> int:
    """A checkpoint's size: the trainable weights, the optimizer's states (as they are, or before the first step
    as `optimizer_bytes_per_weight` per weight) and the small files."""
    weights = tensor_bytes(state.trainable.items())
    held = tensor_bytes(state_tensors(state.optimizer.state_dict()["state"]))
    if not held:
        held = sum(p.numel() for p in state.trainable.values()) * optimizer_bytes_per_weight
    return weights + held + SMALL_FILES


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
    states in process order (the main process writes them all). Refuses non-finite tensors before writing."""
    processes_rng = processes_rng or [process_rng()]
    folder = checkpoint_dir(run, state.step)
    optimizer_state = state.optimizer.state_dict()
    bad = first_nonfinite([*state.trainable.items(), *state_tensors(optimizer_state["state"], "optimizer")])
    if bad is not None:
        raise DivergedError(f"{folder}: not written: {bad} is not finite after step {state.step}; "
                            f"{last_good(latest(run))}")

    def fill(temp: Path) -> None:
        save_file({k: v.detach().to("cpu").contiguous() for k, v in state.trainable.items()},
                  str(temp / "trainable.safetensors"))
        torch.save(optimizer_state, temp / "optimizer.pt")
        torch.save(state.lr_schedule.state_dict(), temp / "lr_schedule.pt")
        if state.scaler is not None:
            torch.save(state.scaler.state_dict(), temp / "scaler.pt")
        torch.save({"generator": state.generator.get_state(), "torch": processes_rng[0]["torch"],
                    "processes": processes_rng}, temp / "rng.pt")
        files = {p.name: file_record(p) for p in sorted(temp.iterdir())}
        (temp / STATE).write_text(json.dumps({"format": FORMAT, "step": state.step, "processes": len(processes_rng),
                                              "skipped": state.skipped, "files": files}) + "\n")

    previous, problem = latest(run), None
    try:
        write_folder_atomic(folder, fill, "checkpoint")
    except WRITE_ERRORS as exc:
        problem = failure(exc)
    if problem is not None:
        raise write_failure(run, folder, f"the checkpoint of step {state.step}", expected_bytes(state, 0), problem,
                            f"{last_good(previous)}; free some space (or move RUN), then continue with --resume")
    for old in complete_checkpoints(run)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def file_record(path: Path) -> dict:
    """A checkpoint file's size and SHA-256, as state.json keeps them."""
    with open(path, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    return {"size": path.stat().st_size, "sha256": digest}


def damage(folder: Path) -> str | None:
    """What is wrong with a checkpoint's files, or None when every recorded file has its size and checksum.
    (Checkpoints from before the record are taken as they are.)"""
    try:
        info = json.loads((folder / STATE).read_text())
    except (OSError, ValueError) as exc:
        return f"{folder / STATE}: unreadable ({exc})"
    for name, want in info.get("files", {}).items():
        path = folder / name
        if not path.is_file():
            return f"{path}: missing"
        size = path.stat().st_size
        if size != want["size"]:
            return f"{path}: {size} bytes, {want['size']} when written"
        if file_record(path)["sha256"] != want["sha256"]:
            return f"{path}: its checksum differs from the one recorded when it was written"
    return None


def newest_intact(run: Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest checkpoint whose files are intact (None when there is none at all), and each newer, damaged one
    with what is wrong with it (newest first). Only damaged ones is an error."""
    damaged = []
    for folder in reversed(complete_checkpoints(run)):
        problem = damage(folder)
        if problem is None:
            return folder, damaged
        damaged.append((folder, problem))
    if damaged:
        raise InputError(f"{Path(run) / CHECKPOINTS}: no intact checkpoint to resume from "
                         f"({'; '.join(problem for _, problem in damaged)}); start the run again in a new -o")
    return None, damaged


def set_aside(folder: Path) -> Path:
    """Rename a damaged checkpoint to damaged-step-N: kept for a look, never resumed from or counted as kept."""
    target = folder.with_name(DAMAGED + folder.name)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(folder, target)
    return target


def complete_checkpoints(run: Path) -> list[Path]:
    """step-N folders, oldest first (temporary ones are never named step-N)."""
    root = Path(run) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and (p / STATE).is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-", 1)[1]))


def latest(run: Path) -> Path | None:
    done = complete_checkpoints(run)
    return done[-1] if done else None


def restore(folder: Path, state: TrainerState, pieces: frozenset[str] = PIECES, rank: int = 0,
            processes: int = 1) -> int:
    """Put a checkpoint's `pieces` back into `state` (process `rank` of `processes` takes its own RNG states);
    returns the step it was taken at."""
    info = json.loads((folder / STATE).read_text())
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
    state.skipped = int(info.get("skipped", 0))
    return state.step
