"""Pixel metrics: L1, PSNR and SSIM follow DisCo's definitions and agree with scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from test_eval_support import random_frames, structured_frames

from magicanimate_cli.evaluation import pixels
from magicanimate_cli.evaluation.resize import resize_to


def _pairs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Random noise, and image-like frames against a noisier, shifted copy of themselves."""
    truth = structured_frames(3, 37, 52, seed=1)
    noisy = np.clip(truth.astype(int) + np.random.default_rng(2).integers(-25, 26, truth.shape), 0, 255)
    return [
        ("random", random_frames(3, 40, 48, seed=3), random_frames(3, 40, 48, seed=4)),
        ("structured", noisy.astype(np.uint8), truth),
        ("shifted", np.roll(truth, 2, axis=2), truth),
    ]


@pytest.mark.parametrize(("kind", "generated", "truth"), _pairs(), ids=lambda v: v if isinstance(v, str) else "")
def test_psnr_agrees_with_scikit_image(kind: str, generated: np.ndarray, truth: np.ndarray) -> None:
    expected = [peak_signal_noise_ratio(t, g, data_range=255) for g, t in zip(generated, truth)]
    np.testing.assert_allclose(pixels.psnr(generated, truth), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("kind", "generated", "truth"), _pairs(), ids=lambda v: v if isinstance(v, str) else "")
def test_ssim_agrees_with_scikit_image_defaults_on_greyscale_uint8(
    kind: str, generated: np.ndarray, truth: np.ndarray
) -> None:
    expected = [
        structural_similarity(g, t)
        for g, t in zip(pixels.to_grey(generated), pixels.to_grey(truth))
    ]
    np.testing.assert_allclose(pixels.ssim_grey(generated, truth), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("kind", "generated", "truth"), _pairs(), ids=lambda v: v if isinstance(v, str) else "")
def test_l1_is_mean_absolute_difference_divided_by_pixel_count(
    kind: str, generated: np.ndarray, truth: np.ndarray
) -> None:
    height, width = truth.shape[1:3]
    expected = [np.mean(np.abs(g.astype(float) - t.astype(float))) / (height * width) for g, t in zip(generated, truth)]
    np.testing.assert_allclose(pixels.l1_disco(generated, truth), expected, rtol=1e-12, atol=0)


def test_l1_shrinks_with_resolution_as_in_disco() -> None:
    truth = np.zeros((1, 16, 16, 3), np.uint8)
    small = pixels.l1_disco(truth + 10, truth)[0]
    large = pixels.l1_disco(np.repeat(np.repeat(truth + 10, 2, 1), 2, 2), np.repeat(np.repeat(truth, 2, 1), 2, 2))[0]
    assert small == pytest.approx(10 / 256)
    assert large == pytest.approx(small / 4)


def test_identical_frames_give_zero_l1_infinite_psnr_and_unit_ssim() -> None:
    frames = structured_frames(2, 24, 24, seed=5)
    assert pixels.l1_disco(frames, frames).tolist() == [0.0, 0.0]
    assert np.isposinf(pixels.psnr(frames, frames)).all()
    np.testing.assert_allclose(pixels.ssim_grey(frames, frames), 1.0, atol=1e-12)


def test_legacy_psnr_wraps_differences_and_squares_in_uint8() -> None:
    truth = np.full((1, 8, 8, 3), 16, np.uint8)
    generated = np.zeros_like(truth)
    # 0 - 16 wraps to 240, and 240² = 57600 wraps to 0: the old code saw a perfect frame (100 dB).
    assert pixels.psnr_legacy_uint8(generated, truth)[0] == 100.0
    assert pixels.psnr(generated, truth)[0] == pytest.approx(20 * np.log10(255 / 16))
    one_off = np.full_like(truth, 17)
    assert pixels.psnr_legacy_uint8(one_off, truth)[0] == pytest.approx(pixels.psnr(one_off, truth)[0])


def test_legacy_psnr_inflates_noise_to_the_published_range() -> None:
    truth = structured_frames(2, 32, 32, seed=6)
    generated = random_frames(2, 32, 32, seed=7)
    assert pixels.psnr(generated, truth).mean() < 10
    assert 27 < pixels.psnr_legacy_uint8(generated, truth).mean() < 31


def test_grey_conversion_matches_opencv_bgr2gray_values() -> None:
    # Values produced by cv2.cvtColor(bgr, COLOR_BGR2GRAY) (OpenCV 4.x) for these RGB pixels.
    rgb = np.array([[[[227, 146, 166], [12, 145, 7], [208, 73, 4], [255, 255, 255], [0, 0, 0]]]], np.uint8)
    assert pixels.to_grey(rgb)[0, 0].tolist() == [172, 90, 106, 255, 0]
    frames = random_frames(1, 64, 64, seed=8).astype(float)
    luma = 0.299 * frames[..., 0] + 0.587 * frames[..., 1] + 0.114 * frames[..., 2]
    assert np.abs(pixels.to_grey(frames.astype(np.uint8)) - luma).max() <= 0.5 + 1e-3


def test_resize_halving_averages_each_2x2_block_rounding_half_up() -> None:
    block = np.array([[10, 11], [11, 11]], np.uint8)  # mean 10.75 -> 11
    tie = np.array([[10, 11], [10, 11]], np.uint8)  # mean 10.5 -> 11, as OpenCV rounds
    frame = np.concatenate([block, tie], axis=1)[None, :, :, None].repeat(3, axis=3)
    assert resize_to(frame, (1, 2))[0, :, :, 0].tolist() == [[11, 11]]
