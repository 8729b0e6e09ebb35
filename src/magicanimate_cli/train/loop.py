"""The training loop, on accelerate from its first line (one process is accelerate with one process).

One optimizer step: plan (branch and samples, a pure function of seed, epoch and index) -> read and fit the
frames -> VAE latents (mean × 0.18215) of targets and references -> noise, timesteps and reference dropout from
the run's generator -> noise the targets with the inference schedule -> predict -> MSE against the noise ->
backward, clip, AdamW step. Everything random comes from the plan or from the run's generator, both restored
exactly by a checkpoint.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..runtime.testhooks import pause_point
from . import checkpoint, tracking
from .batches import FrameSource, make_batch
from .metrics import MetricsLog, StepRecord
from .model import TrainingParts, encode_latents, set_trainable
from .lora import add_adapters
from .optim import make_optimizer
from .sampling import DataIndex, Mix, StepPlan, plan_step
from .schedule import NoiseSchedule
from .settings import TrainSettings


@dataclass
class StepTiming:
    data_s: float  # reading and fitting frames
    compute_s: float  # encoding, forward, backward, optimizer


@dataclass
class Outcome:
    steps_done: int
    stopped: str | None  # the signal's name when SIGTERM/SIGINT ended the run early
    last: StepRecord | None


class Trainer:
    """Holds the prepared model, optimizer and schedule, and takes optimizer steps."""

    def __init__(self, settings: TrainSettings, parts: TrainingParts, data: DataIndex, source: FrameSource,
                 schedule: NoiseSchedule) -> None:
        from accelerate import Accelerator

        self.settings, self.parts, self.data, self.source, self.schedule = settings, parts, data, source, schedule
        # fp32 whatever an accelerate config or ACCELERATE_* variable says: the run's settings say what it does
        self.accelerator = Accelerator(cpu=torch.device(settings.device).type == "cpu", mixed_precision="no",
                                       **tracking.accelerator_options(settings.log, settings.run))
        params = (add_adapters(parts.model, settings.stage, settings.lora, settings.seed) if settings.lora
                  else set_trainable(parts.model, settings.stage))
        names = [n for n, p in parts.model.named_parameters() if p.requires_grad]
        optimizer = make_optimizer(settings.optimizer, params, settings.lr, settings.weight_decay, settings.device)
        warmup = settings.lr_warmup
        lr_schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0)
        self.model, self.optimizer, self.lr_schedule = self.accelerator.prepare(parts.model, optimizer, lr_schedule)
        # accelerate places the prepared model on the process's device; the frozen helpers follow it
        parts.vae.to(self.accelerator.device)
        parts.text = parts.text.to(self.accelerator.device)
        self.params = params
        self.mix = Mix(settings.stage, settings.image_prob, *settings.joint)
        self.state = checkpoint.TrainerState(0, dict(zip(names, params)), self.optimizer, self.lr_schedule,
                                             torch.Generator("cpu").manual_seed(settings.seed))

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def step(self) -> int:
        return self.state.step

    def plan(self, step: int | None = None) -> StepPlan:
        s = self.settings
        return plan_step(self.state.step if step is None else step, s.seed, self.data, self.mix, s.batch_size,
                         s.clip_frames, s.frame_stride)

    def train_step(self) -> tuple[StepRecord, StepTiming]:
        s, model = self.settings, self.model
        t0 = time.perf_counter()
        plan = self.plan()
        batch = make_batch(plan, self.source, s.width, s.height).to(self.device)
        t1 = time.perf_counter()
        b, f = batch.target.shape[:2]
        latents = encode_latents(self.parts.vae, batch.target.flatten(0, 1))
        latents = latents.reshape(b, f, *latents.shape[1:]).transpose(1, 2)  # (b, 4, f, h, w)
        reference = encode_latents(self.parts.vae, batch.reference)
        g = self.state.generator
        noise = torch.randn(latents.shape, generator=g).to(self.device)
        t = torch.randint(0, self.schedule.timesteps, (b,), generator=g).to(self.device)
        keep = (torch.rand(b, generator=g) >= s.ref_dropout).to(self.device)
        noisy = self.schedule.add_noise(latents, noise, t)
        pred = model(noisy, t, self.parts.text.expand(b, -1, -1), reference, batch.pose, keep)
        loss = F.mse_loss(pred.float(), noise.float())
        self.accelerator.backward(loss)
        grad_norm = self.accelerator.clip_grad_norm_(self.params, s.max_grad_norm)
        lr = float(self.lr_schedule.get_last_lr()[0])
        self.optimizer.step()
        self.lr_schedule.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1
        record = StepRecord(self.state.step, float(loss.detach()), lr, plan.branch, float(grad_norm), plan.epoch,
                            [_sample_label(x) for x in plan.samples])
        return record, StepTiming(t1 - t0, time.perf_counter() - t1)

    def save_checkpoint(self, run: Path) -> Path:
        return checkpoint.save(run, self.state, self.settings.keep_checkpoints)

    def restore(self, folder: Path, pieces: frozenset[str] = checkpoint.PIECES) -> int:
        return checkpoint.restore(folder, self.state, pieces)


def _sample_label(sample) -> str:
    if sample.kind == "image":
        return f"image:{sample.name}"
    return f"{sample.name}@{','.join(map(str, sample.frames))}<-{sample.reference}"


OnStep = Callable[[StepRecord, StepTiming], None]


def run_loop(trainer: Trainer, run: Path, on_step: OnStep | None = None,
             validate: Callable[[int], list[dict]] | None = None) -> Outcome:
    """Train up to `settings.steps`, checkpointing every N steps and at the end; SIGTERM/SIGINT save a checkpoint
    after the step in progress and stop. `validate(step)` returns metric records to log (--validate-every)."""
    s = trainer.settings
    log = MetricsLog(run)
    last = None
    with _stop_signals() as stop:
        while trainer.step < s.steps:
            record, timing = trainer.train_step()
            log.append(record)
            tracking.log_step(trainer.accelerator, s.log, record, timing.data_s + timing.compute_s, s.batch_size)
            last = record
            if validate is not None and s.validate_every and record.step % s.validate_every == 0:
                for entry in validate(record.step):
                    log.append(entry)
                    tracking.log_validation(trainer.accelerator, s.log, entry)
            pause_point(f"train-step:{record.step}")  # tests stop the run here: metrics written, no checkpoint yet
            if on_step is not None:
                on_step(record, timing)
            if record.step % s.checkpoint_every == 0 or record.step == s.steps or stop.signal:
                trainer.save_checkpoint(run)
            if stop.signal:
                return Outcome(record.step, stop.signal, last)
    return Outcome(trainer.step, None, last)


@dataclass
class _Stop:
    signal: str | None = None


@contextmanager
def _stop_signals():
    """While training, SIGTERM and SIGINT ask the loop to stop after the step in progress (with a checkpoint)
    instead of killing it mid-step; a second signal is handled as usual."""
    stop = _Stop()
    previous = {}

    def handler(signum, frame):
        stop.signal = signal.Signals(signum).name
        for sig, old in previous.items():
            signal.signal(sig, old)

    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: no signal handling (an embedding application's own)
        previous.clear()
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
