"""Fréchet distance: the textbook formula with scipy's sqrtm, computed from streamed statistics."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from magicanimate_cli.evaluation.frechet import FeatureStatistics, frechet_distance, frechet_distance_of


def _direct(a: np.ndarray, b: np.ndarray) -> float:
    """||μa − μb||² + Tr(Σa + Σb − 2 sqrtm(Σa Σb)) with numpy's covariance and scipy's sqrtm."""
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    sig_a, sig_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(sig_a @ sig_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(sig_a) + np.trace(sig_b) - 2 * np.trace(covmean))


def _streamed(features: np.ndarray, batches: int) -> FeatureStatistics:
    stats = FeatureStatistics(features.shape[1])
    for chunk in np.array_split(features, batches):
        stats.add(chunk)
    return stats


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_frechet_distance_agrees_with_direct_scipy_sqrtm(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(400, 24))
    b = rng.normal(size=(350, 24)) @ rng.normal(scale=0.4, size=(24, 24)) + rng.normal(size=24)
    expected = _direct(a, b)
    assert frechet_distance_of(_streamed(a, 7), _streamed(b, 3)) == pytest.approx(expected, rel=1e-9)
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    direct = frechet_distance(mu_a, np.cov(a, rowvar=False), mu_b, np.cov(b, rowvar=False))
    assert direct == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_of_a_set_against_itself_is_zero() -> None:
    features = np.random.default_rng(3).normal(size=(300, 32)) * 5 + 2
    stats = _streamed(features, 4)
    assert abs(frechet_distance_of(stats, stats)) < 1e-8
    assert abs(frechet_distance_of(stats, _streamed(features, 9))) < 1e-8


def test_frechet_distance_is_real_and_near_zero_for_rank_deficient_covariances() -> None:
    features = np.random.default_rng(4).normal(size=(10, 64))  # fewer samples than dimensions
    stats = _streamed(features, 2)
    assert abs(frechet_distance_of(stats, stats)) < 1e-8


def test_streamed_statistics_equal_mean_and_covariance_of_all_features() -> None:
    features = np.random.default_rng(5).normal(size=(257, 16)) * 100 + 1e4  # large offset, small spread
    stats = _streamed(features, 11)
    assert stats.count == 257
    np.testing.assert_allclose(stats.mean, features.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.covariance(), np.cov(features, rowvar=False), rtol=1e-9, atol=1e-9)


def test_a_covariance_needs_two_samples() -> None:
    stats = _streamed(np.ones((1, 4)), 1)
    with pytest.raises(ValueError, match="at least 2 samples"):
        stats.covariance()


def test_small_sets_kept_as_vectors_give_the_same_distance_as_the_covariance_formula() -> None:
    rng = np.random.default_rng(6)
    a = rng.normal(size=(40, 64))  # fewer vectors than dimensions: computed in sample space
    b = rng.normal(size=(25, 64)) * 1.5 + 0.3
    small_a, small_b = _streamed(a, 3), _streamed(b, 2)
    assert small_a.samples() is not None and small_b.samples() is not None
    in_sample_space = frechet_distance_of(small_a, small_b)
    # Matrix square roots of singular covariances lose digits near their zero eigenvalues (~1e-8 each),
    # which the sample-space computation avoids; hence looser bounds for the two covariance routes.
    assert in_sample_space == pytest.approx(_direct(a, b), rel=1e-6)
    assert in_sample_space == pytest.approx(
        frechet_distance(small_a.mean, small_a.covariance(), small_b.mean, small_b.covariance()), rel=1e-7)


def test_a_set_growing_past_its_dimension_switches_to_running_moments_without_changing_results() -> None:
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(30, 20)), rng.normal(size=(30, 20)) + 0.5
    stats_a = _streamed(a, 6)  # 5-row batches: rows kept up to 20, then folded
    assert stats_a.samples() is None
    np.testing.assert_allclose(stats_a.covariance(), np.cov(a, rowvar=False), rtol=1e-10, atol=1e-12)
    assert frechet_distance_of(stats_a, _streamed(b, 6)) == pytest.approx(_direct(a, b), rel=1e-9)
