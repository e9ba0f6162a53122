"""numba kernels for k-means initialisation: k-means++ potentials and Lloyd assignment.

The rows are taken transposed, one contiguous array per feature (``xt`` of shape (D, N)), so
that every inner loop runs over a block of rows and vectorises.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from .threading_layer import parallel_kernel

_FAST = {"contract", "reassoc", "nsz"}
# Rows per block: the distance buffers of a block stay in the first-level cache.
BLOCK = 512


def transposed(x):
    """Rows as one contiguous array per feature, shape (D, N)."""
    return np.ascontiguousarray(np.asarray(x, dtype=np.float64).T)


def _n_blocks(n_rows):
    return (n_rows + BLOCK - 1) // BLOCK


@parallel_kernel(cache=True, fastmath=_FAST)
def _update_closest(xt, w, center, closest, block_mass):
    d, n = xt.shape
    for b in prange((n + BLOCK - 1) // BLOCK):
        s = b * BLOCK
        e = min(s + BLOCK, n)
        dist = np.zeros(e - s)
        for j in range(d):
            c = center[j]
            for r in range(e - s):
                v = xt[j, s + r] - c
                dist[r] += v * v
        acc = 0.0
        for r in range(e - s):
            nearest = min(dist[r], closest[s + r])
            closest[s + r] = nearest
            acc += w[s + r] * nearest
        block_mass[b] = acc


def update_closest(xt, w, center, closest):
    """Shrink each row's squared distance to its nearest centre with a new ``center``.

    Returns
    -------
    block_mass : ndarray of shape (ceil(N / BLOCK),)
        ``sum w_n closest_n`` over each block of ``BLOCK`` rows, for :func:`weighted_draw`.
    """
    block_mass = np.empty(_n_blocks(xt.shape[1]))
    _update_closest(xt, w, np.ascontiguousarray(center, dtype=np.float64), closest, block_mass)
    return block_mass


@njit(cache=True)
def _draw_in_block(w, closest, start, stop, residual):
    """First row of ``start:stop`` whose running mass ``w * closest`` exceeds ``residual``
    (the block's last row with mass when rounding leaves none)."""
    acc = 0.0
    last = -1
    for i in range(start, stop):
        mass = w[i] * closest[i]
        if mass > 0.0:
            acc += mass
            last = i
            if acc > residual:
                return i
    return last


def weighted_draw(w, closest, block_mass, size, random_state):
    """``size`` rows drawn with probability proportional to ``w * closest`` (with
    replacement), k-means++'s D^2 sampling, without a cumulative sum over every row: a
    draw finds its block from ``block_mass`` and walks that block only.

    Returns
    -------
    rows : ndarray of shape (size,), int64
    """
    cumulative = np.cumsum(block_mass)
    targets = random_state.uniform(size=size) * cumulative[-1]
    blocks = np.searchsorted(cumulative, targets, side="right")
    rows = np.empty(size, dtype=np.int64)
    n = closest.shape[0]
    for i, (target, b) in enumerate(zip(targets, blocks)):
        before = cumulative[b - 1] if b > 0 else 0.0
        rows[i] = _draw_in_block(w, closest, b * BLOCK, min(n, (b + 1) * BLOCK), target - before)
    return rows


@parallel_kernel(cache=True, fastmath=_FAST)
def _potentials(xt, w, closest, candidates, out):
    d, n = xt.shape
    t = candidates.shape[0]
    for b in prange((n + BLOCK - 1) // BLOCK):
        s = b * BLOCK
        e = min(s + BLOCK, n)
        dist = np.empty(e - s)
        for c in range(t):
            for r in range(e - s):
                dist[r] = 0.0
            for j in range(d):
                cj = candidates[c, j]
                for r in range(e - s):
                    v = xt[j, s + r] - cj
                    dist[r] += v * v
            acc = 0.0
            for r in range(e - s):
                acc += w[s + r] * min(dist[r], closest[s + r])
            out[b, c] = acc


def candidate_potentials(xt, w, closest, candidates):
    """``sum_n w_n min(closest_n, |x_n - c|^2)`` for each candidate centre c, shape (T,)."""
    out = np.zeros((_n_blocks(xt.shape[1]), candidates.shape[0]))
    _potentials(xt, w, closest, np.ascontiguousarray(candidates, dtype=np.float64), out)
    return out.sum(axis=0)


@parallel_kernel(cache=True, fastmath=_FAST)
def _assign(xt, w, centers, labels, counts, sums, changed):
    d, n = xt.shape
    k = centers.shape[0]
    n_blocks = counts.shape[0]
    per = ((n + BLOCK - 1) // BLOCK + n_blocks - 1) // n_blocks
    for b in prange(n_blocks):
        dist = np.empty(BLOCK)
        best_dist = np.empty(BLOCK)
        best = np.empty(BLOCK)  # float labels: branch-free selects vectorise
        moved = 0
        for blk in range(b * per, min((b + 1) * per, (n + BLOCK - 1) // BLOCK)):
            s = blk * BLOCK
            e = min(s + BLOCK, n)
            m = e - s
            for r in range(m):
                best_dist[r] = np.inf
                best[r] = 0.0
            for c in range(k):
                # d passes over the block: the first sets the distances, the last compares.
                if d == 1:
                    for r in range(m):
                        dist[r] = 0.0
                else:
                    c0 = centers[c, 0]
                    for r in range(m):
                        v = xt[0, s + r] - c0
                        dist[r] = v * v
                for j in range(1, d - 1):
                    cj = centers[c, j]
                    for r in range(m):
                        v = xt[j, s + r] - cj
                        dist[r] += v * v
                cl = centers[c, d - 1]
                fc = float(c)
                for r in range(m):
                    v = xt[d - 1, s + r] - cl
                    dd = dist[r] + v * v
                    better = dd < best_dist[r]
                    best_dist[r] = dd if better else best_dist[r]
                    best[r] = fc if better else best[r]
            for r in range(m):
                label = int(best[r])
                if labels[s + r] != label:
                    moved += 1
                    labels[s + r] = label
                counts[b, label] += w[s + r]
                for j in range(d):
                    sums[b, label, j] += w[s + r] * xt[j, s + r]
        changed[b] = moved


def assign_and_sum(xt, w, centers, labels):
    """Nearest centre of every row (brute force over centres), labels updated in place.

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
    blocks = max(1, min(4 * numba.get_num_threads(), _n_blocks(xt.shape[1])))
    counts = np.zeros((blocks, k))
    sums = np.zeros((blocks, k, d))
    changed = np.zeros(blocks, dtype=np.int64)
    _assign(xt, w, np.ascontiguousarray(centers, dtype=np.float64), labels, counts, sums, changed)
    return counts.sum(axis=0), sums.sum(axis=0), int(changed.sum())


@parallel_kernel(cache=True, fastmath=_FAST)
def _label_moments(xt, w, labels, centers, diagonal, counts, first, second):
    d, n = xt.shape
    n_blocks = counts.shape[0]
    q = second.shape[2]
    diff = np.empty((n_blocks, d))
    for b in prange(n_blocks):
        for i in range(b * n // n_blocks, (b + 1) * n // n_blocks):
            label = labels[i]
            if label < 0 or w[i] == 0.0:
                continue
            wi = w[i]
            counts[b, label] += wi
            for j in range(d):
                diff[b, j] = xt[j, i] - centers[label, j]
                first[b, label, j] += wi * diff[b, j]
            if diagonal:
                for j in range(d):
                    second[b, label, j] += wi * diff[b, j] * diff[b, j]
            else:
                p = 0
                for j in range(d):
                    for l in range(j, d):
                        second[b, label, p] += wi * diff[b, j] * diff[b, l]
                        p += 1
    return q


def label_moments(xt, w, labels, centers, diagonal):
    """Weighted count, first and second moments of each label's rows about its centre.

    Returns
    -------
    counts : (K,); first : (K, D); second : (K, D) diagonal or (K, D(D+1)/2) packed upper
    triangle (row-major), about ``centers``.
    """
    k, d = centers.shape
    q = d if diagonal else d * (d + 1) // 2
    blocks = max(1, min(4 * numba.get_num_threads(), _n_blocks(xt.shape[1])))
    counts = np.zeros((blocks, k))
    first = np.zeros((blocks, k, d))
    second = np.zeros((blocks, k, q))
    _label_moments(xt, w, labels, np.ascontiguousarray(centers, dtype=np.float64), diagonal,
                   counts, first, second)
    return counts.sum(axis=0), first.sum(axis=0), second.sum(axis=0)
