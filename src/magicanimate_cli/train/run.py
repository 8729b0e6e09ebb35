"""A training run from start to export: the RUN folder, resuming, and what the run records.

    RUN/config.json        every resolved setting, the noise schedule, fingerprints of the data and weights
    RUN/metrics.jsonl      one object per optimizer step (metrics.py)
    RUN/checkpoints/       step-N folders (checkpoint.py)
    RUN/export/            the released layout (export.py)

Everything that can be wrong with the inputs is found before the RUN folder is touched: a bad setting, DATA,
`--from` folder or weights file leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..runtime.atomic import write_json_atomic
from ..runtime.errors import InputError, OutputError, SettingsError
from . import checkpoint, tracking
from .batches import FrameSource
from .export import write_export
from .loop import OnStep, Outcome, Trainer, Validate, run_loop
from .card import model_card
from .heldout import HeldOut, choose_items
from .metrics import METRICS, MetricsLog
from .report import read_run
from .split import HeldOutData, held_out_data
from .timings import TIMINGS
from .watching import held_out_hook
from .model import TrainingParts, load_parts
from .lora import check_peft
from .optim import check_optimizer
from .diskspace import check_room
from .estimate import OPTIMIZER_BYTES
from .processes import check_engine, from_main, on_main, process_state
from .sampling import DataIndex
from .schedule import check_recorded, inference_schedule
from .settings import TrainSettings, differing_setting

CONFIG = "config.json"
CONFIG_FORMAT = 1


@dataclass
class RunResult:
    run: Path
    outcome: Outcome
    export: Path | None
    resumed_from: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    main: bool = True  # False in the other processes of a multi-process run: they report nothing


def usable_videos(videos: tuple[tuple[str, int], ...], settings: TrainSettings, data: Path
                  ) -> tuple[tuple[tuple[str, int], ...], list[tuple[str, str]]]:
    """The videos long enough for the stage's samples; the others with the reason. None left is an error."""
    span = (settings.clip_frames - 1) * settings.frame_stride + 1
    kept = tuple(v for v in videos if v[1] >= span)
    skipped = [(name, f"{count} frames, shorter than a {settings.frames}-frame clip at stride "
                      f"{settings.frame_stride} ({span} frames)") for name, count in videos if count < span]
    if not kept:
        raise InputError(f"{data}: no video is long enough for --frames {settings.frames} --frame-stride "
                         f"{settings.frame_stride} ({span} frames needed; the longest has "
                         f"{max(c for _, c in videos)})")
    return kept, skipped


def fingerprint(files: list[Path]) -> str:
    """Names and sizes of the starting weight files: cheap, and enough to tell one start from another."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{Path(path).resolve()} {Path(path).stat().st_size}\n".encode())
    return digest.hexdigest()[:16]


def train(settings: TrainSettings, source: FrameSource, videos: tuple[tuple[str, int], ...], images: tuple[str, ...],
          data_fingerprint: str, resume: bool = False, on_step: OnStep | None = None,
          make_validator: Callable[[TrainingParts], Validate] | None = None,
          on_ready: Callable[[int, list[tuple[str, str]]], None] | None = None,
          val_data: HeldOutData | None = None, on_note: Callable[[str], None] | None = None) -> RunResult:
    """Check, build, (resume,) train and export. `on_ready(start_step, skipped)` runs once the models are loaded;
    `val_data` is --val-data's checked folder; `on_note(line)` hears what the user should know before training
    goes on (a damaged checkpoint set aside)."""
    settings.validate()
    check_engine(os.environ)
    check_optimizer(settings.optimizer, settings.device)
    if settings.lora:
        check_peft()
    tracking.check_tracker(settings.log)
    kept, skipped = usable_videos(videos, settings, settings.data)
    index, held_data = held_out_data(settings, DataIndex(kept, images), source, val_data)
    run = settings.run
    recorded = _recorded_config(run, resume)
    state = process_state(settings.device)
    batch_record = global_batch_record(settings, state.num_processes)
    if recorded is not None:
        check_processes(recorded.get("batch"), batch_record, run)
    schedule = inference_schedule()
    if settings.start_from is not None:
        check_recorded(schedule, _from_schedule(settings.start_from), settings.start_from)
    parts = load_parts(settings.stage, settings.weights, settings.start_from, settings.motion_module, state.device,
                       settings.seed)
    longest = int(getattr(parts.model.unet.config, "motion_max_len", settings.frames))
    if settings.stage == 2 and settings.frames > longest:
        raise SettingsError(f"--frames {settings.frames}: the motion module's position table holds {longest} frames")
    record = {"format": CONFIG_FORMAT, "settings": settings.record(), "schedule": schedule.record,
              "data": {"fingerprint": data_fingerprint, "videos": len(index.videos), "images": len(index.images),
                       "skipped": [list(s) for s in skipped]},
              "weights": {"fingerprint": fingerprint(parts.sources), "files": [str(p) for p in parts.sources]},
              "batch": batch_record}
    if held_data is not None:
        record["val"] = held_data.record
    if recorded is not None:
        _check_resumable(recorded, record, run)
    trainer = Trainer(settings, parts, index, source, schedule)
    acc = trainer.accelerator
    main = acc.is_main_process
    needed = checkpoint.expected_bytes(trainer.state, OPTIMIZER_BYTES[settings.optimizer])
    on_main(acc, lambda: check_room(run, needed, "a checkpoint of this run"))
    start = 0
    if recorded is not None:
        latest = from_main(acc, on_main(acc, lambda: resume_point(run, on_note or (lambda line: None))))
        if latest is not None:
            start = trainer.restore(latest)
        on_main(acc, lambda: truncate_logs(run, start))
    else:
        on_main(acc, lambda: write_json_atomic(run / CONFIG, record))
    if on_ready is not None:
        on_ready(start, skipped)
    validate = make_validator(parts) if make_validator is not None and settings.validate_every else None
    measure = held_out_measure(trainer, held_data, run)
    tracking.start(trainer.accelerator, settings.log, settings.record())
    try:
        outcome = run_loop(trainer, run, on_step, validate, measure)
    finally:
        tracking.finish(trainer.accelerator, settings.log)
    export = None
    if outcome.stopped is None:
        export = run / "export"
        on_main(acc, lambda: write_export(run, parts.model, parts.motion_state, parts.appearance_config,
                                          parts.controlnet_config, {"stage": settings.stage, "step": trainer.step,
                                                                    "schedule": schedule.record},
                                          trainer.originals, export_card(run, trainer.step, settings)))
    return RunResult(run, outcome, export, start, skipped, main)


def resume_point(run: Path, on_note: Callable[[str], None]) -> Path | None:
    """The newest intact checkpoint; each newer, damaged one is named and set aside as damaged-step-N (none intact
    is an error; none at all starts from step 0)."""
    folder, damaged = checkpoint.newest_intact(run)
    for bad, problem in damaged:
        aside = checkpoint.set_aside(bad)
        on_note(f"{problem}: checkpoint {bad.name} is damaged, set aside as {aside.name}; resuming from "
                f"{folder.name}")
    return folder


def truncate_logs(run: Path, start: int) -> None:
    """On resume, drop what a killed run logged after its checkpoint (from nothing: every line, step 0's held-out
    measurement included, since the loop measures it again)."""
    for name in (METRICS, TIMINGS):
        MetricsLog(run, name).truncate_after(start if start > 0 else -1)


def held_out_measure(trainer: Trainer, data: HeldOutData | None, run: Path) -> Callable[[int], dict] | None:
    """The loop's held-out measurement, on the set fixed by the seed (None without a held-out set)."""
    if data is None:
        return None
    s = trainer.settings
    held = choose_items(data.index, s.stage, s.clip_frames, s.frame_stride, s.seed, trainer.schedule.timesteps,
                        s.val_items, s.ref_margin)
    return held_out_hook(trainer, HeldOut(held, data.source, trainer.parts, trainer.schedule, s.stage, s.width,
                                          s.height, s.fit), run)


