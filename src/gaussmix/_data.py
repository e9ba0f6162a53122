"""Chunked access to the data in working coordinates.

A fit never materialises an (N, K) array: it walks the rows in chunks. A source yields
``(x, w)`` pairs: ``x`` a float64 copy of a chunk of rows minus a fixed ``shift`` (a robust
centre of the data, :func:`robust_centre`, so that second moments accumulate without
cancellation and ordinary rows keep their digits however far a few rows lie) and ``w`` the
rows' weights. Sources are re-iterable: every EM iteration is one pass.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ._em import expanded_form_fits, n_map_features, robust_centre

# Bytes one chunk's (rows x K) float64 blocks may take, all temporaries included.
CHUNK_BYTES = 48 * 2**20
MAX_CHUNK_ROWS = 65536
MIN_CHUNK_ROWS = 64


def default_chunk_size(n_components, n_features):
    """Rows per E-step chunk so that its N x K work arrays stay within ``CHUNK_BYTES``.

    A chunk holds the (rows, K) logits and the (rows, F) features of the expanded form, F
    growing as D^2 for full covariances, up to ``_em.MAX_EXPANDED_FEATURES`` (wider data
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
    by ``_validation.check_scale``)."""
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
    """What every kind of prepared training data tells a fit plan (``_fit.plan_fit``).

    Subclasses have ``n_rows``, ``n_features``, ``dtype``, ``shift`` (the origin of the
    working coordinates, :func:`robust_centre`) and ``variance`` (weighted, per feature), and provide
    ``fit_source(backend, chunk_size)`` and ``expectation_for(backend)``.
    """

    #: Whether the rows are in memory (initialisation clusters them all, not a sample).
    held_in_memory = False

    def backend_for(self, requested, n_components):
        """The E-step backend for the estimator's ``backend`` parameter."""
        from . import backends

        return backends.resolve(requested, self.e_step_pairs(n_components))

    def e_step_pairs(self, n_components):
        """What one numpy E-step costs, in (row, component) pairs: what choosing a backend
        weighs."""
        return self.n_rows * n_components

    def chunk_rows(self, n_components):
        """Rows per E-step chunk when the user gives none."""
        return default_chunk_size(n_components, self.n_features)

    def jitter_floor(self, reg_covar):
        return jitter_floor(reg_covar, self.variance, self.shift)

    def single_pass(self, chunk_size):
        """The same data prepared for one pass of E-steps (a :meth:`partial_fit` chunk)."""
        return self


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
            from .backends.numba_backend import fused_expectation

            return fused_expectation
        from ._em import expectation

        return expectation

    def tiled_source(self, chunk_size):
        """The rows reordered into spatial tiles for the fused kernel (built once)."""
        if "tiled" not in self._cache:
            from .backends.numba_backend import TiledSource

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

    def single_pass(self, chunk_size):
        """The rows as a stream: each chunk tiled for its one pass only, no reordering of the
        whole data (what :meth:`partial_fit` wants of a chunk)."""
        weights = self.sample_weight
        return StreamData(n_rows=self.n_rows, n_positive=int((weights > 0).sum()),
                          n_features=self.n_features, dtype=self.dtype,
                          total_weight=float(weights.sum()), shift=self.shift,
                          variance=self.variance, source=self.source(chunk_size))


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


