"""Shared pieces of the training tests: a tiny DATA folder and trainers on the tiny bundle (CPU, 128 px)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from conftest import TINY_BUNDLE
from magicanimate_cli.dataset.reader import DataFolder
from magicanimate_cli.train.loop import Trainer
from magicanimate_cli.train.model import load_parts
from magicanimate_cli.train.sampling import DataIndex
from magicanimate_cli.train.schedule import inference_schedule
from magicanimate_cli.train.settings import TrainSettings
from train_helpers import make_data

MA = TINY_BUNDLE / "MagicAnimate"
TEMPORAL = MA / "temporal_attention" / "temporal_attention.ckpt"
SIZE = 128


def write_data(root: Path) -> Path:
    """Two videos (8 and 10 frames) and two images, 128 px."""
    return make_data(root, {"walk": 8, "turn": 10}, images=2, size=SIZE)


def settings(data: Path, run: Path, stage: int = 1, **overrides) -> TrainSettings:
    base = TrainSettings(data=data, run=run, stage=stage, weights=TINY_BUNDLE, steps=4, batch_size=1, width=SIZE,
                         height=SIZE, frames=2, lr=1e-3, seed=3, checkpoint_every=2,
                         image_prob=0.5 if stage == 1 else 0.0, joint=(0.0, 0.0) if stage == 1 else (0.25, 0.5),
                         start_from=MA if stage == 2 else None)
    return replace(base, **overrides)


def make_trainer(s: TrainSettings) -> Trainer:
    folder = DataFolder(s.data)
    contents = folder.check()
    parts = load_parts(s.stage, s.weights, s.start_from, s.motion_module, seed=s.seed)
    return Trainer(s, parts, DataIndex(contents.videos, contents.images), folder, inference_schedule())


class OneThread:
    """torch on one thread for a test module: the suite shares two cores with other work, where two threads per
    process oversubscribe them (a step measured 20 s with two threads under load, 0.6 s with one)."""

    def __enter__(self):
        self.previous = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.previous)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Every training test module that imports this runs torch on one thread (see OneThread)."""
    with OneThread():
        yield


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A small DATA folder of videos, renders and images, written once per test module."""
    return write_data(tmp_path_factory.mktemp("train-data"))
