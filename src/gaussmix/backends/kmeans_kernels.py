"""numba kernels for k-means initialisation: k-means++ potentials and Lloyd assignment.

All take the rows as one contiguous float64 array in working coordinates.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

_FAST = {"contract", "reassoc", "nsz"}


def _blocks(n_rows):
    return max(1, min(4 * numba.get_num_threads(), n_rows // 1024 + 1))


@njit(parallel=True, cache=True, fastmath=_FAST)
def _squared_distances_min(x, center, closest):
    """``closest = min(closest, |x - center|^2)`` row by row."""
    n, d = x.shape
    for i in prange(n):
        s = 0.0
        for j in range(d):
            v = x[i, j] - center[j]
            s += v * v
        if s < closest[i]:
            closest[i] = s


def update_closest(x, center, closest):
    """Shrink each row's squared distance to its nearest centre with a new ``center``."""
    _squared_distances_min(x, np.ascontiguousarray(center, dtype=np.float64), closest)


@njit(parallel=True, cache=True, fastmath=_FAST)
def _potentials(x, w, closest, candidates, n_blocks, out):
    n, d = x.shape
    t = candidates.shape[0]
    for b in prange(n_blocks):
        acc = np.zeros(t)
        for i in range(b * n // n_blocks, (b + 1) * n // n_blocks):
            for c in range(t):
                s = 0.0
                for j in range(d):
                    v = x[i, j] - candidates[c, j]
                    s += v * v
                acc[c] += w[i] * min(s, closest[i])
        for c in range(t):
            out[b, c] = acc[c]


def candidate_potentials(x, w, closest, candidates):
    """``sum_n w_n min(closest_n, |x_n - c|^2)`` for each candidate centre c, shape (T,)."""
    blocks = _blocks(x.shape[0])
    out = np.zeros((blocks, candidates.shape[0]))
    _potentials(x, w, closest, np.ascontiguousarray(candidates, dtype=np.float64), blocks, out)
    return out.sum(axis=0)


@njit(parallel=True, cache=True, fastmath=_FAST)
def _assign(x, w, centers_t, labels, n_blocks, counts, sums, changed):
    n, d = x.shape
    k = centers_t.shape[1]
    for b in prange(n_blocks):
        dist = np.empty(k)
        moved = 0
        for i in range(b * n // n_blocks, (b + 1) * n // n_blocks):
            for c in range(k):
                dist[c] = 0.0
            for j in range(d):
                xi = x[i, j]
                for c in range(k):
                    v = xi - centers_t[j, c]
                    dist[c] += v * v
            best = 0
            for c in range(1, k):
                if dist[c] < dist[best]:
                    best = c
            if labels[i] != best:
                moved += 1
                labels[i] = best
            counts[b, best] += w[i]
            for j in range(d):
                sums[b, best, j] += w[i] * x[i, j]
        changed[b] = moved


def assign_and_sum(x, w, centers, labels):
    """Nearest centre of every row (brute force over centres, vectorised), in place.

    Returns
    -------
    counts : ndarray of shape (K,)
        Weight assigned to each centre.
    sums : ndarray of shape (K, D)
        Weighted sum of the rows assigned to each centre.
    n_changed : int
        Rows whose label changed.
    """
    k, d = centers.shape
    blocks = _blocks(x.shape[0])
    counts = np.zeros((blocks, k))
    sums = np.zeros((blocks, k, d))
    changed = np.zeros(blocks, dtype=np.int64)
    _assign(x, w, np.ascontiguousarray(centers.T), labels, blocks, counts, sums, changed)
    return counts.sum(axis=0), sums.sum(axis=0), int(changed.sum())
