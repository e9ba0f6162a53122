"""Training data that is read chunk by chunk and never held whole: memory maps, ``.npy``
paths and functions that yield chunks, measured in passes (sizes, moments, holes) and sampled
for an initialisation in one pass.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from .._foundations.validation import (
    NO_POSITIVE_WEIGHT,
    InputError,
    as_float_array,
    check_chunk_weights,
    has_missing,
)
from .._mathematics.em import expectation, robust_centre
from .chunks import (
    HoleCounts,
    ArrayChunks,
    FitData,
    PreparedData,
    observed_sums,
    spaced_rows,
    squared_deviations,
)
from .missing import check_observed, seed_rows, streaming_expectation


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
        (``validation.weight_exponent`` of the largest: only ratios matter)."""
        source = CallableChunks(self.make_chunks, shift, weight_exponent)
        source.n_features, source.n_rows = self.n_features, self.n_rows
        source.largest_weight = self.largest_weight
        return source

    def raw_chunks(self):
        """Validated ``(x, w)`` chunks in data coordinates (float64)."""
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
    cancels); NaN marks a missing entry (see ``missing``).

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

        raise InputError("The data yielded no rows; pass at least one chunk with rows.")
    if not total > 0:

        raise InputError(NO_POSITIVE_WEIGHT)
    if holes.n_missing:

        check_observed(observed)
    mean = first / observed
    return (n_rows, n_positive, total, mean, squared_deviations(source, mean) / observed,
            holes, robust_centre(*sample, mean))


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
    n_missing = 0  # streams and Dask data count their holes (below)


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
        numba kernel, plain chunks for numpy; chunks with holes split (see ``missing``)."""
        if self.n_missing:
            return streaming_expectation(backend)
        if backend == "numba":
            from .._kernels.numba_estep import streaming_fused_expectation  # imports numba

            return streaming_fused_expectation
        return expectation

    def sample(self, n_rows, random_state):
        """About ``n_rows`` of the positive-weight rows, in memory (see :func:`stream_sample`;
        rows with holes as ``missing.seed_rows`` says)."""
        sample = stream_sample(self, n_rows, random_state)
        if not self.n_missing:
            return sample
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


def single_pass(data, chunk_size):
    """``data`` prepared for one pass of E-steps (a :meth:`partial_fit` chunk): rows held in
    memory as a stream, each chunk tiled for its one pass only, with no reordering of the
    whole data; other data as they are."""
    if not isinstance(data, FitData):
        return data
    weights = data.sample_weight
    return StreamData(n_rows=data.n_rows, n_positive=int((weights > 0).sum()),
                      n_features=data.n_features, dtype=data.dtype,
                      total_weight=float(weights.sum()), shift=data.shift,
                      variance=data.variance, source=data.source(chunk_size))
