"""RUN/export/README.md: a Hub model card, so an export can be published (`hf upload`) and read as it is.

The YAML metadata is made by huggingface_hub's `ModelCardData` (base model, license, tags, library); the body says
what was trained and how well: stage, steps, global batch, learning rate, the data's size and fingerprint, the last
held-out loss and gains, the command that made it, and how to use the export. Nothing here needs the network.

The license is the one `download-weights` recorded for the weights folder's sources (sources.json), when it
recorded one; otherwise `other`, and the card says to check the base model's license (an export is a derivative
of SD 1.5 and of whatever --from started it).
"""

from __future__ import annotations

import shlex
from pathlib import Path

from ..engine.sources import read_sources
from .settings import RESUMABLE

CARD = "README.md"
TAGS = ["magicanimate", "human-image-animation", "densepose", "controlnet", "diffusers"]
FALLBACK_BASE = "stable-diffusion-v1-5/stable-diffusion-v1-5"
"""SD 1.5's repository, named when the weights folder does not record where its SD 1.5 came from."""


def card_metadata(weights: Path) -> dict:
    """base_model and license from the weights folder's recorded sources."""
    sources = read_sources(weights)
    base = str(sources.get("sd", {}).get("repo") or FALLBACK_BASE)
    licences = sorted({str(s["license"]) for s in sources.values() if s.get("license")})
    return {"base_model": base, "license": licences[0] if len(licences) == 1 else "other"}


def model_card(config: dict, held_out: dict | None, weights: Path) -> str:
    """The card's text: YAML metadata (ModelCardData) and a Markdown body from the run's config.json record."""
    from huggingface_hub import ModelCard, ModelCardData

    meta = card_metadata(weights)
    data = ModelCardData(license=meta["license"], base_model=meta["base_model"], tags=TAGS,
                         library_name="magicanimate-cli", pipeline_tag="image-to-video")
    command = train_command(config["settings"])
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n{_body(config, held_out, command, meta)}")
    return str(card)


def _body(config: dict, held_out: dict | None, command: str | None, meta: dict) -> str:
    s, batch, data = config["settings"], config.get("batch", {}), config.get("data", {})
    parts = {1: "appearance encoder and DensePose ControlNet", 2: "temporal attention (motion modules)"}
    lines = [f"# MagicAnimate, stage {s['stage']} fine-tune", "",
             f"Trained with `magicanimate train` (stage {s['stage']}: the {parts[s['stage']]}) from "
             f"{'`' + s['start_from'] + '`' if s.get('start_from') else 'SD 1.5'}, in the released MagicAnimate "
             "layout (appearance_encoder/, densepose_controlnet/, temporal_attention/).", "",
             "## Training", "",
             "| | |", "|---|---|",
             f"| stage | {s['stage']} |",
             f"| steps | {config.get('steps_done', s['steps'])} |",
             f"| global batch | {batch.get('global_batch', s['batch_size'])} "
             f"({batch.get('batch_size', s['batch_size'])} × {batch.get('processes', 1)} processes × "
             f"{batch.get('gradient_accumulation', 1)} accumulation) |",
             f"| learning rate | {s['lr']} (warmup {s['lr_warmup']} steps) |",
             f"| size | {s['width']}×{s['height']}" + (f", {s['frames']} frames" if s['stage'] == 2 else "") + " |",
             f"| data | {data.get('videos', '?')} videos, {data.get('images', '?')} images "
             f"(fingerprint `{data.get('fingerprint', '?')}`) |",
             f"| seed | {s['seed']} |", ""]
    if held_out:
        lines += ["## Held-out loss at the end", "",
                  f"Denoising loss on a fixed held-out set of {held_out.get('items', '?')} items (evenly spaced "
                  "timesteps, fixed noise); a gain is the loss without that condition minus the loss with it (> 0: "
                  "the model uses it), ± its standard error.", "",
                  "| | value | standard error |", "|---|---|---|",
                  f"| held-out loss | {held_out['loss']:.5f} | {held_out.get('loss_se', 0.0):.5f} |"]
        for gain in ("ref_gain", "pose_gain", "temporal_gain"):
            if gain in held_out:
                lines.append(f"| {gain} | {held_out[gain]:.5f} | {held_out[f'{gain}_se']:.5f} |")
        lines.append("")
    if command:
        lines += ["## The command that made it", "", "```sh", command, "```", ""]
    lines += ["## Use", "", "Animate with SD 1.5 and the VAE from a weights folder (`magicanimate download-weights`):",
              "", "```sh", "magicanimate animate ref.png motion.mp4 -o out.mp4 --animation-weights .", "```", "",
              "Publish it on the Hugging Face Hub:", "", "```sh", "hf upload YOUR_NAME/YOUR_MODEL .", "```", "",
              f"License: `{meta['license']}`" + (" (check the base model's license and the starting weights')"
                                                 if meta["license"] == "other" else ""), ""]
    return "\n".join(lines)


OPTION_NAMES = {"start_from": "--from"}
LEFT_OUT = {"data", "run", "stage", "weight_decay", "max_grad_norm"} | (RESUMABLE - {"steps"})
"""Settings that are not options of their own (DATA, -o, --stage are written first) or that a resumed run may
change because they say nothing of what is trained (checkpoints, reporting, the device, memory options): the
card of a model is the same however its run was checkpointed, watched or interrupted."""


def train_command(settings: dict) -> str:
    """The `magicanimate train` line of a run, rebuilt from its recorded settings (every option given, so it
    repeats the training whatever the defaults become). The run folder is written RUN: where the run lived says
    nothing of the model, and a resumed run's card equals an uninterrupted one's."""
    words = ["magicanimate", "train", settings["data"], "-o", "RUN", "--stage", str(settings["stage"])]
    for key, value in settings.items():
        if key in LEFT_OUT or value is None or value is False:
            continue
        option = OPTION_NAMES.get(key, "--" + key.replace("_", "-"))
        if value is True:
            words.append(option)
        elif isinstance(value, list):
            words += [option, ",".join(str(v) for v in value)]
        else:
            words += [option, str(value)]
    return shlex.join(words)
