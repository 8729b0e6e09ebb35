"""The joint-training draw and the data order: a pure function of (seed, epoch, index), with the paper's shares."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from magicanimate_cli.train.sampling import CLIP, FRAME, IMAGE, DataIndex, Mix, batches_per_epoch, plan_step

DATA = DataIndex(videos=(("a", 12), ("b", 9), ("c", 30)), images=("p0", "p1"))
DRAWS = 4000


def _shares(mix: Mix, draws: int = DRAWS) -> Counter:
    return Counter(plan_step(s, 7, DATA, mix, 1, 4, 2).branch for s in range(draws))


def _within_binomial(count: int, n: int, p: float, sigmas: float = 5.0) -> bool:
    """|count - np| within `sigmas` binomial standard deviations (a false alarm about once in 3.5 million)."""
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p)) + 1e-9


@pytest.mark.parametrize("tau0", [0.0, 0.25, 0.7])
def test_stage1_image_share_is_tau0(tau0):
    shares = _shares(Mix(1, image_prob=tau0))
    assert set(shares) <= {IMAGE, FRAME}
    assert _within_binomial(shares[IMAGE], DRAWS, tau0)


@pytest.mark.parametrize("tau1,tau2", [(0.1, 0.3), (0.0, 0.5), (0.3, 0.3)])
def test_stage2_branch_shares_are_tau1_and_tau2_minus_tau1(tau1, tau2):
    shares = _shares(Mix(2, tau1=tau1, tau2=tau2))
    assert _within_binomial(shares[IMAGE], DRAWS, tau1)
    assert _within_binomial(shares[FRAME], DRAWS, tau2 - tau1)
    assert _within_binomial(shares[CLIP], DRAWS, 1 - tau2)


def test_a_plan_depends_only_on_seed_and_step():
    mix = Mix(2, tau1=0.2, tau2=0.5)
    forward = [plan_step(s, 3, DATA, mix, 2, 4, 2) for s in range(50)]
    backward = [plan_step(s, 3, DATA, mix, 2, 4, 2) for s in reversed(range(50))][::-1]
    assert forward == backward
    assert forward != [plan_step(s, 4, DATA, mix, 2, 4, 2) for s in range(50)]


def test_each_epoch_visits_every_video_once_in_a_new_order():
    mix = Mix(1)
    per_epoch = batches_per_epoch(len(DATA.videos), 1)
    orders = [[plan_step(e * per_epoch + i, 5, DATA, mix, 1, 1, 1).samples[0].name for i in range(per_epoch)]
              for e in range(6)]
    assert all(sorted(order) == ["a", "b", "c"] for order in orders)
    assert len({tuple(o) for o in orders}) > 1


def test_samples_respect_the_branch_contract():
    mix = Mix(2, tau1=0.2, tau2=0.5)
    counts = dict(DATA.videos)
    for step in range(300):
        plan = plan_step(step, 1, DATA, mix, 2, 4, 2)
        for sample in plan.samples:
            if plan.branch == IMAGE:
                assert sample.kind == "image" and sample.name in DATA.images
            elif plan.branch == FRAME:
                assert len(sample.frames) == 1 and sample.reference != sample.frames[0]
                assert 0 <= sample.reference < counts[sample.name]
            else:
                assert len(sample.frames) == 4 and all(b - a == 2 for a, b in zip(sample.frames, sample.frames[1:]))
                assert sample.frames[-1] < counts[sample.name]