def export_card(run: Path, steps: int, settings: TrainSettings) -> str:
    """The export's model card from the run's config.json, the settings it ended with (a resumed run may have
    changed --steps and how it reports) and its last held-out measurement."""
    config = json.loads((run / CONFIG).read_text(encoding="utf-8"))
    val = read_run(run).val
    return model_card({**config, "settings": settings.record(), "steps_done": steps}, val[-1] if val else None,
                      settings.weights)


def global_batch_record(settings: TrainSettings, processes: int) -> dict:
    """What one optimizer step averages over: per-process batch × processes × accumulation."""
    return {"batch_size": settings.batch_size, "processes": processes,
            "gradient_accumulation": settings.gradient_accumulation,
            "global_batch": settings.batch_size * processes * settings.gradient_accumulation}


def check_processes(recorded: dict | None, current: dict, run: Path) -> None:
    """A run resumes with the processes it started with: the data order, the global batch and every process's
    random state are theirs. (Runs recorded before multi-process training had one process.)"""
    before = (recorded or {}).get("processes", 1)
    if before != current["processes"]:
        raise SettingsError(f"{run}: --resume with {current['processes']} process(es), but the run was started with "
                            f"{before} (global batch {(recorded or {}).get('global_batch', '?')}); resume with "
                            f"{before} process(es)")


def _recorded_config(run: Path, resume: bool) -> dict | None:
    """The run's recorded config when resuming; a fresh run must not reuse another run's folder."""
    config = run / CONFIG
    if resume:
        if not config.is_file():
            raise SettingsError(f"{run}: nothing to resume (no {CONFIG}); start the run without --resume")
        try:
            return json.loads(config.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"{config}: not a readable run config ({exc})") from None
    if config.is_file():
        raise OutputError(f"{run}: already holds a run; continue it with --resume or choose another -o")
    if run.exists() and (not run.is_dir() or any(run.iterdir())):
        raise OutputError(f"{run}: exists and is not an empty folder; choose another -o")
    return None


def _check_resumable(recorded: dict, current: dict, run: Path) -> None:
    key = differing_setting(recorded.get("settings", {}), current["settings"])
    if key is not None:
        raise SettingsError(f"{run}: --resume with other settings: {key} was {recorded['settings'].get(key)!r}, "
                            f"now {current['settings'].get(key)!r}")
    for what in ("schedule",):
        if recorded.get(what) != current[what]:
            raise SettingsError(f"{run}: --resume with another noise schedule ({recorded.get(what)} vs "
                                f"{current[what]})")
    for what in ("data", "weights"):
        if recorded.get(what, {}).get("fingerprint") != current[what]["fingerprint"]:
            raise SettingsError(f"{run}: --resume with other {what} (fingerprint {recorded[what].get('fingerprint')} "
                                f"when the run started, {current[what]['fingerprint']} now)")


def _from_schedule(folder: Path) -> dict | None:
    """The schedule a --from folder was trained with, when it is one of our exports."""
    record = folder / "training.json"
    if not record.is_file():
        return None
    try:
        return json.loads(record.read_text(encoding="utf-8")).get("schedule")
    except (OSError, ValueError):
        return None



