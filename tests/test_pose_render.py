"""The pose renderer: boxes to pixels as the exporter's visualiser does, labels per person, drawing order."""

from __future__ import annotations

import numpy as np
import torch

from magicanimate_cli.densepose.model import Detections
from magicanimate_cli.densepose.render import (drawing_order, person_labels, pixel_boxes, render_frame,
                                                      render_labels)
from magicanimate_cli.motion.palette import BACKGROUND, PART_COLOURS


def one_label(label: int, size: int = 4, body: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(coarse, fine) logits of a person that is `label` wherever `body` (default: everywhere) is set."""
    body = torch.ones(size, size, dtype=torch.bool) if body is None else body
    coarse = torch.stack([torch.zeros(size, size), torch.where(body, 3.0, -3.0)])
    fine = torch.zeros(25, size, size)
    fine[label] = 3.0
    return coarse, fine


def detections(boxes, scores, people) -> Detections:
    coarse, fine = zip(*people)
    return Detections(torch.tensor(boxes, dtype=torch.float32),
                      None if scores is None else torch.tensor(scores), torch.stack(coarse), torch.stack(fine))


def test_box_corners_and_sizes_are_truncated_toward_zero_like_the_exporter():
    # x, y = int(x0), int(y0); w, h = int(x1 - x0), int(y1 - y0) in float32 (visualizer.py: box_xywh.long())
    assert pixel_boxes(torch.tensor([[10.7, 5.2, 30.9, 20.99]]), 64, 48) == [(10, 5, 20, 15)]
    assert pixel_boxes(torch.tensor([[0.5, 0.5, 2.4, 2.6]]), 64, 48) == [(0, 0, 1, 2)]


def test_boxes_are_clipped_to_the_frame_before_truncation_like_detectron2():
    boxes = torch.tensor([[-5.5, -3.0, 20.4, 12.6], [50.2, 40.7, 80.0, 60.0]])
    assert pixel_boxes(boxes, 64, 48) == [(0, 0, 20, 12), (50, 40, 13, 7)]


def test_a_box_clipped_at_the_edge_gets_the_whole_segmentation_resampled_to_its_visible_part():
    body = torch.zeros(4, 4, dtype=torch.bool)
    body[:, :2] = True  # the left half of the map is body
    found = detections([[-8.0, 0.0, 8.0, 4.0]], [0.9], [one_label(7, body=body)])
    labels, count = render_labels(found, 16, 4, 0.8, "all")
    assert count == 1
    # the box is clipped to x 0..8 first, and its 4-column map is stretched over those 8 columns
    assert (labels[:, :4] == 7).all() and (labels[:, 4:8] == 0).all() and (labels[:, 8:] == 0).all()


def test_a_box_thinner_than_a_pixel_draws_nothing():
    found = detections([[3.2, 1.0, 3.9, 9.0]], [0.99], [one_label(3)])
    labels, count = render_labels(found, 16, 16, 0.8, "all")
    assert count == 0 and not labels.any()


def test_labels_are_argmax_fine_where_argmax_coarse_is_the_person():
    coarse = torch.zeros(2, 2, 2)
    coarse[1] = torch.tensor([[1.0, -1.0], [1.0, 1.0]])
    fine = torch.zeros(25, 2, 2)
    fine[3, 0, :] = 2.0
    fine[9, 1, :] = 2.0
    labels = person_labels(coarse, fine, 2, 2)
    np.testing.assert_array_equal(labels, [[3, 0], [9, 9]])


def test_resampling_is_bilinear_with_half_pixel_centres():
    # one map column of label 4 and one of label 6, stretched to 4 columns: the boundary falls mid-box
    coarse = torch.stack([torch.zeros(1, 2), torch.ones(1, 2)])
    fine = torch.zeros(25, 1, 2)
    fine[4, 0, 0] = fine[6, 0, 1] = 1.0
    assert person_labels(coarse, fine, 4, 1).tolist() == [[4, 4, 6, 6]]


def test_the_most_confident_person_is_drawn_last_so_it_is_on_top():
    boxes = [[0, 0, 8, 8], [4, 4, 12, 12], [2, 2, 10, 10]]
    found = detections(boxes, [0.85, 0.99, 0.9], [one_label(1), one_label(2), one_label(3)])
    assert drawing_order(found, pixel_boxes(found.boxes, 16, 16), 0.8, "all") == [0, 2, 1]
    labels, _ = render_labels(found, 16, 16, 0.8, "all")
    assert labels[5, 5] == 2 and labels[3, 3] == 3 and labels[1, 1] == 1


def test_a_persons_background_shows_who_is_underneath():
    body = torch.zeros(4, 4, dtype=torch.bool)
    body[:, 2:] = True  # only the right half of the top person is body
    found = detections([[0, 0, 8, 8], [0, 0, 8, 8]], [0.9, 0.95], [one_label(5), one_label(6, body=body)])
    labels, _ = render_labels(found, 8, 8, 0.8, "all")
    assert (labels[:, :4] == 5).all() and (labels[:, 4:] == 6).all()


def test_min_score_keeps_only_people_above_it():
    found = detections([[0, 0, 4, 4], [4, 0, 8, 4]], [0.8, 0.81], [one_label(1), one_label(2)])
    labels, count = render_labels(found, 8, 4, 0.8, "all")
    assert count == 1 and set(np.unique(labels)) == {0, 2}


def test_largest_keeps_the_person_with_the_biggest_box():
    found = detections([[0, 0, 4, 4], [4, 0, 16, 8], [0, 4, 2, 6]], [0.99, 0.85, 0.95],
                       [one_label(1), one_label(2), one_label(3)])
    labels, count = render_labels(found, 16, 8, 0.8, "largest")
    assert count == 1 and set(np.unique(labels)) == {0, 2}


def test_without_scores_the_models_first_person_is_on_top_and_none_is_dropped():
    found = detections([[0, 0, 8, 8], [0, 0, 8, 8]], None, [one_label(8), one_label(9)])
    labels, count = render_labels(found, 8, 8, 0.99, "all")
    assert count == 2 and (labels == 8).all()


def test_no_detections_give_a_background_frame():
    empty = Detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 2, 4, 4), torch.zeros(0, 25, 4, 4))
    image, count = render_frame(empty, 6, 4, 0.8, "all")
    assert count == 0 and image.shape == (4, 6, 3) and (image == BACKGROUND).all()


def test_rendered_colours_are_the_part_colours():
    found = detections([[0, 0, 4, 4]], [0.9], [one_label(24)])
    image, _ = render_frame(found, 8, 4, 0.8, "all")
    assert (image[:, :4] == PART_COLOURS[24]).all() and (image[:, 4:] == BACKGROUND).all()