class CallableChunks:
    """Chunks from a function: each pass calls ``make_chunks()`` for a fresh iterable.

    The iterable yields arrays of shape (n_i, D) or pairs ``(array, weights)``. Every chunk is
    validated (numeric, 2-D, finite, same D) as it arrives; nothing keeps the data.

    Parameters
    ----------
    make_chunks : callable returning an iterable
    shift : ndarray of shape (D,) or None
        Subtracted from every row (None until the first pass has measured the data).
    """

    def __init__(self, make_chunks, shift=None, weight_exponent=0):
        self.make_chunks = make_chunks
        self.shift = None if shift is None else np.asarray(shift, dtype=np.float64)
        self.weight_exponent = weight_exponent  # weights times 2**this (see unit_scale)
        self.n_features = None
        self.n_rows = None  # rows of the first whole pass; every later pass must match
        self.largest_weight = 0.0  # of the first whole pass

    def with_shift(self, shift, weight_exponent=0):
        """The same chunks minus ``shift``, their weights times ``2**weight_exponent``
        (``_validation.weight_exponent`` of the largest: only ratios matter)."""
        source = CallableChunks(self.make_chunks, shift, weight_exponent)
        source.n_features, source.n_rows = self.n_features, self.n_rows
        source.largest_weight = self.largest_weight
        return source

    def raw_chunks(self):
        """Validated ``(x, w)`` chunks in data coordinates (float64)."""
        from ._validation import (
            InputError,
            as_float_array,
            check_chunk_weights,
            has_missing,
        )

        try:
            chunks = iter(self.make_chunks())
        except TypeError:
            raise InputError("The data function must return an iterable of chunks (arrays of "
                             "shape (n, n_features), or (array, weights) pairs).") from None
        n_rows = 0
        largest = 0.0
        for index, chunk in enumerate(chunks):
            if isinstance(chunk, tuple) and len(chunk) == 2:
                rows, weights = chunk
            else:
                rows, weights = chunk, None
            x = as_float_array(rows, name=f"chunk {index}")
            has_missing(x, name=f"chunk {index}")
            if self.n_features is None:
                self.n_features = x.shape[1]
            elif x.shape[1] != self.n_features:
                raise InputError(f"chunk {index} has {x.shape[1]} features but earlier chunks "
                                 f"have {self.n_features}; every chunk needs the same columns.")
            w = (np.ones(x.shape[0]) if weights is None
                 else check_chunk_weights(weights, x.shape[0], f"chunk {index}'s weights"))
            n_rows += x.shape[0]
            largest = max(largest, float(w.max(initial=0.0)))
            yield np.asarray(x, dtype=np.float64), (np.ldexp(w, self.weight_exponent)
                                                    if self.weight_exponent else w)
        if self.n_rows is None:
            self.n_rows = n_rows
            self.largest_weight = largest
        elif n_rows != self.n_rows:
            raise InputError(f"The data function yielded {self.n_rows} rows on its first pass "
                             f"and {n_rows} on a later one; it must yield the same rows on "
                             "every pass (seed any randomness in it).")

    def __iter__(self):
        for x, w in self.raw_chunks():
            yield (x if self.shift is None else x - self.shift), w


def stream_moments(source):
    """Sizes and moments of a stream, in two passes (the second about the mean, so nothing
    cancels); NaN marks a missing entry (see ``_missing``).

    Returns
    -------
    n_rows, n_positive : int
    total_weight : float
    mean, variance : ndarray of shape (D,)
        Of each feature's observed entries.
    holes : HoleCounts
    centre : ndarray of shape (D,)
        :func:`robust_centre` of the first chunk's rows (the mean where they observe
        nothing).
    """
    n_rows = n_positive = 0
    total = 0.0
    first = observed = sample = None
    holes = HoleCounts()
    for x, w in source:
        if sample is None and len(x):
            rows = spaced_rows(len(x))
            sample = (x[rows], w[rows])
        n_rows += len(x)
        n_positive += int((w > 0).sum())
        total += float(w.sum())
        sums, weights, counts = observed_sums(x, w)
        first = sums if first is None else first + sums
        observed = weights if observed is None else observed + weights
        holes = holes + counts
    if n_rows == 0 or first is None:
        from ._validation import InputError

        raise InputError("The data yielded no rows; pass at least one chunk with rows.")
    if not total > 0:
        from ._validation import NO_POSITIVE_WEIGHT, InputError

        raise InputError(NO_POSITIVE_WEIGHT)
    if holes.n_missing:
        from ._missing import check_observed

        check_observed(observed)
    mean = first / observed
    return (n_rows, n_positive, total, mean, squared_deviations(source, mean) / observed,
            holes, robust_centre(*sample, mean))


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


@dataclass(frozen=True)
class MeasuredData(PreparedData):
    """Sizes and moments of training data that is not held in memory, measured in passes over
    it: what :class:`FitData` offers a fit besides its rows."""

    n_rows: int
    n_positive: int
    n_features: int
    dtype: np.dtype
    total_weight: float
    shift: np.ndarray
    variance: np.ndarray


@dataclass(frozen=True)
class StreamData(MeasuredData):
    """Training data that is read chunk by chunk, never held whole (memory maps, functions):
    ``source`` yields (rows, weights) chunks in working coordinates."""

    source: object
    holes: HoleCounts = field(default_factory=HoleCounts)

    @property
    def n_missing(self):
        return self.holes.n_missing

    def fit_source(self, backend, chunk_size):
        return self.source

    def expectation_for(self, backend):
        """The seam's ``expectation`` over the stream: each chunk tiled on its own for the
        numba kernel, plain chunks for numpy; chunks with holes split (see ``_missing``)."""
        if self.n_missing:
            from ._missing import streaming_expectation

            return streaming_expectation(backend)
        if backend == "numba":
            from .backends.numba_backend import streaming_fused_expectation

            return streaming_fused_expectation
        from ._em import expectation

        return expectation

    def sample(self, n_rows, random_state):
        """About ``n_rows`` of the positive-weight rows, in memory (see :func:`stream_sample`;
        rows with holes as ``_missing.seed_rows`` says)."""
        sample = stream_sample(self, n_rows, random_state)
        if not self.n_missing:
            return sample
        from ._missing import seed_rows

        x, w = seed_rows(sample.X, sample.sample_weight, self.holes, self.n_positive)
        return ArrayChunks(x, w, np.zeros(self.n_features), max(1, len(x)))


