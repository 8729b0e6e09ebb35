"""The DensePose render format: OpenCV's VIRIDIS through int(I·255/24), background viridis(0)."""

from __future__ import annotations

import numpy as np
import pytest
from media_helpers import encode_video

from magicanimate_cli.demo.inputs import make_motion_frames, make_reference_image
from magicanimate_cli.media.reader import open_motion
from magicanimate_cli.motion.palette import (BACKGROUND, CODING_NOISE, PART_COLOURS, VIRIDIS, background_colour,
                                             border_colour, colourise, looks_like_render, part_levels)


def test_viridis_table_is_opencvs():
    import cv2  # the test extra installs opencv-python-headless
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


# ------------------------------------------------------------------------------------- recognising renders


@pytest.fixture(scope="module")
def renders(tmp_path_factory) -> dict[str, np.ndarray]:
    """A render as drawn, the same after an H.264 round trip, and pictures that are not renders."""
    folder = tmp_path_factory.mktemp("renders")
    drawn = make_motion_frames(3, 192, 128)
    decoded = next(iter(open_motion(encode_video(folder / "render.mp4", list(drawn)))))
    photo = make_reference_image(128)
    shape = np.any(drawn[0] != BACKGROUND, axis=-1)
    rng = np.random.default_rng(0)
    iuv = np.zeros_like(drawn[0])  # an older style: IUV-like colours on black, which the ControlNet never saw
    iuv[shape] = rng.integers(60, 255, size=(int(shape.sum()), 3))
    return {"drawn": drawn[0], "decoded": decoded, "photo": photo, "iuv": iuv,
            "noise": rng.integers(0, 256, size=(128, 128, 3), dtype=np.uint8)}


def test_border_colour_of_a_render_is_its_background(renders):
    assert border_colour(renders["drawn"]) == BACKGROUND == (68, 1, 84)


def test_border_colour_survives_lossy_coding_and_is_the_exact_colour_the_clip_holds(renders):
    decoded = renders["decoded"]
    colour = border_colour(decoded)
    assert colour == tuple(int(c) for c in decoded[0, 0])  # the clip's own flat background, as decoded
    assert max(abs(a - b) for a, b in zip(colour, BACKGROUND)) <= CODING_NOISE


def test_a_border_without_a_dominant_colour_falls_back_to_viridis_zero(renders):
    stripes = colourise(np.tile(np.repeat(np.array([5, 12, 20]), 4), 16)[None, :].repeat(96, axis=0))
    assert border_colour(stripes) is None and border_colour(renders["noise"]) is None
    assert background_colour(stripes) == ((68, 1, 84), False)
    assert background_colour(renders["drawn"]) == ((68, 1, 84), True)


@pytest.mark.parametrize("name, render", [("drawn", True), ("decoded", True), ("photo", False), ("noise", False),
                                          ("iuv", False)])
def test_looks_like_render_accepts_magicanimate_renders_even_compressed_and_nothing_else(renders, name, render):
    assert looks_like_render(renders[name]) is render
