"""Specification of fitting motion and reference to the working shape, and restoring results to the motion's shape."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from magicanimate_cli.motion.fit import Box, fit_motion_frame, fit_reference, plan_fit, restore, working_shape
from magicanimate_cli.motion.palette import BACKGROUND, PART_COLOURS, PARTS, colourise
from magicanimate_cli.runtime.errors import SettingsError

LANDSCAPE = (160, 90)
PORTRAIT = (90, 160)


def gradient(width: int, height: int) -> np.ndarray:
    """A smooth picture (so resizing round trips are close) with distinct corners."""
    ys, xs = np.mgrid[0:height, 0:width]
    return np.stack(
        [xs * 255 // max(1, width - 1), ys * 255 // max(1, height - 1), np.full_like(xs, 128)], axis=-1
    ).astype(np.uint8)


def aspect(width: int, height: int) -> Fraction:
    return Fraction(width, height)


# --------------------------------------------------------------------------- working shape


def test_working_shape_defaults_to_the_released_512_square() -> None:
    assert working_shape(*LANDSCAPE) == (512, 512)
    assert working_shape(*PORTRAIT, size=256) == (256, 256)


def test_working_shape_takes_width_and_height_directly() -> None:
    assert working_shape(*LANDSCAPE, width=640, height=384) == (640, 384)


def test_working_shape_derives_a_missing_side_from_the_motion_aspect() -> None:
    assert working_shape(1920, 1080, width=512) == (512, 288)
    assert working_shape(1080, 1920, height=512) == (288, 512)


@pytest.mark.parametrize("settings", [{"size": 500}, {"width": 516, "height": 512}, {"height": 0}, {"size": -8}])
def test_working_shape_rejects_sizes_that_are_not_positive_multiples_of_8(settings: dict[str, int]) -> None:
    with pytest.raises(SettingsError, match="multiple of 8"):
        working_shape(*LANDSCAPE, **settings)


# --------------------------------------------------------------------------- plans


def test_pad_plan_letterboxes_a_landscape_source() -> None:
    fit = plan_fit(*LANDSCAPE, 64, 64, "pad")
    assert fit.source_box == Box(0, 0, 160, 90)
    assert fit.working_box == Box(0, 14, 64, 36)  # 64 * 90/160 = 36 rows, centred


def test_pad_plan_pillarboxes_a_portrait_source() -> None:
    fit = plan_fit(*PORTRAIT, 64, 64, "pad")
    assert fit.working_box == Box(14, 0, 36, 64)


def test_crop_plan_cuts_the_centre_to_the_working_aspect() -> None:
    assert plan_fit(*LANDSCAPE, 64, 64, "crop").source_box == Box(35, 0, 90, 90)
    assert plan_fit(*PORTRAIT, 64, 64, "crop").source_box == Box(0, 35, 90, 90)
    assert plan_fit(*LANDSCAPE, 64, 32, "crop").working_box == Box(0, 0, 64, 32)


def test_stretch_plan_uses_everything_everywhere() -> None:
    fit = plan_fit(*PORTRAIT, 64, 64, "stretch")
    assert (fit.source_box, fit.working_box) == (Box(0, 0, 90, 160), Box(0, 0, 64, 64))


def test_plan_rejects_unknown_modes_and_working_sizes_off_the_8_grid() -> None:
    with pytest.raises(SettingsError, match="pad, crop, stretch"):
        plan_fit(*LANDSCAPE, 64, 64, "zoom")
    with pytest.raises(SettingsError, match="multiple of 8"):
        plan_fit(*LANDSCAPE, 60, 64, "pad")


# --------------------------------------------------------------------------- motion frames


@pytest.mark.parametrize("size", [LANDSCAPE, PORTRAIT])
@pytest.mark.parametrize("background", [None, (65, 0, 81)], ids=["default", "the clip's own"])
def test_pad_mode_letterboxes_motion_with_its_background_colour_never_black(size, background) -> None:
    frame = np.full((size[1], size[0], 3), 200, dtype=np.uint8)
    fit = plan_fit(*size, 64, 64, "pad") if background is None else plan_fit(*size, 64, 64, "pad", background)
    work = fit_motion_frame(frame, fit)
    assert work.shape == (64, 64, 3)
    inside = np.zeros((64, 64), dtype=bool)
    inside[fit.working_box.slices()] = True
    assert np.all(work[inside] == 200)
    expected = BACKGROUND if background is None else background
    assert np.all(work[~inside] == expected) and expected != (0, 0, 0)
    assert fit.to_dict()["background"] == expected  # the sidecar's fit record names it


def test_motion_resizing_only_copies_colours_that_were_in_the_render() -> None:
    rng = np.random.default_rng(0)
    frame = colourise(rng.integers(0, PARTS + 1, size=(90, 160)))
    work = fit_motion_frame(frame, plan_fit(*LANDSCAPE, 64, 64, "stretch"))
    assert {tuple(c) for c in work.reshape(-1, 3)} <= {tuple(c) for c in PART_COLOURS}


def test_motion_resizing_can_follow_the_official_bicubic_filter() -> None:
    frame = np.zeros((90, 160, 3), dtype=np.uint8)
    frame[:, 80:] = 255
    work = fit_motion_frame(frame, plan_fit(*LANDSCAPE, 64, 64, "stretch"), resample="bicubic")
    assert len(np.unique(work)) > 2  # interpolated edge colours appear


def test_crop_mode_takes_the_centre_of_the_motion() -> None:
    frame = np.zeros((90, 160, 3), dtype=np.uint8)
    frame[:, 35:125] = 255  # exactly the centre square
    work = fit_motion_frame(frame, plan_fit(*LANDSCAPE, 64, 64, "crop"))
    assert np.all(work == 255)


def test_unknown_resampling_filter_raises_settings_error() -> None:
    with pytest.raises(SettingsError, match="resampling"):
        fit_motion_frame(gradient(*LANDSCAPE), plan_fit(*LANDSCAPE, 64, 64, "pad"), resample="sinc")


# --------------------------------------------------------------------------- reference image


def test_pad_mode_extends_the_reference_with_its_edge_pixels() -> None:
    image = gradient(*LANDSCAPE)
    work = fit_reference(image, 64, 64, "pad")
    box = plan_fit(*LANDSCAPE, 64, 64, "pad").working_box
    assert work.shape == (64, 64, 3)
    assert np.array_equal(work[: box.top], np.repeat(work[box.top : box.top + 1], box.top, axis=0))
    assert np.array_equal(work[box.bottom :], np.repeat(work[box.bottom - 1 : box.bottom], 64 - box.bottom, axis=0))
    assert work[0].max() > 0  # picture colours, not black bars


def test_crop_mode_crops_the_reference_and_stretch_mode_stretches_it() -> None:
    image = np.zeros((160, 90, 3), dtype=np.uint8)
    image[35:125] = 255  # the centre square of a portrait picture
    assert np.all(fit_reference(image, 32, 32, "crop") == 255)
    stretched = fit_reference(image, 32, 32, "stretch")
    assert stretched.shape == (32, 32, 3) and stretched[0].max() == 0 and stretched[16].min() == 255


def test_reference_of_working_size_passes_through_unchanged() -> None:
    image = gradient(64, 64)
    for mode in ("pad", "crop", "stretch"):
        assert np.array_equal(fit_reference(image, 64, 64, mode), image)


# --------------------------------------------------------------------------- restoring results


@pytest.mark.parametrize("size", [LANDSCAPE, PORTRAIT, (161, 91), (45, 127)])
@pytest.mark.parametrize("mode", ["pad", "stretch"])
def test_restore_returns_the_motion_size_and_aspect(size: tuple[int, int], mode: str) -> None:
    fit = plan_fit(*size, 64, 64, mode)
    result = restore(np.zeros((64, 64, 3), dtype=np.uint8), fit)
    assert (result.shape[1], result.shape[0]) == size
    assert aspect(result.shape[1], result.shape[0]) == aspect(*size)


@pytest.mark.parametrize("size", [LANDSCAPE, PORTRAIT, (161, 91)])
def test_pad_mode_working_box_keeps_the_motion_aspect_within_a_pixel(size: tuple[int, int]) -> None:
    box = plan_fit(*size, 64, 64, "pad").working_box
    exact_other_side = box.width * size[1] / size[0] if size[0] >= size[1] else box.height * size[0] / size[1]
    rounded_side = box.height if size[0] >= size[1] else box.width
    assert abs(rounded_side - exact_other_side) <= 1


def test_pad_restore_removes_the_letterbox() -> None:
    source = gradient(*LANDSCAPE)
    fit = plan_fit(*LANDSCAPE, 64, 64, "pad")
    work = fit_motion_frame(source, fit, resample="bicubic")
    restored = restore(work, fit)
    assert restored.shape == source.shape
    assert np.abs(restored.astype(int) - source).mean() < 3  # no black bars came back
    assert restored[0].mean() > 40 and restored[-1].mean() > 40


@pytest.mark.parametrize("size", [LANDSCAPE, PORTRAIT])
def test_crop_restore_gives_the_cropped_region_at_source_resolution(size: tuple[int, int]) -> None:
    fit = plan_fit(*size, 64, 64, "crop")
    result = restore(np.full((64, 64, 3), 77, dtype=np.uint8), fit)
    assert (result.shape[1], result.shape[0]) == fit.output_size == (90, 90)


def test_crop_restore_full_frame_places_the_result_where_the_crop_was() -> None:
    fit = plan_fit(*LANDSCAPE, 64, 64, "crop")
    result = restore(np.full((64, 64, 3), 77, dtype=np.uint8), fit, full_frame=True)
    assert result.shape == (90, 160, 3)
    assert np.all(result[:, 35:125] == 77)
    assert np.all(result[:, :35] == 0) and np.all(result[:, 125:] == 0)


def test_restore_accepts_batches_of_float_frames() -> None:
    fit = plan_fit(*PORTRAIT, 64, 64, "stretch")
    frames = np.full((3, 64, 64, 3), 0.5, dtype=np.float32)
    result = restore(frames, fit)
    assert result.shape == (3, 160, 90, 3) and result.dtype == np.uint8
    assert np.all(result == 128)


def test_restore_rejects_frames_of_the_wrong_working_size() -> None:
    with pytest.raises(ValueError, match="expected"):
        restore(np.zeros((32, 32, 3), dtype=np.uint8), plan_fit(*LANDSCAPE, 64, 64, "pad"))
