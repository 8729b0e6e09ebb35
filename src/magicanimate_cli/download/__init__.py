"""Fetching the files MagicAnimate's engine loads, from the Hugging Face Hub, into the layout it loads them from.

    <root>/stable-diffusion-v1-5/  model_index.json, scheduler/, tokenizer/, text_encoder/, unet/
    <root>/sd-vae-ft-mse/          config.json and the weights
    <root>/MagicAnimate/           appearance_encoder/, densepose_controlnet/, temporal_attention/
    <root>/DensePose/              the DensePose TorchScript model, only with `--pose` (for `magicanimate pose`)
    <root>/animatediff/            AnimateDiff's mm_sd_v15.ckpt, only with `--motion-module` (a start for training)

Only the files the engine reads are fetched, chosen from each repository's listing (never the single-file
checkpoints, the SD 1.5 VAE or the safety checker). The SD 1.5 unet weights are fetched last, and only when the
MagicAnimate temporal checkpoint does not already carry every UNet weight.

Why not `hf_hub_download`: it stages each file under a temporary name that it deletes when a transfer fails, so
a dropped connection on a 5 GB file restarts from zero on the next run, and it checks sizes, not content (its
`http_get` also buffers 10 MB before writing). Here `HfApi` lists each repository at one commit, and
huggingface_hub's HTTP session (endpoint, token, redirects, offline switch, typed errors) streams each file into
a partial file under `<root>/.magicanimate-download/` that a dropped connection, or the next run, resumes with a
Range request. A file reaches its final path only by an atomic rename, after its sha256 (LFS files) or git blob
id (small files) matched what the hub lists, so nothing half-written or corrupt ever sits there.
`records.json` in the same folder remembers what was placed, so a re-run transfers (and rehashes) nothing.
Every repository is read at `main` unless `--revision` says otherwise; the commit each one resolved to, and the
files taken from it, are recorded in `<root>/.magicanimate/sources.json` (see sources_manifest.py).

One module per part, each importable on its own; this package re-exports what the command and the tests use:

    settings.py           what a run is asked for: sources and revisions, hub access, variant, pose model
    selection.py          what the engine reads from each repository, picked from the hub's listing
    plan.py               the plan of a run: each file present, to resume or to fetch, and how it ended
    transfer.py           resumable, verified, atomic transfer of planned files; the run's observer and lock
    records.py            the folder's memory: records.json, partial files, content digests, sources.json entries
    check.py              whether a folder is complete, without the network (--check, HF_HUB_OFFLINE)
    animation_weights.py  download-weights: the run that fills the engine's layout
    metric_weights.py     download-weights --metrics: the evaluation networks' files
    hub_errors.py         a failed hub call as one line with its remedy; FileFailed for one file's failure
    sizes.py              byte counts for people, and the free-space check
"""

from __future__ import annotations

from .animation_weights import download_weights
from .check import check_directory, check_motion_module, check_pose_model, pose_model_path
from .hub_errors import FileFailed, hub_error
from .metric_weights import check_metric_weights, download_metric_weights
from .plan import DownloadReport, PlannedFile, plan_weights
from .records import STATE_DIR, Records
from .settings import (DEFAULT_ENDPOINT, MA_REPO, MOTION_MODULE_REPO, POSE_MODELS, POSE_REPO, SD_REPO, VAE_REPO,
                       VARIANTS, DownloadSettings, HubAccess, default_sources, parse_revisions)
from .sizes import human
from .source import Source
from .transfer import Observer

__all__ = [
    "DEFAULT_ENDPOINT",
    "MA_REPO",
    "POSE_MODELS",
    "POSE_REPO",
    "SD_REPO",
    "STATE_DIR",
    "VAE_REPO",
    "VARIANTS",
    "DownloadReport",
    "DownloadSettings",
    "FileFailed",
    "HubAccess",
    "Observer",
    "PlannedFile",
    "Records",
    "Source",
    "check_directory",
    "check_metric_weights",
    "check_pose_model",
    "default_sources",
    "download_metric_weights",
    "download_weights",
    "human",
    "hub_error",
    "parse_revisions",
    "plan_weights",
    "pose_model_path",
]
