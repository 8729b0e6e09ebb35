"""Shared fixtures: the tiny official-layout bundle and the official parity cases, loaded once per session."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
TINY_BUNDLE = DATA / "tiny-bundle"
PARITY = DATA / "parity"


@dataclass
class ParityCase:
    name: str
    folder: Path
    settings: dict

    def array(self, name: str) -> np.ndarray:
        return np.load(self.folder / f"{name}.npy")

    @property
    def frames(self) -> int:
        return int(self.settings["num_frames"])


def load_case(name: str) -> ParityCase:
    folder = PARITY / "cases" / name
    return ParityCase(name, folder, json.loads((folder / "case.json").read_text()))


@pytest.fixture(scope="session")
def tiny_bundle() -> Path:
    return TINY_BUNDLE


@pytest.fixture(scope="session")
def animator():
    from magicanimate_cli import Animator

    return Animator.from_pretrained(TINY_BUNDLE)
