"""What a `download-weights` run is asked for: which repositories, at which revisions, reached how.

Kept apart from the fetching so that the command can validate its options (a bad `--revision`, `--variant` or
`--pose-backbone`) and describe the sources before anything touches the network. The hub's address, token and
offline switch are read from the environment when a command runs, never at import.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..engine.loader import MA_DIR, MOTION_MODULE, SD_DIR, VAE_DIR
from ..densepose.model import MODEL_FILES as POSE_MODELS  # where `magicanimate pose` reads
from ..densepose.model import MODEL_FOLDER as POSE_DIR
from ..runtime.errors import SettingsError
from .selection import NEEDS, Need
from .source import Source

DEFAULT_ENDPOINT = "https://huggingface.co"
SD_REPO = "stable-diffusion-v1-5/stable-diffusion-v1-5"
VAE_REPO = "stabilityai/sd-vae-ft-mse"
MA_REPO = "zcxu-eric/MagicAnimate"
POSE_REPO = "LayerNorm/DensePose-TorchScript-with-hint-image"
MOTION_MODULE_REPO = "guoyww/animatediff"
MOTION_MODULE_DIR, MOTION_MODULE_FILE = posixpath.split(MOTION_MODULE)

VARIANTS = ("fp32", "fp16")
ANIMATION_KEYS = ("sd", "vae", "magicanimate")
SOURCE_KEYS = (*ANIMATION_KEYS, "densepose", "animatediff")
LIBRARY = "magicanimate-cli"
_TRUTHY = {"1", "true", "yes", "on"}



def default_sources() -> dict[str, Source]:
    return {
        "sd": Source("sd", SD_REPO, "main", SD_DIR),
        "vae": Source("vae", VAE_REPO, "main", VAE_DIR),
        "magicanimate": Source("magicanimate", MA_REPO, "main", MA_DIR),
        "densepose": Source("densepose", POSE_REPO, "main", POSE_DIR),
        "animatediff": Source("animatediff", MOTION_MODULE_REPO, "main", MOTION_MODULE_DIR),
    }


def parse_revisions(values: Iterable[str]) -> dict[str, str]:
    """`--revision PART=REV` values (PART one of sd, vae, magicanimate, densepose, animatediff) as a mapping."""
    out: dict[str, str] = {}
    for value in values:
        key, sep, rev = value.partition("=")
        key, rev = key.strip().lower(), rev.strip()
        if not sep or key not in SOURCE_KEYS or not rev:
            raise SettingsError(f"--revision {value}: expected PART=REVISION with PART one of {', '.join(SOURCE_KEYS)}")
        out[key] = rev
    return out


@dataclass(frozen=True)
class HubAccess:
    """How to reach the hub: read from the environment when a command runs, never at import."""

    endpoint: str = DEFAULT_ENDPOINT
    token: str | None = None
    offline: bool = False

    @classmethod
    def from_env(cls, token: str | None = None, environ: Mapping[str, str] | None = None) -> "HubAccess":
        """HF_ENDPOINT (a mirror), HF_TOKEN unless a token is given, HF_HUB_OFFLINE."""
        env = os.environ if environ is None else environ
        endpoint = (env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
        offline = (env.get("HF_HUB_OFFLINE") or env.get("TRANSFORMERS_OFFLINE") or "").strip().lower() in _TRUTHY
        return cls(endpoint=endpoint, token=token or env.get("HF_TOKEN") or None, offline=offline)


@dataclass(frozen=True)
class DownloadSettings:
    """Everything `download-weights` needs to decide what to fetch and from where."""

    root: Path
    sources: Mapping[str, Source] = field(default_factory=default_sources)
    variant: str = "fp32"
    access: HubAccess = field(default_factory=HubAccess)
    pose: str | None = None  # a key of POSE_MODELS: also fetch that DensePose model
    motion_module: bool = False  # also fetch AnimateDiff's mm_sd_v15.ckpt (a start for `train --stage 2`)

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise SettingsError(f"--variant {self.variant}: choose one of {', '.join(VARIANTS)}")
        if self.pose is not None and self.pose not in POSE_MODELS:
            raise SettingsError(f"--pose-backbone {self.pose}: choose one of {', '.join(POSE_MODELS)}")

    @property
    def keys(self) -> tuple[str, ...]:
        """The sources this run reads: the animation weights, and the pose model and motion module when asked."""
        return ANIMATION_KEYS + (("densepose",) if self.pose else ()) + (("animatediff",) if self.motion_module
                                                                         else ())

    def needs(self, key: str) -> tuple["Need", ...]:
        if key == "densepose":
            return (Need((POSE_MODELS[self.pose or "r50"],)),)
        if key == "animatediff":
            return (Need((MOTION_MODULE_FILE,)),)
        return NEEDS[key]
