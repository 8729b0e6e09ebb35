"""Several people in a render (people.py): split without the model, followed across frames, paired, and each
moved by its own transform; checked on label maps whose people and transforms are known."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from magicanimate_cli.demo.inputs import _pose, render_labels
from magicanimate_cli.motion.align import FrameMap, Similarity, box_iou, measure, person_box
from magicanimate_cli.motion.fit import Box
from magicanimate_cli.motion.palette import BACKGROUND, colourise
from magicanimate_cli.motion.people import (PeopleAlignment, components, count_runs, fit_pairs, frame_people,
                                            pair_people, parse_pairs, split_people, track_frames)

FRAME = 256


def paint(canvas: np.ndarray, side: int, left: int, top: int, phase: float = 0.0) -> np.ndarray:
    """The demo figure drawn in a side×side box at (left, top) over `canvas` (body pixels only)."""
    body = render_labels(_pose(phase, 0.03, 0.8), side, side)
    region = canvas[top:top + side, left:left + side]
    np.copyto(region, body[:region.shape[0], :region.shape[1]], where=body[:region.shape[0], :region.shape[1]] > 0)
    return canvas


def scene(*people: tuple[int, int, int]) -> np.ndarray:
    canvas = np.zeros((FRAME, FRAME), np.uint8)
    for side, left, top in people:
        paint(canvas, side, left, top)
    return canvas


def test_connected_regions_are_those_scipy_finds_with_eight_neighbours():
    rng = np.random.default_rng(3)
    for _ in range(10):
        mask = rng.random((40, 50)) < 0.45
        ids, count = components(mask)
        reference, expected = ndimage.label(mask, structure=np.ones((3, 3)))
        assert count == expected
        assert len(set(zip(ids[mask].tolist(), reference[mask].tolist()))) == count  # the same partition
        assert (ids[~mask] == 0).all()


def test_two_figures_are_two_people_numbered_left_to_right():
    labels = scene((120, 140, 40), (90, 20, 100))
    people = split_people(labels)
    assert len(people) == 2
    assert people.boxes[0].left < people.boxes[1].left
    assert box_iou(people.boxes[0], person_box(scene((90, 20, 100)))) == 1.0
    assert ((people.ids > 0) == (labels > 0)).all()


def test_a_hand_cut_off_by_a_small_gap_or_a_lone_foot_far_away_stays_with_its_body():
    labels = scene((120, 60, 40))
    hand = person_box(labels == 3)
    labels[hand.top:hand.bottom, hand.left - 2:hand.left + 1] = 0  # a 3-pixel cut across the wrist
    labels[240:246, 200:212] = 5  # a foot alone in a corner
    people = split_people(labels)
    assert len(people) == 1 and people.ids[243, 205] == 1 and people.ids[hand.top + 2, hand.right - 2] == 1


def test_pairs_go_left_to_right_and_unequal_counts_pair_the_nearest_places():
    assert pair_people([0.2, 0.7], [0.4, 0.9]) == [(0, 0), (1, 1)]
    assert pair_people([0.1, 0.5, 0.9], [0.45, 0.95]) == [(1, 0), (2, 1)]
    assert pair_people([0.3], [0.05, 0.35, 0.8]) == [(0, 1)]
    assert pair_people([0.2, 0.7], [0.4, 0.9], [(0, 1), (1, 0)]) == [(0, 1), (1, 0)]
    assert parse_pairs("1:2, 2:1") == [(0, 1), (1, 0)]
    for bad in ("1-2", "0:1", "1:1,1:2"):
        with pytest.raises(ValueError):
            parse_pairs(bad)


def known_duet() -> tuple[np.ndarray, np.ndarray, list[Similarity]]:
    """A motion with two people and a reference with two, each reference person the motion person at the same
    place from the left moved by a known similarity (pixel-centre units, as `true_transform` in test_align)."""
    motion_people = [(100, 10, 60), (140, 120, 30)]  # (side, left, top)
    reference_people = [(150, 5, 90), (70, 170, 20)]
    truths = [Similarity(s2 / s1, l2 - 0.5 + (0.5 - l1) * s2 / s1, t2 - 0.5 + (0.5 - t1) * s2 / s1)
              for (s1, l1, t1), (s2, l2, t2) in zip(motion_people, reference_people)]
    return scene(*motion_people), scene(*reference_people), truths


def test_each_pair_gets_its_own_similarity_and_each_moved_person_covers_its_partner():
    motion, reference, truths = known_duet()
    ref_people, mot_people = split_people(reference), split_people(motion)
    refs = [measure(np.where(ref_people.mask(i), reference, 0)) for i in range(2)]
    mots = [measure(np.where(mot_people.mask(i), motion, 0)) for i in range(2)]
    paired = fit_pairs(refs, mots, pair_people([m.extent.cx for m in mots], [r.extent.cx for r in refs]))
    for fit, truth in zip(paired.fits, truths):
        assert abs(fit.transform.scale / truth.scale - 1) < 0.01
    alignment = PeopleAlignment(paired.transforms, paired.order, mot_people.boxes, 3)
    moved = next(alignment.moving([colourise(motion)], BACKGROUND))
    after = frame_people(moved)
    assert len(after) == 2
    for box, partner in zip(sorted(after.boxes, key=lambda b: b.left), ref_people.boxes):
        assert box_iou(box, partner) >= 0.9
    assert paired.order == (1, 0)  # the person moved lower (its feet nearer the camera) is drawn last, on top


def test_swapping_the_reference_people_swaps_the_pairing():
    motion, reference, _ = known_duet()
    swapped = scene((70, 15, 20), (150, 100, 90))  # the same two reference people, having changed places
    mots = [measure(np.where(split_people(motion).mask(i), motion, 0)) for i in range(2)]
    for picture in (reference, swapped):
        people = split_people(picture)
        refs = [measure(np.where(people.mask(i), picture, 0)) for i in range(2)]
        paired = fit_pairs(refs, mots, pair_people([m.extent.cx for m in mots], [r.extent.cx for r in refs]))
        moved = frame_people(next(PeopleAlignment(paired.transforms, paired.order, split_people(motion).boxes, 3)
                                  .moving([colourise(motion)], BACKGROUND)))
        left = min(moved.boxes, key=lambda b: b.left)
        assert box_iou(left, people.boxes[0]) >= 0.9  # the left dancer lands on whoever stands left


def test_an_unpaired_person_follows_its_nearest_paired_neighbour():
    motion, reference, truths = known_duet()
    mots = [measure(np.where(split_people(motion).mask(i), motion, 0)) for i in range(2)]
    alone = measure(np.where(split_people(reference).mask(1), reference, 0))
    paired = fit_pairs([alone], mots, pair_people([0.2, 0.7], [0.9]))
    assert paired.pairs == ((1, 0),) and paired.fits[0] is None and paired.follows == (1, 1)
    assert abs(paired.transforms[0].scale / truths[1].scale - 1) < 0.01


def test_people_keep_their_identity_when_they_pass_each_other():
    frames = []
    for step in range(8):  # one walks right along the top, the other left along the bottom: they change order
        frames.append(split_people(scene((60, 20 + 20 * step, 10), (60, 170 - 20 * step, 150))).boxes)
    owners = track_frames(frames, 0)
    top_person = [owner[0] if frame[0].top < frame[1].top else owner[1] for frame, owner in zip(frames, owners)]
    assert len(set(top_person)) == 1 and frames[0][0].top < frames[0][1].top and frames[-1][0].top > frames[-1][1].top


def test_measured_people_map_into_the_working_frame():
    labels = scene((100, 40, 40))
    half = measure(labels, FrameMap.onto(FRAME, FRAME, Box(0, 0, FRAME // 2, FRAME // 2)))
    whole = measure(labels)
    assert half.extent.height == pytest.approx(whole.extent.height / 2)
    assert half.anchors[2].cx == pytest.approx((whole.anchors[2].cx + 0.5) / 2 - 0.5)


def test_people_per_frame_are_recorded_as_runs():
    assert count_runs([2, 2, 1, 1, 1, 2]) == [[0, 1, 2], [2, 4, 1], [5, 5, 2]]
    assert count_runs([]) == []
