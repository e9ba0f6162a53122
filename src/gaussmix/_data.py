"""Chunked access to the data in working coordinates.

A fit never materialises an (N, K) array: it walks the rows in chunks. A source yields
``(x, w)`` pairs: ``x`` a float64 copy of a chunk of rows minus a fixed ``shift`` (the
weighted mean of the data, so second moments accumulate without cancellation) and ``w`` the
rows' weights. Sources are re-iterable: every EM iteration is one pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Bytes one chunk's (rows x K) float64 blocks may take, all temporaries included.
CHUNK_BYTES = 48 * 2**20
MAX_CHUNK_ROWS = 65536
MIN_CHUNK_ROWS = 64


def default_chunk_size(n_components, n_features):
    """Rows per E-step chunk so that its N x K work arrays stay within ``CHUNK_BYTES``.

    A chunk holds the (rows, K) logits and the (rows, F) features, F growing as D^2 for full
    covariances.
    """
    n_feature_map = 1 + n_features + n_features * (n_features + 1) // 2
    per_row = 8 * (2 * n_components + 2 * n_feature_map + n_features)
    return int(np.clip(CHUNK_BYTES // per_row, MIN_CHUNK_ROWS, MAX_CHUNK_ROWS))


class ArrayChunks:
    """Re-iterable chunks of an in-memory (or memory-mapped) array.

    Parameters
    ----------
    X : ndarray of shape (N, D)
        Any float dtype; never modified or copied whole.
    sample_weight : ndarray of shape (N,)
    shift : ndarray of shape (D,)
        Subtracted from every row (working coordinates).
    chunk_size : int
        Rows per chunk.
    """

    def __init__(self, X, sample_weight, shift, chunk_size):
        self.X = X
        self.sample_weight = sample_weight
        self.shift = np.asarray(shift, dtype=np.float64)
        self.chunk_size = int(chunk_size)

    @property
    def n_rows(self):
        return self.X.shape[0]

    @property
    def n_features(self):
        return self.X.shape[1]

    def bounds(self):
        """``(start, stop)`` of each chunk."""
        n = self.n_rows
        return [(s, min(s + self.chunk_size, n)) for s in range(0, n, self.chunk_size)]

    def chunk(self, start, stop):
        x = np.asarray(self.X[start:stop], dtype=np.float64) - self.shift
        return x, self.sample_weight[start:stop]

    def __iter__(self):
        for start, stop in self.bounds():
            yield self.chunk(start, stop)

    def take(self, indices):
        """Rows at ``indices`` in working coordinates, shape (len(indices), D)."""
        return np.asarray(self.X[np.asarray(indices)], dtype=np.float64) - self.shift


def weighted_moments(X, sample_weight, chunk_size):
    """Weighted mean and per-feature variance of ``X``, in float64, in two chunked passes.

    Returns
    -------
    mean : ndarray of shape (D,)
    variance : ndarray of shape (D,)
    """
    total = float(sample_weight.sum())
    unshifted = ArrayChunks(X, sample_weight, np.zeros(X.shape[1]), chunk_size)
    mean = sum(w @ x for x, w in unshifted) / total
    centred = ArrayChunks(X, sample_weight, mean, chunk_size)
    variance = sum(w @ (x * x) for x, w in centred) / total
    return mean, variance


@dataclass(frozen=True)
class FitData:
    """Validated training data with what every fit on it shares.

    Attributes
    ----------
    X : ndarray of shape (N, D), float32 or float64
    sample_weight : ndarray of shape (N,)
    shift : ndarray of shape (D,)
        Weighted mean: the origin of the working coordinates.
    variance : ndarray of shape (D,)
        Weighted per-feature variance.
    """

    X: np.ndarray
    sample_weight: np.ndarray
    shift: np.ndarray
    variance: np.ndarray
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def prepare(cls, X, sample_weight, chunk_size):
        shift, variance = weighted_moments(X, sample_weight, chunk_size)
        return cls(X, sample_weight, shift, variance)

    def source(self, chunk_size):
        return ArrayChunks(self.X, self.sample_weight, self.shift, chunk_size)

    def fit_source(self, backend, chunk_size):
        """The source EM and initialisation walk: tiled for the numba kernel, else chunks."""
        return self.tiled_source(chunk_size) if backend == "numba" else self.source(chunk_size)

    def tiled_source(self, chunk_size):
        """The rows reordered into spatial tiles for the fused kernel (built once)."""
        if "tiled" not in self._cache:
            from .backends.numba_backend import TiledSource

            self._cache["tiled"] = TiledSource(self.source(chunk_size))
        return self._cache["tiled"]

    def jitter_floor(self, reg_covar):
        """Least extra diagonal for a covariance that is not positive definite: at least
        ``reg_covar`` and 1e-10 of the data's mean variance."""
        scale = float(self.variance.mean())
        if not scale > 0:
            scale = max(float(np.mean(self.shift**2)), 1.0)
        return max(float(reg_covar), 1e-10 * scale)
