"""Additive sufficient statistics: the one seam every fitting path goes through.

An E-step over a chunk of rows returns a :class:`Stats`; statistics of disjoint chunks add up
to the statistics of their union (``stats(A) + stats(B) == stats(A | B)``), so in-memory,
chunked, streaming, Dask and torch (CPU or GPU) fits all reduce the same way before the one
M-step of ``em``.

All sums are float64 whatever the input dtype, and refer to the fit's working coordinates
(the data minus a fixed shift), which keeps the raw second moments free of catastrophic
cancellation.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class Stats:
    """Weighted sufficient statistics of a Gaussian mixture over some rows.

    Attributes
    ----------
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    center : ndarray of shape (K, D)
        Reference point of each component's moments (zeros, or the means of the E-step's
        parameters when moments are accumulated about them). Below ``y_nk = x_n - center_k``.
    resp_sum : ndarray of shape (K,)
        ``sum_n w_n r_nk``: the responsibility mass of each component.
    x_sum : ndarray of shape (K, D)
        ``sum_n w_n r_nk y_nk``.
    xx_sum : ndarray
        Second moments: ``sum_n w_n r_nk y_nk y_nk^T`` of shape (K, D, D) for 'full'; its sum
        over components, shape (D, D), for 'tied'; ``sum_n w_n r_nk y_nk**2`` of shape (K, D)
        for 'diag'; ``sum_n w_n r_nk |y_nk|^2`` of shape (K,) for 'spherical'.
    log_likelihood : float
        ``sum_n w_n log p(x_n)`` under the parameters of the E-step.
    weight_sum : float
        ``sum_n w_n``.
    n_rows : int
        Number of rows with a positive weight.
    worst_log_prob : ndarray of shape (M,)
        The lowest log-densities seen, ascending (M at most ``n_candidates``).
    worst_points : ndarray of shape (M, D)
        The rows those densities belong to: where dead components are re-seeded.
    """

    covariance_type: str
    center: np.ndarray
    resp_sum: np.ndarray
    x_sum: np.ndarray
    xx_sum: np.ndarray
    log_likelihood: float
    weight_sum: float
    n_rows: int
    worst_log_prob: np.ndarray
    worst_points: np.ndarray

    @property
    def n_components(self):
        return self.resp_sum.shape[0]

    @property
    def n_features(self):
        return self.x_sum.shape[1]

    def __add__(self, other):
        if isinstance(other, int) and other == 0:
            return self
        if not isinstance(other, Stats):
            return NotImplemented
        if other.covariance_type != self.covariance_type or other.x_sum.shape != self.x_sum.shape:
            raise ValueError("Cannot add statistics of mixtures with different shapes or types.")
        if not np.array_equal(other.center, self.center):
            raise ValueError("Cannot add statistics accumulated about different centres.")
        n_candidates = max(len(self.worst_log_prob), len(other.worst_log_prob))
        worst_log_prob, worst_points = merge_worst(
            (self.worst_log_prob, other.worst_log_prob),
            (self.worst_points, other.worst_points),
            n_candidates,
        )
        return Stats(
            covariance_type=self.covariance_type,
            center=self.center,
            resp_sum=self.resp_sum + other.resp_sum,
            x_sum=self.x_sum + other.x_sum,
            xx_sum=self.xx_sum + other.xx_sum,
            log_likelihood=self.log_likelihood + other.log_likelihood,
            weight_sum=self.weight_sum + other.weight_sum,
            n_rows=self.n_rows + other.n_rows,
            worst_log_prob=worst_log_prob,
            worst_points=worst_points,
        )

    __radd__ = __add__

    def scaled(self, factor):
        """These statistics with every sum multiplied by ``factor`` (running averages)."""
        return Stats(
            covariance_type=self.covariance_type,
            center=self.center,
            resp_sum=self.resp_sum * factor,
            x_sum=self.x_sum * factor,
            xx_sum=self.xx_sum * factor,
            log_likelihood=self.log_likelihood * factor,
            weight_sum=self.weight_sum * factor,
            n_rows=self.n_rows,
            worst_log_prob=self.worst_log_prob,
            worst_points=self.worst_points,
        )

    def translated(self, offset):
        """The same statistics in coordinates moved by ``offset`` (D,): moments about each
        centre do not change, the centres and the worst rows move."""
        offset = np.asarray(offset, dtype=np.float64)
        return replace(self, center=self.center + offset,
                       worst_points=self.worst_points + offset)

    def spread(self):
        """The weighted mean and per-feature variance of the rows these statistics sum (each
        row counted by its responsibilities: every row whose density is positive).

        Read off the moments without another pass over the rows: about the mean ``m``,
        ``sum_n w_n (x_n - m)**2`` is the sum over components of their moments moved to
        ``m`` (:meth:`recentered`). Statistics of 'spherical' components hold traces only:
        each feature then gets the mean over features.

        Returns
        -------
        mean : ndarray of shape (D,)
        variance : ndarray of shape (D,)
            Zeros where no row has responsibility.
        """
        total = float(self.resp_sum.sum())
        d = self.n_features
        if not total > 0:
            return np.zeros(d), np.zeros(d)
        mean = (self.resp_sum @ self.center + self.x_sum.sum(axis=0)) / total
        about_mean = self.recentered(np.broadcast_to(mean, self.center.shape))
        second = about_mean.xx_sum
        if self.covariance_type == "full":
            second = np.einsum("kdd->d", second)
        elif self.covariance_type == "tied":
            second = np.diagonal(second).copy()
        elif self.covariance_type == "diag":
            second = second.sum(axis=0)
        else:
            second = np.full(d, second.sum() / d)
        return mean, np.maximum(second, 0.0) / total

    def recentered(self, center):
        """The same statistics with moments about ``center`` (K, D) instead: exact algebra.

        With ``d = old center - new center`` and ``y' = y + d``:
        ``sum r y' = sum r y + N d`` and
        ``sum r y' y'^T = sum r y y^T + (sum r y) d^T + d (sum r y)^T + N d d^T``.
        """
        center = np.asarray(center, dtype=np.float64)
        if np.array_equal(center, self.center):  # the usual case: both about the means
            return replace(self, center=center.copy())
        d = self.center - center
        n = self.resp_sum[:, np.newaxis]
        m1 = self.x_sum
        if self.covariance_type in ("full", "tied"):
            cross = m1[:, :, np.newaxis] * d[:, np.newaxis, :]
            shift = cross + np.swapaxes(cross, 1, 2) + n[:, :, np.newaxis] * (
                d[:, :, np.newaxis] * d[:, np.newaxis, :])
            xx = self.xx_sum + (shift if self.covariance_type == "full" else shift.sum(axis=0))
        elif self.covariance_type == "diag":
            xx = self.xx_sum + 2 * m1 * d + n * d * d
        else:
            xx = self.xx_sum + 2 * np.einsum("kd,kd->k", m1, d) + self.resp_sum * np.einsum(
                "kd,kd->k", d, d)
        return Stats(
            covariance_type=self.covariance_type,
            center=center.copy(),
            resp_sum=self.resp_sum,
            x_sum=m1 + n * d,
            xx_sum=xx,
            log_likelihood=self.log_likelihood,
            weight_sum=self.weight_sum,
            n_rows=self.n_rows,
            worst_log_prob=self.worst_log_prob,
            worst_points=self.worst_points,
        )


def merge_worst(log_probs, points, n_candidates):
    """Keep the ``n_candidates`` rows with the lowest log-density (ascending, ties stable).

    Parameters
    ----------
    log_probs : sequence of ndarray of shape (M_i,)
    points : sequence of ndarray of shape (M_i, D)
    n_candidates : int

    Returns
    -------
    worst_log_prob : ndarray of shape (M,)
    worst_points : ndarray of shape (M, D)
    """
    log_prob = np.concatenate(log_probs)
    pts = np.concatenate(points)
    # Sort by density, then by coordinates, so that merging is independent of the order in
    # which chunks arrive.
    order = np.lexsort(tuple(pts.T[::-1]) + (log_prob,))[:n_candidates]
    return log_prob[order], pts[order]


def sum_stats(stats_iterable):
    """Sum an iterable of :class:`Stats` (at least one)."""
    total = None
    for stats in stats_iterable:
        total = stats if total is None else total + stats
    if total is None:
        raise ValueError("No data: the chunk iterator yielded no rows.")
    return total
