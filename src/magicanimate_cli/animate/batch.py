"""Batch work lists: every reference with every motion, or chosen pairs from a CSV, split into shards."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ..media.files import IMAGE_SUFFIXES, MOTION_SUFFIXES
from ..media.reader import natural_sort_key
from ..runtime.errors import InputError, SettingsError

T = TypeVar("T")


@dataclass(frozen=True)
class WorkItem:
    reference: Path
    motion: Path
    output: Path

    @property
    def name(self) -> str:
        return f"{self.reference.name} × {self.motion.name}"


def _listing(folder: Path, suffixes: tuple[str, ...], allow_folders: bool) -> list[Path]:
    entries = []
    for entry in folder.iterdir():
        if entry.name.startswith("."):
            continue
        if entry.is_file() and entry.suffix.lower() in suffixes:
            entries.append(entry)
        elif allow_folders and entry.is_dir():
            entries.append(entry)  # a folder of frames is one motion
    return sorted(entries, key=lambda p: natural_sort_key(p.name))


def list_motions(folder: Path) -> list[Path]:
    """The motions in a folder: its videos and its sub-folders (each a folder of frames), in natural order."""
    return _listing(folder, MOTION_SUFFIXES, allow_folders=True)


def output_name(reference: Path, motion: Path, extension: str) -> str:
    suffix = "" if extension == "png" else f".{extension}"
    return f"{reference.stem}-{motion.stem if motion.is_file() else motion.name}{suffix}"


def cross_product(reference_dir: Path, motion_dir: Path, out_dir: Path, extension: str) -> list[WorkItem]:
    references = _listing(reference_dir, IMAGE_SUFFIXES, allow_folders=False)
    motions = list_motions(motion_dir)
    if not references:
        raise InputError(f"{reference_dir}: no reference images (.png, .jpg, .jpeg, .webp) in this folder")
    if not motions:
        raise InputError(f"{motion_dir}: no motion videos or frame folders in this folder")
    return [WorkItem(r, m, out_dir / output_name(r, m, extension)) for r in references for m in motions]


def read_pairs(csv_path: Path, out_dir: Path, extension: str) -> list[WorkItem]:
    """Rows `reference,motion[,output]`; relative paths are taken from the CSV's folder; a header is optional."""
    if not csv_path.is_file():
        raise InputError(f"{csv_path}: pairs file not found")
    base = csv_path.parent
    items = []
    with csv_path.open(newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            row = [c.strip() for c in row]
            if not row or not any(row) or row[0].startswith("#"):
                continue
            if number == 1 and row[0].lower() == "reference":
                continue
            if len(row) < 2:
                raise InputError(f"{csv_path}: line {number} needs reference,motion[,output]")
            ref, motion = base / row[0], base / row[1]
            output = out_dir / row[2] if len(row) > 2 and row[2] else out_dir / output_name(ref, motion, extension)
            items.append(WorkItem(ref, motion, output))
    if not items:
        raise InputError(f"{csv_path}: no pairs listed")
    return items


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """`I/N` with 1 ≤ I ≤ N: the I-th of N shares (so `for i in 1 2 3 4` runs all four)."""
    if text is None:
        return None
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise SettingsError(f"--shard {text}: expected I/N, e.g. 1/4") from None
    if not 1 <= index <= count:
        raise SettingsError(f"--shard {text}: I must be between 1 and N")
    return index, count


def take_shard(items: list[T], shard: tuple[int, int] | None) -> list[T]:
    """Every N-th item starting at I−1: shares are disjoint, cover everything and stay balanced."""
    if shard is None:
        return items
    index, count = shard
    return items[index - 1 :: count]
