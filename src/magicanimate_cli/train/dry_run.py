"""`train --dry-run`: the estimate for a run's settings, as a table or one JSON line, before anything is loaded.

Reads only config.json files (the weights folder's and `--from`'s); without a weights folder it counts at the
released sizes (SD 1.5's configs), so a user can size a GPU before downloading anything.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..engine.loader import WeightsLayout
from .estimate import GiB, Estimate, ModelConfigs, estimate
from .settings import TrainSettings


def run_configs(weights: Path, start_from: Path | None) -> tuple[ModelConfigs, str]:
    """The configs the run would build from, and where they came from (for the report)."""
    configs = ModelConfigs.from_folders(weights, start_from)
    found = (WeightsLayout(weights).unet / "config.json").is_file()
    source = str(weights) if found else f"SD 1.5 sizes ({weights} has no stable-diffusion-v1-5/)"
    return configs, source + (f" and {start_from}" if start_from is not None else "")


def dry_run(settings: TrainSettings) -> tuple[Estimate, dict]:
    """The estimate and its JSON record (settings included)."""
    configs, source = run_configs(settings.weights, settings.start_from)
    result = estimate(settings, configs)
    record = {"dry_run": True, "configs": source, "settings": settings.step_record(), **result.record()}
    return result, record


def print_report(result: Estimate, record: dict, console: Console | None = None) -> None:
    console = console or Console()
    s = record["settings"]
    table = Table(title=f"train --dry-run: stage {s['stage']}, {s['width']}x{s['height']}, batch {s['batch_size']}"
                        + (f", {s['frames']} frames" if s["stage"] == 2 else ""), title_justify="left")
    table.add_column("network")
    table.add_column("trainable", justify="right")
    table.add_column("frozen", justify="right")
    for m in result.modules:
        table.add_row(m.name, f"{m.trainable / 1e6:,.1f}M", f"{m.frozen / 1e6:,.1f}M")
    table.add_row("total", f"{result.trainable / 1e6:,.1f}M", f"{result.frozen / 1e6:,.1f}M", style="bold")
    console.print(table)
    memory = Table(title="peak GPU memory per process (estimate)", title_justify="left")
    memory.add_column("part")
    memory.add_column("GiB", justify="right")
    for key, value in result.memory.items():
        memory.add_row(key, f"{value / GiB:.1f}", style="bold" if key == "peak" else None)
    console.print(memory)
    console.print(f"FLOPs per optimizer step: {result.flops_per_step / 1e12:.2f} T "
                  f"(precision {s['mixed_precision']}, checkpointing {'on' if s['gradient_checkpointing'] else 'off'}, "
                  f"optimizer {s['optimizer']}{', LoRA rank ' + str(s['lora']) if s['lora'] else ''}); "
                  f"activations {result.activations_plain / GiB:.1f} GiB without checkpointing, "
                  f"{result.activations_checkpointed / GiB:.1f} GiB with it")
    console.print(f"configs: {record['configs']}. Nothing was loaded; counted on the meta device.")
