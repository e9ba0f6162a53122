"""The base of sources that hold their rows whole (the tiled numba source, device tensors,
rows with holes)."""

from __future__ import annotations


class HeldRows:
    """Rows held whole in working coordinates (``x``, ``sample_weight``), walked in chunks of
    ``chunk_size`` rows: what the tiled numba source and device tensors share."""

    @property
    def n_rows(self):
        return self.x.shape[0]

    @property
    def n_features(self):
        return self.x.shape[1]

    def __iter__(self):
        for start in range(0, self.n_rows, self.chunk_size):
            stop = start + self.chunk_size
            yield self.x[start:stop], self.sample_weight[start:stop]
