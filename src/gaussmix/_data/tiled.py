"""Training rows held in memory, reordered once into spatial tiles for the numba kernel.

Imported where a fit takes the numba backend (it imports numba).
"""

from __future__ import annotations

import numpy as np

from .._kernels.numba_estep import WeightFacts, Workspace
from .._kernels.tiles import TILE_ROWS, kd_tiles, tile_boxes
from .held import HeldRows


class TiledSource(HeldRows):
    """Training rows in working coordinates, reordered once into spatial tiles.

    Iterating yields ``(x, w)`` chunks like :class:`~gaussmix._data.chunks.ArrayChunks`, so any
    E-step runs on it; :func:`fused_expectation` runs the tiled kernel on all rows at once.

    Parameters
    ----------
    source : ArrayChunks
        The rows, chunk by chunk (converted to float64 working coordinates: float32 data
        too, whose logits in float32 would keep only the first digits of a far row's
        responsibilities).
    tile_rows : int
    """

    def __init__(self, source, tile_rows=TILE_ROWS):
        x = np.concatenate([chunk for chunk, _ in source]) if source.n_rows else np.empty(
            (0, source.n_features))
        order, starts, self.x = kd_tiles(x, tile_rows)
        self.kernel_x = self.x
        self.sample_weight = np.ascontiguousarray(source.sample_weight[order], dtype=np.float64)
        self.weight_facts = WeightFacts.of(self.sample_weight)
        self.starts = starts
        self.boxes = tile_boxes(self.kernel_x, starts)
        self.chunk_size = source.chunk_size
        self.cache = {}  # what initialisations derive from the rows and can share
        self.workspace = Workspace()
        self._hints = np.full(self.n_rows, -1, dtype=np.int64)
        self._hints_k = None

    def hints(self, n_components):
        """Each row's most likely component at the last E-step (-1: none yet), which the
        kernel updates in place. Kept across the E-steps of a fit and its restarts (any
        component keeps the pruning exact, the last one keeps it tight); cleared when the
        number of components changes (model selection), so one array serves every fit."""
        if self._hints_k != n_components:
            self._hints.fill(-1)
            self._hints_k = n_components
        return self._hints
