"""Fréchet distance between Gaussians fitted to two feature sets (FID, FID-VID, FVD), in float64.

Features arrive batch by batch, so the mean and covariance are accumulated with Chan et al.'s
pairwise update instead of keeping every feature vector: a long video needs memory only for one
batch plus a D x D matrix.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class FeatureStatistics:
    """Running count, mean and scatter matrix of D-dimensional feature vectors."""

    dim: int
    count: int = 0
    mean: np.ndarray = field(init=False)
    scatter: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.mean = np.zeros(self.dim, dtype=np.float64)
        self.scatter = np.zeros((self.dim, self.dim), dtype=np.float64)

    def add(self, features: np.ndarray) -> None:
        """Fold in a batch (N, D); merging batch moments keeps the update numerically stable."""
        batch = np.asarray(features, dtype=np.float64).reshape(-1, self.dim)
        n = batch.shape[0]
        if n == 0:
            return
        batch_mean = batch.mean(axis=0)
        centred = batch - batch_mean
        total = self.count + n
        delta = batch_mean - self.mean
        self.scatter += centred.T @ centred + np.outer(delta, delta) * (self.count * n / total)
        self.mean = self.mean + delta * (n / total)
        self.count = total

    def covariance(self) -> np.ndarray:
        """Unbiased sample covariance (divides by N - 1, as numpy.cov does)."""
        if self.count < 2:
            raise ValueError(f"a covariance needs at least 2 samples, got {self.count}")
        return self.scatter / (self.count - 1)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a covariance matrix; tiny negative eigenvalues are rounding."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr(sqrt(Σ1 Σ2)) via the eigenvalues of Σ1^½ Σ2 Σ1^½, which share Σ1 Σ2's spectrum.

    This equals the usual `scipy.linalg.sqrtm(Σ1 @ Σ2).trace()` but stays real and well defined
    when the covariances are rank deficient (fewer samples than feature dimensions).
    """
    root = _psd_sqrt(sigma1)
    inner = root @ sigma2 @ root
    values = np.linalg.eigvalsh((inner + inner.T) / 2)
    return float(np.sqrt(np.clip(values, 0.0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||μ1 − μ2||² + Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½), all in float64."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"feature sets differ in dimension: {mu1.shape} vs {mu2.shape}")
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt_product(sigma1, sigma2))


def frechet_distance_of(a: FeatureStatistics, b: FeatureStatistics) -> float:
    """Fréchet distance between two accumulated feature sets."""
    return frechet_distance(a.mean, a.covariance(), b.mean, b.covariance())
