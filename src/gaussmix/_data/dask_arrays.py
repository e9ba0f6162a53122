"""Dask arrays: E-steps run per block where the data lives, statistics reduce as a tree, the
M-step runs on the client.

Works with any dask scheduler: the default (threads) or a ``dask.distributed.Client`` (local
or a cluster, by scheduler address). Every task is a pure function of a block and the current
parameters, so a lost worker's tasks are recomputed and the result does not change.
Imported only when the user passes a dask array.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._foundations.validation import (
    BAD_WEIGHTS,
    InputError,
    NO_POSITIVE_WEIGHT,
    check_enough_rows,
    check_weight_size,
    infinity_error,
    weight_exponent,
)
from .backends import resolve
from .chunks import (
    ArrayChunks,
    HoleCounts,
    observed_sums,
    robust_centre,
    spaced_rows,
    squared_deviations,
)
from .missing import check_observed, rows_stats, seed_rows
from .streams import MeasuredData


# Rows of each block that the robust centre of the data is taken from (see
# ``chunks.robust_centre``).
CENTRE_BLOCK_ROWS = 256


def _row_blocks(X):
    """The array rechunked to whole rows, and its blocks as a flat list of delayed arrays."""
    X = X.rechunk({1: -1})
    return X, list(X.to_delayed().ravel())


def _weight_blocks(sample_weight, X):
    """Delayed weight blocks matching the row blocks of ``X`` (None: weight 1)."""
    import dask.array as da

    if sample_weight is None:
        return [None] * len(X.chunks[0])
    w = da.asarray(sample_weight)
    if w.ndim != 1 or w.shape[0] != X.shape[0]:
        raise ValueError(f"sample_weight has shape {w.shape} but X has {X.shape[0]} rows; pass "
                         "a 1-D array with one non-negative weight per row.")
    return list(w.rechunk((X.chunks[0],)).to_delayed().ravel())


def _block_rows(block, weights):
    x = np.asarray(block, dtype=np.float64)
    w = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=np.float64)
    return x, w


def _block_summary(block, weights):
    """Counts, sums and validity of a block: one pass for validation and the mean."""
    try:
        raw = np.asarray(block, dtype=np.float64)  # object blocks of numbers too, as arrays
    except (TypeError, ValueError):
        raise InputError("X contains non-numeric values; convert or drop those columns so "
                         "that every value is a number.") from None
    x, w = _block_rows(raw, weights)
    infinite_rows = np.isinf(x).any(axis=1)
    bad_w = int((~np.isfinite(w)).sum() + (w < 0).sum())
    ok = ~infinite_rows
    bad_rows = np.flatnonzero(infinite_rows)
    # With infinity the fit is refused; only then are the finite rows copied out.
    rows, row_w = (x[ok], w[ok]) if bad_rows.size else (x, w)
    first, observed, holes = observed_sums(rows, row_w)
    spaced = spaced_rows(len(rows), CENTRE_BLOCK_ROWS)
    return {"n_rows": len(x), "n_inf": int(infinite_rows.sum()),
            "first_bad": int(bad_rows[0]) if bad_rows.size else None,
            "largest_weight": float(w.max()) if w.size else 0.0, "bad_weights": bad_w,
            "n_positive": int(((w > 0) & ok).sum()), "total": float(w[ok].sum()),
            "first": first, "observed": observed, "holes": holes,
            "sample": (rows[spaced], row_w[spaced])}


def _block_second(block, weights, mean):
    return squared_deviations([_block_rows(block, weights)], mean)


def _block_sample(block, weights, shift, p, seed):
    x, w = _block_rows(block, weights)
    keep = w > 0
    if p < 1.0:
        keep &= np.random.RandomState(seed).random_sample(len(x)) < p
    return x[keep] - shift, w[keep]


def _block_stats(block, weights, shift, params, backend):
    """Statistics of one block under ``params`` (working coordinates; NaN: missing)."""
    x, w = _block_rows(block, weights)
    return rows_stats(x - shift, w, params, backend)


def _tree_sum(parts):
    """Pairwise sums of delayed statistics: a reduction tree of depth log2(blocks)."""
    from dask import delayed

    add = delayed(lambda a, b: a + b, pure=True)
    while len(parts) > 1:
        parts = [add(parts[i], parts[i + 1]) if i + 1 < len(parts) else parts[i]
                 for i in range(0, len(parts), 2)]
    return parts[0]


@dataclass(frozen=True)
class DaskData(MeasuredData):
    """A dask array prepared for a fit: its row blocks and weight blocks (delayed), and the
    backend of the per-block E-steps."""

    blocks: list
    weight_blocks: list
    backend: str
    holes: HoleCounts = field(default_factory=HoleCounts)

    @property
    def n_missing(self):
        return self.holes.n_missing

    def backend_for(self, requested, n_components):
        """The backend of the per-block E-steps, chosen when the data were prepared."""
        return self.backend

    def fit_source(self, backend, chunk_size):
        return self

    def expectation_for(self, backend):
        return self.expectation

    def expectation(self, source, params):
        """The seam's ``expectation``: per-block statistics, a tree sum, one compute."""
        import dask
        from dask import delayed

        task = delayed(_block_stats, pure=True)
        parts = [task(b, w, self.shift, params, self.backend)
                 for b, w in zip(self.blocks, self.weight_blocks)]
        return dask.compute(_tree_sum(parts))[0]

    def sample(self, n_rows, random_state):
        """About ``n_rows`` positive-weight rows drawn across the blocks, as ArrayChunks."""
        import dask
        from dask import delayed

        p = min(1.0, n_rows / max(self.n_positive, 1))
        # Taking every row draws nothing, so small data starts as it would in memory.
        seeds = (np.zeros(len(self.blocks), dtype=int) if p == 1.0 else
                 random_state.randint(0, 2**31 - 1, size=len(self.blocks)))
        task = delayed(_block_sample, pure=True)
        parts = dask.compute(*[task(b, w, self.shift, p, int(s))
                               for b, w, s in zip(self.blocks, self.weight_blocks, seeds)])
        x = np.concatenate([part[0] for part in parts])
        w = np.concatenate([part[1] for part in parts])
        if self.n_missing:
            x, w = seed_rows(x, w, self.holes, self.n_positive)
        return ArrayChunks(x, w, np.zeros(self.n_features), max(1, len(x)))