# Rows an initialisation samples from a stream: this many per component, within bounds.
SAMPLE_ROWS_PER_COMPONENT = 50
SAMPLE_MIN_ROWS = 10_000
SAMPLE_MAX_ROWS = 200_000


def sample_size(n_components):
    """Rows an initialisation samples from data it cannot hold: enough for K components."""
    return min(SAMPLE_MAX_ROWS, max(SAMPLE_MIN_ROWS, SAMPLE_ROWS_PER_COMPONENT * n_components))


def stream_sample(data, n_rows, random_state):
    """A uniform sample of ``min(n_rows, n_positive)`` of a stream's positive-weight rows, in
    memory, in working coordinates and stream order, with their weights, as ArrayChunks.

    One pass: every row draws a random key and the ``n_rows`` smallest keys are kept, so
    memory stays O(n_rows + one chunk) for every seed. When the sample would hold every
    positive row, they are all taken and nothing is drawn (small data starts as it would in
    memory).
    """
    take_all = data.n_positive <= n_rows
    keys, rows, weights, places = [], [], [], []
    start = 0
    for x, w in data.source:
        keep = np.flatnonzero(w > 0)
        if not take_all:
            keys.append(random_state.random_sample(len(x))[keep])
            places.append(start + keep)
        rows.append(x[keep])
        weights.append(w[keep])
        start += len(x)
        if not take_all and sum(len(k) for k in keys) > n_rows:
            keys, rows, weights, places = _smallest_keys(keys, rows, weights, places, n_rows)
    if not take_all and keys:
        keys, rows, weights, places = _smallest_keys(keys, rows, weights, places, n_rows)
        order = np.argsort(places[0], kind="stable")
        rows, weights = [rows[0][order]], [weights[0][order]]
    x = np.concatenate(rows) if rows else np.empty((0, data.n_features))
    w = np.concatenate(weights) if weights else np.empty(0)
    return ArrayChunks(x, w, np.zeros(data.n_features), max(1, len(x)))


def _smallest_keys(keys, rows, weights, places, n_rows):
    """The entries with the ``n_rows`` smallest keys, each list merged into one array."""
    keys, places = np.concatenate(keys), np.concatenate(places)
    rows, weights = np.concatenate(rows), np.concatenate(weights)
    if len(keys) > n_rows:
        kept = np.argpartition(keys, n_rows - 1)[:n_rows]
        keys, rows, weights, places = keys[kept], rows[kept], weights[kept], places[kept]
    return [keys], [rows], [weights], [places]


NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"


def load_npy(path):
    """A ``.npy`` file as a read-only memory map, with one clear error for bad paths."""
    from ._validation import InputError

    path = os.fsdecode(os.fspath(path))
    if not os.path.exists(path):
        raise FileNotFoundError(f"No data file at {path!r}; check the path.")
    if os.path.isdir(path):
        raise InputError(f"{path!r} is a folder; pass the path of a .npy file.")
    if not os.path.isfile(path):  # a pipe nobody writes to would block the read forever
        raise InputError(f"{path!r} is not a regular file (a device, pipe or socket); pass "
                         "the path of a .npy file.")
    with open(path, "rb") as f:
        magic = f.read(len(NPY_MAGIC))
    if not magic:
        raise InputError(f"{path!r} is empty; pass a .npy file written by numpy.save.")
    if magic.startswith(ZIP_MAGIC):
        raise InputError(f"{path!r} is a .npz archive, not a .npy array; pass one of its "
                         "arrays (np.load(path)[name]) or save that array with numpy.save.")
    if magic != NPY_MAGIC:
        raise InputError(f"{path!r} is not a .npy file; pass a file written by numpy.save.")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        if not isinstance(arr, np.memmap):
            arr = np.lib.format.open_memmap(path, mode="r")
    except (ValueError, OSError, EOFError):
        # numpy's own text may advise loading with allow_pickle: never repeat that.
        raise InputError(f"Cannot read {path!r} as a .npy array of numbers (it is truncated, "
                         "or holds objects); pass a numeric array written by numpy.save.") from None
    return arr
