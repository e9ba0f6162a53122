"""Spatially coherent tiles of rows, so that whole tiles can skip far-away components.

The rows are reordered (in numba) by recursive median splits along the widest coordinate
(a k-d tree whose leaves are the tiles): once per fit for rows held in memory, once per
chunk for streams. Each tile keeps its bounding box.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Rows per tile: small enough for tight boxes, large enough to share the per-tile bounds.
TILE_ROWS = 96


def kd_tiles(x, leaf_rows=TILE_ROWS):
    """Row permutation, tile boundaries and the reordered rows from recursive median splits.

    Parameters
    ----------
    x : ndarray of shape (N, D)
    leaf_rows : int
        Tiles hold at most this many rows.

    Returns
    -------
    order : ndarray of shape (N,), int64
    starts : ndarray of shape (n_tiles + 1,), int64
    rows : ndarray of shape (N, D), float64, C-contiguous
        ``x[order]``, produced by the same pass.
    """
    # The rows are moved along with ``order`` so that every pass reads memory in sequence.
    rows = np.array(x, dtype=np.float64, order="C", copy=True)
    n = rows.shape[0]
    order = np.arange(n, dtype=np.int64)
    leaves = np.empty(max(1, 2 * (n // max(1, leaf_rows)) + 2), dtype=np.int64)
    n_leaves = _median_splits(rows, order, max(1, int(leaf_rows)), leaves)
    return order, np.append(leaves[:n_leaves], n).astype(np.int64), rows


@njit(cache=True)
def _median_splits(x, order, leaf_rows, leaves):
    """Reorder the rows ``x`` (in place) and ``order`` alike into k-d leaves (depth first, so
    in row order); returns the number of leaves, whose first rows are written to
    ``leaves``."""
    n, d = x.shape
    # Depth first, left child on top: at most two entries per level of a balanced tree.
    stack = np.empty((256, 2), dtype=np.int64)
    stack[0, 0] = 0
    stack[0, 1] = n
    top = 1
    n_leaves = 0
    while top > 0:
        top -= 1
        start = stack[top, 0]
        stop = stack[top, 1]
        if stop - start <= leaf_rows:
            if stop > start:
                leaves[n_leaves] = start
                n_leaves += 1
            continue
        dim = _widest_dimension(x, start, stop)
        half = (stop - start) // 2
        _nth_element(x, order, dim, start, stop, start + half)
        stack[top, 0] = start + half
        stack[top, 1] = stop
        stack[top + 1, 0] = start
        stack[top + 1, 1] = start + half
        top += 2
    return n_leaves


@njit(cache=True)
def _widest_dimension(x, start, stop):
    d = x.shape[1]
    lo = np.full(d, np.inf)
    hi = np.full(d, -np.inf)
    for i in range(start, stop):
        for j in range(d):
            v = x[i, j]
            lo[j] = min(lo[j], v)
            hi[j] = max(hi[j], v)
    return int(np.argmax(hi - lo))


@njit(cache=True)
def _nth_element(x, order, dim, lo, hi, k):
    """Partially sort rows ``lo:hi`` of ``x`` (and ``order`` alike) by column ``dim`` so that
    row k is the one it would be when sorted, with no larger key before it and no smaller
    after it.

    Quickselect with three-way partitions (pixel coordinates repeat a lot) and pivots from
    a fixed pseudo-random sequence (reproducible, and no quadratic case on sorted input).
    """
    state = np.uint64(0x9E3779B97F4A7C15)
    while hi - lo > 1:
        state = state * np.uint64(6364136223846793005) + np.uint64(1442695040888963407)
        p = lo + np.int64((state >> np.uint64(33)) % np.uint64(hi - lo))
        pivot = x[p, dim]
        lt = lo
        i = lo
        gt = hi
        while i < gt:
            v = x[i, dim]
            if v < pivot:
                _swap_rows(x, order, lt, i)
                lt += 1
                i += 1
            elif v > pivot:
                gt -= 1
                _swap_rows(x, order, gt, i)
            else:
                i += 1
        if k < lt:
            hi = lt
        elif k >= gt:
            lo = gt
        else:
            return


@njit(cache=True, inline="always")
def _swap_rows(x, order, a, b):
    order[a], order[b] = order[b], order[a]
    for j in range(x.shape[1]):
        x[a, j], x[b, j] = x[b, j], x[a, j]


def tile_boxes(x, starts):
    """Bounding boxes (n_tiles, 2, D), float64, of the row ranges ``starts[t]:starts[t + 1]``
    of ``x`` (N, D), each range holding at least one row."""
    boxes = np.empty((len(starts) - 1, 2, x.shape[1]))
    _fill_boxes(x, np.asarray(starts, dtype=np.int64), boxes)
    return boxes


@njit(cache=True)
def _fill_boxes(x, starts, boxes):
    # One sweep over the rows in memory order (numpy's reduceat took two, with temporaries:
    # about 9 ms for 10^5 x 20 rows against 1 ms).
    for t in range(boxes.shape[0]):
        measure_box(x, starts[t], starts[t + 1], boxes[t])


@njit(cache=True, inline="always")
def measure_box(x, s, e, box):
    """``box`` (2, D): the least and largest values of rows ``s:e`` of ``x`` (s < e)."""
    for i in range(x.shape[1]):
        box[0, i] = x[s, i]
        box[1, i] = x[s, i]
    for n in range(s + 1, e):
        for i in range(x.shape[1]):
            box[0, i] = min(box[0, i], x[n, i])
            box[1, i] = max(box[1, i], x[n, i])


def unmeasured_boxes(n_tiles, n_features):
    """Boxes (n_tiles, 2, D) left empty (lower +inf, upper -inf): the fused kernel measures
    each from its rows as it reaches the tile, in parallel, while they are in cache."""
    boxes = np.empty((n_tiles, 2, n_features))
    boxes[:, 0] = np.inf
    boxes[:, 1] = -np.inf
    return boxes


def consecutive_starts(n_rows, tile_rows=TILE_ROWS):
    """Tile boundaries for rows kept in their own order."""
    return np.append(np.arange(0, n_rows, tile_rows, dtype=np.int64), n_rows).astype(np.int64)