def prepare(X, sample_weight, n_components, backend):
    """Validate a dask array and measure it: :class:`DaskData` (two passes over the data)."""
    import dask
    import dask.array as da
    from dask import delayed

    if X.ndim != 2:
        raise InputError(f"Expected a 2-D array, got a {X.ndim}-D dask array of shape {X.shape}. "
                         "Reshape your data with X.reshape(-1, 1) if it holds a single feature.")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise InputError(f"Found array with shape {X.shape}; pass at least one row and column.")
    X, blocks = _row_blocks(X)
    weight_blocks = _weight_blocks(sample_weight, X)
    summaries = dask.compute(*[delayed(_block_summary, pure=True)(b, w)
                               for b, w in zip(blocks, weight_blocks)])
    n_inf = sum(s["n_inf"] for s in summaries)
    if n_inf:
        offsets = np.cumsum([0, *X.chunks[0]])
        first = min(offset + s["first_bad"] for offset, s in zip(offsets, summaries)
                    if s["first_bad"] is not None)
        raise infinity_error("X", n_inf, first)
    if any(s["bad_weights"] for s in summaries):
        raise InputError(BAD_WEIGHTS)
    largest = max(s["largest_weight"] for s in summaries)
    check_weight_size(largest)
    exponent = weight_exponent(largest)
    if exponent:  # tiny weights, brought to full precision exactly (see unit_scale)
        scaled = da.asarray(sample_weight).map_blocks(np.ldexp, exponent, dtype=np.float64)
        weight_blocks = _weight_blocks(scaled, X)
        summaries = dask.compute(*[delayed(_block_summary, pure=True)(b, w)
                                   for b, w in zip(blocks, weight_blocks)])
    n_rows = sum(s["n_rows"] for s in summaries)
    n_positive = sum(s["n_positive"] for s in summaries)
    total = sum(s["total"] for s in summaries)
    if not total > 0:
        raise InputError(NO_POSITIVE_WEIGHT)
    check_enough_rows(n_components, n_positive, sample_weight is not None)
    holes = sum((s["holes"] for s in summaries), HoleCounts())
    observed = sum(s["observed"] for s in summaries)
    if holes.n_missing:
        check_observed(observed)
    mean = sum(s["first"] for s in summaries) / observed
    shift = robust_centre(np.concatenate([s["sample"][0] for s in summaries]),
                          np.concatenate([s["sample"][1] for s in summaries]), mean)
    second = dask.compute(*[delayed(_block_second, pure=True)(b, w, mean)
                            for b, w in zip(blocks, weight_blocks)])
    dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    chosen = resolve(backend, n_rows * n_components, holes=bool(holes.n_missing))
    return DaskData(n_rows=n_rows, n_positive=n_positive, n_features=X.shape[1], dtype=dtype,
                    total_weight=total, shift=shift, variance=sum(second) / observed,
                    blocks=blocks, weight_blocks=weight_blocks, backend=chosen, holes=holes)


def map_rows(rows_function, X, n_columns=None, dtype=np.float64):
    """Apply ``rows_function`` (numpy rows to numpy results) block by block, lazily.

    Returns a dask array with one row per row of ``X`` and ``n_columns`` columns (None: 1-D).
    """
    X = X.rechunk({1: -1})

    def apply(block):
        return rows_function(np.asarray(block))

    if n_columns is None:
        return X.map_blocks(apply, drop_axis=1, dtype=dtype)
    return X.map_blocks(apply, chunks=(X.chunks[0], (n_columns,)), dtype=dtype)
