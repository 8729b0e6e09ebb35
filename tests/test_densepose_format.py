"""The DensePose render format: OpenCV's VIRIDIS through int(I·255/24), background viridis(0)."""

from __future__ import annotations

import numpy as np
import pytest

from magicanimate_cli.densepose import BACKGROUND, PART_COLOURS, VIRIDIS, colourise, part_levels


def test_viridis_table_is_opencvs():
    cv2 = pytest.importorskip("cv2")
    grey = np.arange(256, dtype=np.uint8)[:, None]
    bgr = cv2.applyColorMap(grey, cv2.COLORMAP_VIRIDIS)[:, 0]
    np.testing.assert_array_equal(VIRIDIS, bgr[:, ::-1])


def test_background_is_viridis_zero_not_black():
    assert BACKGROUND == (68, 1, 84)
    assert tuple(PART_COLOURS[0]) == BACKGROUND


def test_part_levels_truncate_like_the_densepose_visualiser():
    assert part_levels(np.arange(25)).tolist() == [int(i * 255 / 24) for i in range(25)]
    assert part_levels(np.array([1, 23, 24])).tolist() == [10, 244, 255]


def test_the_25_part_colours_are_distinct():
    assert len({tuple(c) for c in PART_COLOURS}) == 25


def test_colourise_maps_labels_and_refuses_out_of_range():
    labels = np.array([[0, 1], [12, 24]])
    out = colourise(labels)
    assert out.dtype == np.uint8 and out.shape == (2, 2, 3)
    assert tuple(out[0, 0]) == BACKGROUND and tuple(out[1, 1]) == tuple(VIRIDIS[255])
    with pytest.raises(ValueError):
        colourise(np.array([25]))
