"""Chunked access to the data in working coordinates.

A fit never materialises an (N, K) array: it walks the rows in chunks. A source yields
``(x, w)`` pairs: ``x`` a float64 copy of a chunk of rows minus a fixed ``shift`` (a robust
centre of the data, :func:`robust_centre`, so that second moments accumulate without
cancellation and ordinary rows keep their digits however far a few rows lie) and ``w`` the
rows' weights. Sources are re-iterable: every EM iteration is one pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._mathematics.em import (
    expanded_form_fits,
    expectation,
    n_map_features,
    robust_centre,
)
from . import backends

# Bytes one chunk's (rows x K) float64 blocks may take, all temporaries included.
CHUNK_BYTES = 48 * 2**20
MAX_CHUNK_ROWS = 65536
MIN_CHUNK_ROWS = 64


def default_chunk_size(n_components, n_features):
    """Rows per E-step chunk so that its N x K work arrays stay within ``CHUNK_BYTES``.

    A chunk holds the (rows, K) logits and the (rows, F) features of the expanded form, F
    growing as D^2 for full covariances, up to ``em.MAX_EXPANDED_FEATURES`` (wider data
    take the difference form, which slices its own arrays and holds (rows, 2 D) at most
    per chunk).
    """
    n_feature_map = n_map_features(n_features, "full")
    if not expanded_form_fits(n_features, "full"):
        n_feature_map = n_map_features(n_features, "diag")
    per_row = 8 * (2 * n_components + 2 * n_feature_map + n_features)
    return int(np.clip(CHUNK_BYTES // per_row, MIN_CHUNK_ROWS, MAX_CHUNK_ROWS))


# Rows a robust centre is taken from (evenly spaced over the data, or the first chunk of a
# stream).
CENTRE_SAMPLE_ROWS = 4096


def spaced_rows(n_rows, limit=CENTRE_SAMPLE_ROWS):
    """At most ``limit`` row indices spread evenly over ``n_rows`` (every row when fewer)."""
    if n_rows <= limit:
        return np.arange(n_rows)
    return np.unique(np.linspace(0, n_rows - 1, limit).astype(np.int64))


class ArrayChunks:
    """Re-iterable chunks of an in-memory (or memory-mapped) array.

    Parameters
    ----------
    X : ndarray of shape (N, D)
        Any float dtype; never modified or copied whole.
    sample_weight : ndarray of shape (N,) or None
        None weighs every row 1 (no (N,) array is made).
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
        if self.sample_weight is None:
            return x, np.ones(len(x))
        return x, self.sample_weight[start:stop]

    def __iter__(self):
        for start, stop in self.bounds():
            yield self.chunk(start, stop)

    def take(self, indices):
        """Rows at ``indices`` in working coordinates, shape (len(indices), D)."""
        return np.asarray(self.X[np.asarray(indices)], dtype=np.float64) - self.shift


def weighted_moments(X, sample_weight, chunk_size, about):
    """Weighted mean and per-feature variance of ``X``, in float64, in two chunked passes.

    Both are summed about a point amid the data, ``about`` (D,), with weights that sum to
    one: the partial sums stay within the data's range (weights of 1e15 times rows at 1e300
    would overflow, and inf - inf is NaN, which the squared deviations take for a missing
    entry), and constant data at 1e200 have their mean exactly and no variance.

    Returns
    -------
    mean : ndarray of shape (D,)
    variance : ndarray of shape (D,)
    """
    unit = sample_weight / float(sample_weight.sum())
    with np.errstate(over="ignore", invalid="ignore"):  # what overflows is refused later
        mean = about + sum(w @ x for x, w in ArrayChunks(X, unit, about, chunk_size))
    return mean, squared_deviations(ArrayChunks(X, unit, mean, chunk_size),
                                    np.zeros(X.shape[1]))


def squared_deviations(chunks, mean):
    """``sum_i w_i (x_i - mean)**2`` over ``(x, w)`` chunks, shape (D,), over the observed
    entries (NaN marks a missing one); inf where the sum overflows (refused with a sentence
    by ``validation.check_scale``)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return sum(w @ np.nan_to_num((x - mean) ** 2, nan=0.0, posinf=np.inf)
                   if np.isnan(x).any() else w @ ((x - mean) ** 2) for x, w in chunks)


def observed_sums(x, w):
    """Per-feature ``sum w x`` and ``sum w`` over the observed (not NaN) entries of a chunk,
    each of shape (D,), and its :class:`HoleCounts`, from one scan for NaN; a chunk without
    NaN gives ``w @ x`` and its total weight."""
    holes = np.isnan(x)
    counts = HoleCounts.of(holes, w)
    if not counts.n_missing:
        return w @ x, np.full(x.shape[1], float(w.sum())), counts
    weights = w[:, None] * ~holes
    return (weights * np.where(holes, 0.0, x)).sum(axis=0), weights.sum(axis=0), counts


class PreparedData:
    """What every kind of prepared training data tells a fit plan (``fit.plan_fit``).

    Subclasses have ``n_rows``, ``n_features``, ``dtype``, ``shift`` (the origin of the
    working coordinates, :func:`robust_centre`), ``variance`` (weighted, per feature) and
    ``n_missing`` (missing entries, NaN), and provide ``fit_source(backend, chunk_size)`` and ``expectation_for(backend)``.
    """

    #: Whether the rows are in memory (initialisation clusters them all, not a sample).
    held_in_memory = False

    def backend_for(self, requested, n_components):
        """The E-step backend for the estimator's ``backend`` parameter."""
        return backends.resolve(requested, self.e_step_pairs(n_components),
                                holes=bool(self.n_missing))

    def e_step_pairs(self, n_components):
        """What one numpy E-step costs, in (row, component) pairs: what choosing a backend
        weighs."""
        return self.n_rows * n_components

    def chunk_rows(self, n_components):
        """Rows per E-step chunk when the user gives none."""
        return default_chunk_size(n_components, self.n_features)

    def jitter_floor(self, reg_covar):
        return jitter_floor(reg_covar, self.variance, self.shift)


