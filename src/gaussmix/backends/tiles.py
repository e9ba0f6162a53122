"""Spatially coherent tiles of rows, so that whole tiles can skip far-away components.

The rows are reordered once per fit by recursive median splits along the widest coordinate
(a k-d tree whose leaves are the tiles); each tile keeps its bounding box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Rows per tile: small enough for tight boxes, large enough to share the per-tile bounds.
TILE_ROWS = 96


@dataclass(frozen=True)
class Tiles:
    """Rows grouped into tiles.

    Attributes
    ----------
    order : ndarray of shape (N,), int
        Row permutation: tile ``t`` holds rows ``order[starts[t]:starts[t + 1]]``.
    starts : ndarray of shape (n_tiles + 1,), int64
    boxes : ndarray of shape (n_tiles, 2, D), float64
        Lower and upper corners of each tile's bounding box (of the reordered rows).
    """

    order: np.ndarray
    starts: np.ndarray
    boxes: np.ndarray

    @property
    def n_tiles(self):
        return len(self.starts) - 1


def kd_order(x, leaf_rows=TILE_ROWS):
    """Row permutation and tile boundaries from recursive median splits.

    Parameters
    ----------
    x : ndarray of shape (N, D)
    leaf_rows : int
        Tiles hold at most this many rows.

    Returns
    -------
    order : ndarray of shape (N,), int64
    starts : ndarray of shape (n_tiles + 1,), int64
    """
    n = x.shape[0]
    order = np.arange(n, dtype=np.int64)
    stack = [(0, n)]
    leaves = []
    while stack:
        start, stop = stack.pop()
        if stop - start <= leaf_rows:
            leaves.append(start)
            continue
        rows = order[start:stop]
        sub = x[rows]
        dim = int(np.argmax(sub.max(axis=0) - sub.min(axis=0)))
        half = (stop - start) // 2
        split = np.argpartition(sub[:, dim], half)
        order[start:stop] = rows[split]
        stack.append((start + half, stop))
        stack.append((start, start + half))
    starts = np.array(sorted(leaves) + [n], dtype=np.int64)
    return order, starts


def tile_boxes(x, starts):
    """Bounding boxes (n_tiles, 2, D) of consecutive row ranges of ``x``."""
    lower = np.minimum.reduceat(x, starts[:-1], axis=0)
    upper = np.maximum.reduceat(x, starts[:-1], axis=0)
    return np.stack([lower, upper], axis=1).astype(np.float64)


def consecutive_starts(n_rows, tile_rows=TILE_ROWS):
    """Tile boundaries for rows kept in their own order."""
    return np.append(np.arange(0, n_rows, tile_rows, dtype=np.int64), n_rows).astype(np.int64)
