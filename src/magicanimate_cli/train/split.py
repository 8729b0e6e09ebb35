"""--val-split F: a share of DATA's videos and images held out of training, chosen by a hash of their names.

A name is held out when its SHA-256 read as a fraction of 2^64 falls below F: the choice depends on the name alone
(not on the seed, the order of files or what else DATA holds), so adding files never moves an old one between the
sets, and the same DATA with the same F is always split the same way. The held-out names are recorded in the
run's config.json; they are never trained on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..runtime.errors import SettingsError
from .batches import FrameSource
from .sampling import DataIndex
from .settings import TrainSettings


@dataclass(frozen=True)
class Split:
    train: DataIndex
    held_out: DataIndex


def held_out_name(name: str, share: float) -> bool:
    """Whether `name` falls in the held-out share (a deterministic hash, not a draw)."""
    value = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big") / 2.0 ** 64
    return value < share


def split_data(data: DataIndex, share: float, folder: Path) -> Split:
    """Training and held-out parts of DATA; either left without videos is an error naming the share."""
    if not 0.0 < share < 1.0:
        raise SettingsError(f"--val-split {share}: must be within (0, 1)")
    train_videos = tuple(v for v in data.videos if not held_out_name(f"videos/{v[0]}", share))
    held_videos = tuple(v for v in data.videos if held_out_name(f"videos/{v[0]}", share))
    train_images = tuple(n for n in data.images if not held_out_name(f"images/{n}", share))
    held_images = tuple(n for n in data.images if held_out_name(f"images/{n}", share))
    if not train_videos:
        raise SettingsError(f"{folder}: --val-split {share} holds out all {len(data.videos)} videos; lower it")
    if not held_videos and not held_images:
        raise SettingsError(f"{folder}: --val-split {share} holds out none of {len(data.videos)} videos and "
                            f"{len(data.images)} images; raise it or pass --val-data DIR")
    return Split(DataIndex(train_videos, train_images), DataIndex(held_videos, held_images))


def split_record(split: Split) -> dict:
    """What config.json records of the split: the held-out names."""
    return {"videos": [name for name, _ in split.held_out.videos], "images": list(split.held_out.images)}


@dataclass(frozen=True)
class HeldOutData:
    """The held-out set's data: where its frames come from, what it holds, and how config.json records it."""

    source: FrameSource
    index: DataIndex
    record: dict


def held_out_data(settings: TrainSettings, train: DataIndex, source: FrameSource,
                  other: HeldOutData | None) -> tuple[DataIndex, HeldOutData | None]:
    """What the run trains on and what it measures: --val-data's folder (`other`, checked by the caller), or
    --val-split's share of DATA taken out of training, or no held-out set."""
    if other is not None:
        return train, other
    if not settings.val_split:
        return train, None
    split = split_data(train, settings.val_split, settings.data)
    return split.train, HeldOutData(source, split.held_out, {"split": settings.val_split, **split_record(split)})
