"""Alignment geometry (align.py): label maps related by a known similarity give that similarity back."""

from __future__ import annotations

import numpy as np
import pytest

from magicanimate_cli.animate.preview import preview_frames
from magicanimate_cli.demo.inputs import _pose, render_labels
from magicanimate_cli.motion.align import (IDENTITY, Similarity, apply_similarity, box_iou, decode_labels,
                                           fit_similarity, person_box)
from magicanimate_cli.motion.palette import colourise

FRAME = 512
BASE = 256  # the motion's figure box side: body height 1 is this many pixels


def figure(side: int, left: int, top: int, frame: int = FRAME, phase: float = 0.0) -> np.ndarray:
    """The demo's figure drawn in a side×side box at (left, top) of a frame×frame label map, cut at the edges."""
    body = render_labels(_pose(phase, 0.03, 0.8), side, side)
    canvas = np.zeros((frame, frame), dtype=np.uint8)
    x0, y0 = max(left, 0), max(top, 0)
    x1, y1 = min(left + side, frame), min(top + side, frame)
    canvas[y0:y1, x0:x1] = body[y0 - top:y1 - top, x0 - left:x1 - left]
    return canvas


def true_transform(motion: tuple[int, int, int], reference: tuple[int, int, int]) -> Similarity:
    """The similarity between the two boxes' body coordinates, in pixel-centre units."""
    (s1, l1, t1), (s2, l2, t2) = motion, reference
    k = s2 / s1
    return Similarity(k, l2 - 0.5 + (0.5 - l1) * k, t2 - 0.5 + (0.5 - t1) * k)


CASES = [  # (reference side, reference offset from the motion's place as a share of the frame)
    (128, (0.3, -0.1)), (192, (-0.3, 0.2)), (256, (0.0, 0.0)), (384, (0.12, -0.25)), (512, (-0.05, 0.0)),
    (300, (-0.2, -0.3)),
]


@pytest.mark.parametrize("side,offset", CASES)
def test_a_known_scale_and_offset_is_recovered_within_2_percent_and_2_pixels(side, offset):
    motion_box = (BASE, (FRAME - BASE) // 2, (FRAME - BASE) // 2)
    left = round((FRAME - side) / 2 + offset[0] * FRAME)
    top = round((FRAME - side) / 2 + offset[1] * FRAME)
    left, top = min(max(left, -side // 8), FRAME - side + side // 8), min(max(top, 0), FRAME - side)
    truth = true_transform(motion_box, (side, left, top))
    fit = fit_similarity(figure(side, left, top), figure(*motion_box))
    assert fit.method == "parts"
    assert abs(fit.transform.scale / truth.scale - 1) < 0.02
    # the offset that matters: where the motion's body lands (its centre), in pixels
    centre = (FRAME - 1) / 2
    for got, want in ((fit.transform.dx, truth.dx), (fit.transform.dy, truth.dy)):
        assert abs((got + fit.transform.scale * centre) - (want + truth.scale * centre)) < 2


@pytest.mark.parametrize("side", [200, 400])
def test_a_reference_cut_at_the_hips_still_gives_the_scale_within_5_percent(side):
    motion_box = (BASE, 128, 100)
    hips = 0.58  # body units from the top of the box
    top = FRAME - round(hips * side)  # the photo ends at the hips
    reference = figure(side, (FRAME - side) // 2, top)
    fit = fit_similarity(reference, figure(*motion_box))
    truth = true_transform(motion_box, (side, (FRAME - side) // 2, top))
    assert abs(fit.transform.scale / truth.scale - 1) < 0.05
    # the box's height (the whole body in the motion, half of it in the photo) would have shrunk it by half
    assert person_box(reference).height < 0.7 * side


def test_without_shared_parts_the_person_boxes_decide():
    reference = np.zeros((64, 64), np.uint8)
    reference[10:50, 20:30] = 5
    motion = np.zeros((64, 64), np.uint8)
    motion[5:25, 40:45] = 17
    fit = fit_similarity(reference, motion)
    assert fit.method == "box" and fit.parts == ()
    moved = person_box(apply_similarity(motion, fit.transform))
    assert box_iou(moved, person_box(reference)) > 0.9


def test_applying_a_similarity_moves_labels_by_nearest_neighbour_and_fills_with_the_background():
    labels = figure(BASE, 128, 128)
    render = colourise(labels)
    moved = apply_similarity(render, Similarity(0.5, 300.0, -20.0), (68, 1, 84))
    colours = {tuple(c) for c in moved.reshape(-1, 3)}
    assert colours <= {tuple(c) for c in render.reshape(-1, 3)}  # no colour that was not in the render
    assert (decode_labels(moved) == apply_similarity(labels, Similarity(0.5, 300.0, -20.0))).all()
    assert tuple(moved[-1, 0]) == (68, 1, 84)
    box = person_box(decode_labels(moved))
    before = person_box(labels)
    assert abs(box.height - before.height / 2) <= 1 and abs(box.left - (300 + before.left / 2)) <= 1


def test_the_identity_leaves_a_frame_bit_for_bit():
    render = colourise(figure(BASE, 10, 30))
    assert np.array_equal(apply_similarity(render, IDENTITY), render)


def test_part_labels_read_back_from_a_render_through_coding_noise():
    labels = figure(BASE, 100, 100)
    rng = np.random.default_rng(0)
    noisy = np.clip(colourise(labels).astype(np.int16) + rng.integers(-4, 5, (FRAME, FRAME, 3)), 0, 255)
    assert np.mean(decode_labels(noisy.astype(np.uint8)) == labels) > 0.999
    assert (decode_labels(np.full((4, 4, 3), (65, 0, 81), np.uint8)) == 0).all()


def test_the_preview_shows_the_first_frame_the_quarter_points_and_the_last():
    assert preview_frames(9) == [0, 2, 4, 6, 8]
    assert preview_frames(6) == [0, 1, 2, 4, 5]
    assert preview_frames(2) == [0, 1] and preview_frames(1) == [0]