@dataclass(frozen=True)
class FitData(PreparedData):
    """Validated training data with what every fit on it shares.

    Attributes
    ----------
    X : ndarray of shape (N, D), float32 or float64
    sample_weight : ndarray of shape (N,)
    shift : ndarray of shape (D,)
        The origin of the working coordinates (:func:`robust_centre`).
    variance : ndarray of shape (D,)
        Weighted per-feature variance.
    """

    X: np.ndarray
    sample_weight: np.ndarray
    shift: np.ndarray
    variance: np.ndarray
    _cache: dict = field(default_factory=dict, compare=False, repr=False)
    n_missing = 0  # its rows have no NaN (rows with holes are MissingData)

    @classmethod
    def prepare(cls, X, sample_weight, chunk_size):
        positive = np.flatnonzero(sample_weight > 0)
        rows = positive[spaced_rows(len(positive))]
        shift = robust_centre(X[rows], sample_weight[rows], np.zeros(X.shape[1]))
        _, variance = weighted_moments(X, sample_weight, chunk_size, shift)
        return cls(X, sample_weight, shift, variance)

    def source(self, chunk_size):
        return ArrayChunks(self.X, self.sample_weight, self.shift, chunk_size)

    def fit_source(self, backend, chunk_size):
        """The source EM and initialisation walk: tiled for the numba kernel, else chunks."""
        return self.tiled_source(chunk_size) if backend == "numba" else self.source(chunk_size)

    def expectation_for(self, backend):
        """The seam's ``expectation`` over :meth:`fit_source`."""
        if backend == "numba":
            from .._kernels.numba_estep import fused_expectation  # imports numba

            return fused_expectation
        return expectation

    def tiled_source(self, chunk_size):
        """The rows reordered into spatial tiles for the fused kernel (built once)."""
        if "tiled" not in self._cache:
            from .tiled import TiledSource  # imports numba

            self._cache["tiled"] = TiledSource(self.source(chunk_size))
        return self._cache["tiled"]

    @property
    def n_rows(self):
        return self.X.shape[0]

    @property
    def n_features(self):
        return self.X.shape[1]

    @property
    def dtype(self):
        return self.X.dtype

    held_in_memory = True


CONSTANT_SCALE_CAP = 1e36


def jitter_floor(reg_covar, variance, shift):
    """Least extra diagonal for a covariance that is not positive definite: at least
    ``reg_covar`` and 1e-10 of the data's mean variance (of its mean square when every
    feature is constant, capped at 1e36 so that a float32 covariance holds it, and 1 when
    that is zero too).

    Parameters
    ----------
    reg_covar : float
    variance, shift : ndarray of shape (D,)
        The data's weighted per-feature variance and mean.
    """
    scale = float(np.mean(variance))
    if not scale > 0:
        with np.errstate(over="ignore"):
            scale = min(max(float(np.mean(np.square(shift))), 1.0), CONSTANT_SCALE_CAP)
    return max(float(reg_covar), 1e-10 * scale)


@dataclass(frozen=True)
class HoleCounts:
    """Missing entries (NaN) of data measured chunk by chunk.

    Attributes
    ----------
    n_missing : int
        Missing entries.
    n_complete : int
        Rows with a positive weight and no missing entry.
    n_unobserved : int
        Rows with nothing observed.
    """

    n_missing: int = 0
    n_complete: int = 0
    n_unobserved: int = 0

    @classmethod
    def of(cls, holes, w):
        """The counts of a chunk's NaN mask ``holes`` (n, D) and weights ``w``."""
        if not holes.any():
            return cls(0, int((w > 0).sum()), 0)
        rows = holes.any(axis=1)
        return cls(int(holes.sum()), int(((w > 0) & ~rows).sum()),
                   int(holes.all(axis=1).sum()))

    def __add__(self, other):
        return HoleCounts(self.n_missing + other.n_missing, self.n_complete + other.n_complete,
                          self.n_unobserved + other.n_unobserved)


def rows_expectation(x, w, params, backend, chunk_size=None):
    """Statistics of rows held in memory (working coordinates) under ``params``: one block
    of a Dask array, or a chunk of a stream.

    Parameters
    ----------
    x : ndarray of shape (n, D), float64
    w : ndarray of shape (n,)
    params : Params
    backend : {'numpy', 'numba'}
    chunk_size : int, optional
        Rows per numpy E-step (default: :func:`default_chunk_size`).
    """
    if backend == "numba":
        from .._kernels.numba_estep import streaming_fused_expectation  # imports numba

        return streaming_fused_expectation([(x, w)], params)
    step = chunk_size or default_chunk_size(params.n_components, params.n_features)
    return expectation(ArrayChunks(x, w, np.zeros(x.shape[1]), step), params)
