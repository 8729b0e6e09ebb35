"""Fréchet distance between Gaussians fitted to two feature sets (FID, FID-VID, FVD), in float64.

Features arrive batch by batch. While a set has no more vectors than dimensions, the vectors
themselves are kept (that takes no more memory than the D x D covariance would) and the distance is
computed exactly in sample space; beyond that they are folded into a running mean and scatter
matrix with Chan et al.'s pairwise update. Either way a long video needs memory for one batch plus
a D x D matrix, never for all its features.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class FeatureStatistics:
    """Count, mean and covariance of D-dimensional feature vectors, accumulated batch by batch."""

    dim: int
    count: int = 0
    _rows: list[np.ndarray] | None = field(default_factory=list, repr=False)
    _mean: np.ndarray | None = field(default=None, repr=False)
    _scatter: np.ndarray | None = field(default=None, repr=False)

    def add(self, features: np.ndarray) -> None:
        """Fold in a batch (N, D)."""
        batch = np.asarray(features, dtype=np.float64).reshape(-1, self.dim)
        if batch.shape[0] == 0:
            return
        if self._rows is not None and self.count + batch.shape[0] <= self.dim:
            self._rows.append(batch)
            self.count += batch.shape[0]
            return
        if self._rows is not None:
            kept, self._rows, self.count = self._rows, None, 0
            self._mean = np.zeros(self.dim)
            self._scatter = np.zeros((self.dim, self.dim))
            for rows in kept:
                self._merge(rows)
        self._merge(batch)

    def _merge(self, batch: np.ndarray) -> None:
        """Chan et al.: combine the batch's own moments with the running ones (stable in float64)."""
        n = batch.shape[0]
        batch_mean = batch.mean(axis=0)
        centred = batch - batch_mean
        total = self.count + n
        delta = batch_mean - self._mean
        self._scatter += centred.T @ centred + np.outer(delta, delta) * (self.count * n / total)
        self._mean = self._mean + delta * (n / total)
        self.count = total

    def samples(self) -> np.ndarray | None:
        """The feature vectors themselves while they are kept (count <= dim), else None."""
        if self._rows is None:
            return None
        return np.concatenate(self._rows) if self._rows else np.zeros((0, self.dim))

    @property
    def mean(self) -> np.ndarray:
        rows = self.samples()
        return rows.mean(axis=0) if rows is not None else self._mean

    def covariance(self) -> np.ndarray:
        """Unbiased sample covariance (divides by N - 1, as numpy.cov does)."""
        if self.count < 2:
            raise ValueError(f"a covariance needs at least 2 samples, got {self.count}")
        rows = self.samples()
        if rows is not None:
            centred = rows - rows.mean(axis=0)
            return centred.T @ centred / (self.count - 1)
        return self._scatter / (self.count - 1)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a covariance matrix; tiny negative eigenvalues are rounding."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr(sqrt(Σ1 Σ2)) as the sum of singular values of Σ1^½ Σ2^½.

    (Σ1^½ Σ2^½)(Σ1^½ Σ2^½)ᵀ = Σ1^½ Σ2 Σ1^½ has Σ1 Σ2's spectrum, so this equals the usual
    `scipy.linalg.sqrtm(Σ1 @ Σ2).trace()`; but it stays real, and accurate near zero eigenvalues,
    when the covariances are rank deficient (fewer samples than feature dimensions).
    """
    product = _psd_sqrt(sigma1) @ _psd_sqrt(sigma2)
    return float(np.linalg.svd(product, compute_uv=False).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||μ1 − μ2||² + Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½), all in float64."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"feature sets differ in dimension: {mu1.shape} vs {mu2.shape}")
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt_product(sigma1, sigma2))


def _frechet_from_samples(a: np.ndarray, b: np.ndarray) -> float:
    """The same distance from the vectors: with centred X (n x D), Σ = XᵀX / (n − 1), and

    Tr(sqrt(Σa Σb)) = ||Xa Xbᵀ||_* / sqrt((na − 1)(nb − 1)) (nuclear norm), since Σa Σb and
    Xa Xbᵀ Xb Xaᵀ / ((na − 1)(nb − 1)) share their non-zero eigenvalues. Only an na x nb SVD.
    """
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    xa, xb = a - mu_a, b - mu_b
    scale_a, scale_b = a.shape[0] - 1, b.shape[0] - 1
    diff = mu_a - mu_b
    cross = np.linalg.svd(xa @ xb.T, compute_uv=False).sum() / np.sqrt(scale_a * scale_b)
    return float(diff @ diff + (xa * xa).sum() / scale_a + (xb * xb).sum() / scale_b - 2 * cross)


def frechet_distance_of(a: FeatureStatistics, b: FeatureStatistics) -> float:
    """Fréchet distance between two accumulated feature sets (each needs at least 2 vectors)."""
    if a.dim != b.dim:
        raise ValueError(f"feature sets differ in dimension: {a.dim} vs {b.dim}")
    for stats in (a, b):
        if stats.count < 2:
            raise ValueError(f"a covariance needs at least 2 samples, got {stats.count}")
    rows_a, rows_b = a.samples(), b.samples()
    if rows_a is not None and rows_b is not None:
        return _frechet_from_samples(rows_a, rows_b)
    return frechet_distance(a.mean, a.covariance(), b.mean, b.covariance())
