"""The training loop, on accelerate from its first line (one process is accelerate with one process).

One optimizer step: plan (branch and samples, a pure function of seed, epoch and index) -> read and fit the
frames -> VAE latents (mean × 0.18215) of targets and references -> noise, timesteps and reference dropout from
the run's generator -> noise the targets with the inference schedule -> predict -> MSE against the noise ->
backward, clip, AdamW step. Everything random comes from the plan or from the run's generator, both restored
exactly by a checkpoint.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..runtime.errors import OutputError
from ..runtime.testhooks import pause_point
from . import checkpoint, tracking
from .batches import FrameSource, RawBatch
from .feed import Feed, FeedPlan
from .metrics import MetricsLog, StepRecord
from .timings import TIMINGS, timing_record
from .latents import LatentCache
from .model import TrainingParts, encode_latents
from .lora import trainable_parameters
from .optim import make_optimizer, warmup_schedule
from .processes import any_process, gather_objects, make_accelerator, on_main, raise_if_any
from .diskspace import failure, write_failure
from .finite import DivergedError, last_good
from .validation import VALIDATION
from .precision import apply_memory_options
from .sampling import DataIndex, Mix, StepPlan, plan_step, share
from .schedule import NoiseSchedule
from .settings import TrainSettings


@dataclass
class StepTiming:
    data_s: float  # waiting for the step's batches (read by the data workers, or here with --data-workers 0)
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
        self.settings, self.parts, self.data, self.source, self.schedule = settings, parts, data, source, schedule
        # the precision is the run's setting, whatever an accelerate config or ACCELERATE_* variable says
        self.accelerator = make_accelerator(settings, **tracking.accelerator_options(settings.log, settings.run))
        trainable = trainable_parameters(parts.model, settings.stage, settings.lora, settings.seed)
        self.params = list(trainable.values())
        self.originals = apply_memory_options(parts, self.accelerator.mixed_precision, settings.gradient_checkpointing)
        optimizer = make_optimizer(settings.optimizer, self.params, settings.lr, settings.weight_decay, settings.device)
        # the schedule stays ours: accelerate's prepared scheduler steps once per process at every optimizer step
        self.lr_schedule = warmup_schedule(optimizer, settings.lr_warmup)
        self.model, self.optimizer = self.accelerator.prepare(parts.model, optimizer)
        # accelerate places the prepared model on the process's device; the frozen helpers follow it
        parts.vae.to(self.accelerator.device)
        parts.text = parts.text.to(self.accelerator.device)
        self.mix = Mix(settings.stage, settings.image_prob, *settings.joint)
        self.latents = LatentCache(parts.vae) if settings.cache_latents else None
        self.feed: Feed | None = None  # started at the first step read (next_batch)
        self.state = checkpoint.TrainerState(0, trainable, self.optimizer, self.lr_schedule,
                                             torch.Generator("cpu").manual_seed(settings.seed),
                                             self.accelerator.scaler)

    @property
    def processes(self) -> int:
        return self.accelerator.num_processes

    @property
    def global_batch(self) -> int:
        """Samples per optimizer step over all processes and micro-batches."""
        return self.settings.batch_size * self.processes * self.settings.gradient_accumulation

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def step(self) -> int:
        return self.state.step

    def plan(self, step: int | None = None) -> StepPlan:
        """The global batch's plan (every process plans the same step and takes its share)."""
        s = self.settings
        return plan_step(self.state.step if step is None else step, s.seed, self.data, self.mix, self.global_batch,
                         s.clip_frames, s.frame_stride, s.ref_margin)

    def train_step(self) -> tuple[StepRecord, StepTiming]:
        """One optimizer step: the gradients of the global batch, then clipping and AdamW."""
        plan, loss, data_s, compute_s = self.accumulate_gradients()
        t1 = time.perf_counter()
        record = self.apply(plan, loss)
        return record, StepTiming(data_s, compute_s + time.perf_counter() - t1)

    def accumulate_gradients(self) -> tuple[StepPlan, torch.Tensor, float, float]:
        """Each micro-batch's forward and backward (accelerate's `accumulate`), gradients synchronised over the
        processes on the last. Noise,
        timesteps and dropout are drawn for the whole global batch from the run's generator, the same on every
        process, and each sample takes its own row: a sample's draws do not depend on how the batch is split.
        Returns the plan, this process's loss (its share of the step's mean) and the data and compute seconds."""
        s, acc = self.settings, self.accelerator
        plan = self.plan()
        data_s = compute_s = 0.0
        draws = None
        total = torch.zeros((), device=self.device)
        for micro in range(s.gradient_accumulation):
            t0 = time.perf_counter()
            mine = share(plan, acc.process_index, self.processes, micro, s.batch_size)
            batch = self.next_batch(plan.step, micro).to(self.device)
            t1 = time.perf_counter()
            latents, reference = self.encode(mine, batch)
            if draws is None:
                draws = self.draw(latents.shape[1:])
            first = (micro * self.processes + acc.process_index) * s.batch_size
            noise, t, keep = (d[first:first + s.batch_size].to(self.device) for d in draws)
            noisy = self.schedule.add_noise(latents, noise, t)
            # accelerate's accumulation: no gradient sync before the last micro-batch, the loss divided by the
            # micro-batch count in `backward` (what DeepSpeed-style engines expect to be told, not to guess)
            with acc.accumulate(self.model):
                with acc.autocast():
                    pred = self.model(noisy, t, self.parts.text.expand(s.batch_size, -1, -1), reference, batch.pose,
                                      keep)
                loss = F.mse_loss(pred.float(), noise.float())
                acc.backward(loss)
            total = total + loss.detach() / s.gradient_accumulation
            data_s, compute_s = data_s + t1 - t0, compute_s + time.perf_counter() - t1
        return plan, total, data_s, compute_s

    def next_batch(self, step: int, micro: int) -> RawBatch:
        """This process's micro-batch of the step, from the feed (started at the first step this process trains,
        so a resumed run reads on from its checkpoint; started again where a restore moved the step)."""
        if self.feed is not None and self.feed.next_key != (step, micro):
            self.close_feed()
        if self.feed is None:
            s = self.settings
            plan = FeedPlan(s.seed, self.data, self.mix, self.global_batch, s.clip_frames, s.frame_stride,
                            s.ref_margin, self.accelerator.process_index, self.processes, s.gradient_accumulation,
                            s.batch_size, s.width, s.height, s.fit)
            self.feed = Feed(plan, self.source, step, s.steps, s.data_workers)
        return self.feed.take(step, micro)

    def close_feed(self) -> None:
        """Stop the data workers (the run is over or stopped)."""
        if self.feed is not None:
            self.feed.close()
            self.feed = None

    def apply(self, plan: StepPlan, loss: torch.Tensor) -> StepRecord:
        """Clip the synchronised gradients, take the AdamW step; the record carries the mean loss over processes.
        A non-finite loss or gradient norm (the same on every process: both are reduced) takes no step and is
        marked `nonfinite` (fp16's loss scaler keeps its own skips of non-finite gradients)."""
        acc = self.accelerator
        grad_norm = float(acc.clip_grad_norm_(self.params, self.settings.max_grad_norm))
        lr = float(self.lr_schedule.get_last_lr()[0])
        loss_value = float(acc.reduce(loss, "mean")) if self.processes > 1 else float(loss)
        nonfinite = not math.isfinite(loss_value) or (acc.scaler is None and not math.isfinite(grad_norm))
        if not nonfinite:
            self.optimizer.step()
            if not acc.optimizer_step_was_skipped:  # fp16's loss scaler skipped the update: the schedule waits too
                self.lr_schedule.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.parts.model.bank.clear()  # held through backward with gradient checkpointing
        self.state.step += 1
        skipped = acc.optimizer_step_was_skipped if acc.scaler is not None and not nonfinite else None
        return StepRecord(self.state.step, loss_value, lr, plan.branch, grad_norm, plan.epoch,
                          [_sample_label(x) for x in plan.samples], skipped, True if nonfinite else None)

    def encode(self, plan: StepPlan, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """VAE latents (b, 4, f, h, w) of the targets and (b, 4, h, w) of the references (--cache-latents: each
        frame's latent encoded once and reused)."""
        if self.latents is not None:
            return self.latents.batch(plan, batch)
        b, f = batch.target.shape[:2]
        latents = encode_latents(self.parts.vae, batch.target.flatten(0, 1))
        latents = latents.reshape(b, f, *latents.shape[1:]).transpose(1, 2)  # (b, 4, f, h, w)
        return latents, encode_latents(self.parts.vae, batch.reference)

    def draw(self, latent_shape: torch.Size) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The global batch's noise, timesteps and reference keep-flags, in the order one process always drew
        them (noise, then timesteps, then dropout), from the run's generator."""
        g, n = self.state.generator, self.global_batch
        noise = torch.randn((n, *latent_shape), generator=g)
        t = torch.randint(0, self.schedule.timesteps, (n,), generator=g)
        keep = torch.rand(n, generator=g) >= self.settings.ref_dropout
        return noise, t, keep

    def save_checkpoint(self, run: Path) -> Path:
        """Every process hands its RNG state to the main process, which alone writes the checkpoint; the others
        wait until it is complete, and stop with it when it cannot be written."""
        states = gather_objects(self.accelerator, checkpoint.process_rng())
        on_main(self.accelerator, lambda: checkpoint.save(run, self.state, self.settings.keep_checkpoints, states))
        return checkpoint.checkpoint_dir(run, self.state.step)

    def restore(self, folder: Path, pieces: frozenset[str] = checkpoint.PIECES) -> int:
        return checkpoint.restore(folder, self.state, pieces, self.accelerator.process_index, self.processes)


def _sample_label(sample) -> str:
    if sample.kind == "image":
        return f"image:{sample.name}"
    return f"{sample.name}@{','.join(map(str, sample.frames))}<-{sample.reference}"


OnStep = Callable[[StepRecord, StepTiming], None]
Validate = Callable[[int, int, int], list[dict]]
"""(step, process index, processes) -> the metric records of this process's share of the validation pairs."""


def validate_shared(trainer: Trainer, validate: Validate, step: int) -> list[dict]:
    """Every process animates its share of the pairs; the main process gets all records, in the pairs' order (the
    others get none). A video that cannot be written stops every process, with one line from the one that failed."""
    acc, run = trainer.accelerator, trainer.settings.run
    error, mine, problem = None, [], None
    try:
        mine = validate(step, acc.process_index, trainer.processes)
    except (OutputError, OSError) as exc:
        problem = failure(exc)
    if problem is not None:
        error = write_failure(run, run / VALIDATION, f"the validation videos of step {step}", 0, problem,
                              "free some space, then continue with --resume")
    raise_if_any(acc, error)
    shares = gather_objects(acc, mine)
    if not acc.is_main_process:
        return []
    return sorted((entry for share in shares for entry in share), key=lambda entry: entry["validation"])


def run_loop(trainer: Trainer, run: Path, on_step: OnStep | None = None,
             validate: Validate | None = None, held_out: Callable[[int], dict] | None = None) -> Outcome:
    """Train up to `settings.steps`, checkpointing every N steps and at the end; SIGTERM/SIGINT save a checkpoint
    after the step in progress and stop. `validate` animates the --validation pairs every --validate-every steps;
    `held_out(step)` measures the held-out set (before the first update, every --val-every steps, at the end).
    A non-finite step beyond --max-skipped-steps stops the run (DivergedError) with no checkpoint of it."""
    s, acc = trainer.settings, trainer.accelerator
    log, timings = MetricsLog(run), MetricsLog(run, TIMINGS)
    last = None
    if held_out is not None and trainer.step == 0:
        held_out(0)  # every run's baseline
    with _stop_signals() as stop, _closing_feed(trainer):
        while trainer.step < s.steps:
            record, timing = trainer.train_step()
            # one process writes the run's files, both in one call (one all-reduce a step tells every process)
            on_main(acc, lambda: (log.append(record),
                                  timings.append(timing_record(record.step, timing.data_s, timing.compute_s,
                                                               trainer.global_batch))))
            if record.nonfinite:
                check_divergence(trainer, record, run)
            tracking.log_step(acc, s.log, record, timing.data_s + timing.compute_s, trainer.global_batch)
            last = record
            if validate is not None and s.validate_every and record.step % s.validate_every == 0:
                entries = validate_shared(trainer, validate, record.step)
                on_main(acc, lambda: [log.append(entry) for entry in entries])
                for entry in entries:
                    tracking.log_validation(acc, s.log, entry)
            if held_out is not None and (record.step % s.held_out_every == 0 or record.step == s.steps):
                held_out(record.step)
            pause_point(f"train-step:{record.step}")  # tests stop the run here: metrics written, no checkpoint yet
            if on_step is not None:
                on_step(record, timing)
            # a signal reaching one process stops them all after the same step (a checkpoint needs every one)
            stopped = any_process(acc, stop.signal)
            if record.step % s.checkpoint_every == 0 or record.step == s.steps or stopped:
                trainer.save_checkpoint(run)
            if stopped:
                return Outcome(record.step, stopped, last)
    return Outcome(trainer.step, None, last)


def check_divergence(trainer: Trainer, record: StepRecord, run: Path) -> None:
    """Count a non-finite step; past --max-skipped-steps, stop in one line (every process decides alike: the loss
    and gradient norm are reduced)."""
    trainer.state.skipped += 1
    allowed = trainer.settings.max_skipped_steps
    if trainer.state.skipped <= allowed:
        return
    good = checkpoint.latest(run)
    advice = (f"{last_good(good)}: continue from it with --resume (and --max-skipped-steps N to skip such steps), "
              "or start again with a lower --lr") if good is not None else \
        f"{last_good(good)}: start again with a lower --lr (or --max-skipped-steps N to skip such steps)"
    raise DivergedError(f"step {record.step}: the loss is {record.loss} and the gradient norm {record.grad_norm}, "
                        f"not finite; stopped with no checkpoint or export of it ({trainer.state.skipped} such "
                        f"step(s), --max-skipped-steps {allowed}); {advice}")


@contextmanager
def _closing_feed(trainer: Trainer):
    try:
        yield
    finally:
        trainer.close_feed()


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
