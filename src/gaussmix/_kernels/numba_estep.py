"""The fused numba backend: tiled data, pruned E-step, statistics about the current means."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
from numba import njit

from .._foundations.covariance import as_full, second_moments_from_packed
from .._foundations.stats import Stats
from .._mathematics.em import (
    EXPANSION_LIMIT,
    FEATURE_SQUARE_CAP,
    MAX_RESEED_CANDIDATES,
    expanded_form_fits,
    expectation,
    log_normaliser,
    positive_rows,
    worst_rows,
)
from .fused import (
    PRUNE_NATS,
    bound_layout,
    factor_row_norms,
    fused_e_step,
    fused_log_density,
    layout_shapes,
    precision_facts,
    precision_floors,
    scratch_sizes,
)
from .tiles import TILE_ROWS, consecutive_starts, kd_tiles, unmeasured_boxes

FLOAT64 = np.dtype(np.float64)

# Accumulators are per block of tiles; more blocks than threads balance the load, within
# this many bytes.
ACCUMULATOR_BYTES = 64 * 2**20


# Rows tiled for one pass only (a streamed chunk, rows to score) are k-d ordered above this
# many components: ordering costs about one unpruned pass with ~100 components (262k x 5
# rows: 0.15 s), which pruning wins back only with more components. Fits on rows held in
# memory order them once and always.
SPATIAL_MIN_K = 128
# Rows per tile of consecutive rows: their boxes prune nothing, and larger tiles share the
# per-tile work (coefficients, moving the moments) over more rows (measured at 20 features,
# K=64: 192 rows 10% faster than 96, 256 no faster).
CONSECUTIVE_TILE_ROWS = 192


def tile_order(x, n_components, threshold=PRUNE_NATS, tile_rows=None):
    """Row order, the rows in that order (float64, contiguous), tile boundaries and pruning
    margin for one pass over ``x``: spatial (k-d) tiles when pruning can pay for the
    ordering, else consecutive rows and no pruning (``threshold`` infinite). ``tile_rows``:
    rows per tile (default ``TILE_ROWS`` for spatial tiles, ``CONSECUTIVE_TILE_ROWS``
    else)."""
    if n_components <= SPATIAL_MIN_K:
        rows = np.ascontiguousarray(x, dtype=np.float64)
        starts = consecutive_starts(len(x), tile_rows or CONSECUTIVE_TILE_ROWS)
        return slice(None), rows, starts, np.inf
    order, starts, rows = kd_tiles(x, tile_rows or TILE_ROWS)
    return order, rows, starts, threshold


@dataclass(frozen=True)
class WeightFacts:
    """What every E-step over the same rows needs to know about their weights.

    Attributes
    ----------
    total : float
    n_positive : int
    positive_rows : ndarray of int or None
        Rows with a positive weight; None when every row has one.
    """

    total: float
    n_positive: int
    positive_rows: np.ndarray | None

    @classmethod
    def of(cls, sample_weight):
        rows = positive_rows(sample_weight)
        n_positive = len(sample_weight) if rows is None else len(rows)
        return cls(float(sample_weight.sum()), n_positive, rows)


# Views a workspace keeps for requests it has seen (one per array of a fit's passes).
MAX_WORKSPACE_VIEWS = 256


class Workspace:
    """Arrays the kernels write, kept from one pass to the next.

    A fresh array of megabytes is mapped anew by the allocator and costs a page fault per
    4 kB on first write: on a 5-D picture with K=1000 and 10% of entries missing, a third of
    the kernel's time over the rows with holes (their marginal parameters, bounds and
    accumulators are G times larger). Each named array is a view of a buffer that only grows,
    so memory is that of the largest pass.
    """

    def __init__(self):
        self._buffers = {}
        self._views = {}  # (name, shape, dtype) -> view of the name's current buffer

    def array(self, name, shape, dtype=np.float64):
        """An uninitialised C-contiguous array named ``name`` (its previous values may show
        through); valid until the next request of that name."""
        key = (name, shape, dtype)
        view = self._views.get(key)
        if view is not None:  # the same request as at an earlier pass: its view
            return view
        dtype = np.dtype(dtype)
        size = math.prod(shape)
        flat = self._buffers.get(name)
        if flat is None or flat.size < size or flat.dtype != dtype:
            flat = self._buffers[name] = np.empty(size, dtype)
            self._views = {k: v for k, v in self._views.items() if k[0] != name}
        if len(self._views) >= MAX_WORKSPACE_VIEWS:  # passes of ever new shapes (streams)
            self._views.clear()
        view = self._views[key] = flat[:size].reshape(shape)
        return view


@dataclass(frozen=True)
class KernelBuffers:
    """What the kernels read besides the rows and parameters (see ``fused.fused_e_step``):
    the components' bound layout and its factors' row norms, the most rows of a tile, a row
    of scratch per block and the expansion's limits."""

    layout: tuple
    norms: np.ndarray
    max_rows: int
    floats: np.ndarray
    reals: np.ndarray
    ints: np.ndarray
    limit: float
    square_cap: float

    @classmethod
    def of(cls, workspace, kp, group_size, starts, n_blocks):
        """Buffers from ``workspace`` for ``kp`` (:class:`KernelParams`) in groups of
        ``group_size``, tiles ``starts`` and ``n_blocks`` blocks."""
        k_all, d = kp.means.shape
        if kp.layout is not None:
            layout = kp.layout
        else:  # every pass needs it: the bounds, the expansion's check, the difference form
            shapes = layout_shapes(k_all, group_size, d, kp.diagonal)
            layout = tuple(workspace.array(f"layout{i}", shape) for i, shape in enumerate(shapes))
            bound_layout(kp.means, kp.prec_chol, kp.diagonal, group_size, *layout)
        norms = workspace.array("norms", (k_all, d))
        factor_row_norms(layout, group_size, kp.diagonal, norms)
        max_rows = int(np.diff(starts).max()) if len(starts) > 1 else 0
        n_feat = 1 + d + (d if kp.diagonal else d * (d + 1) // 2)
        floats, reals, ints = scratch_sizes(group_size, d, n_feat, max_rows)
        return cls(layout, norms, max_rows, workspace.array("floats", (n_blocks, floats)),
                   workspace.array("reals", (n_blocks, reals)),
                   workspace.array("ints", (n_blocks, ints), np.int64),
                   EXPANSION_LIMIT[FLOAT64], FEATURE_SQUARE_CAP)


@dataclass(frozen=True)
class KernelParams:
    """Parameters in the kernel's layout (every covariance type as (K, D, D) factors)."""

    means: np.ndarray
    prec_chol: np.ndarray | None  # for the bounds' layout when not given (None: given)
    precisions: np.ndarray
    log_norm: np.ndarray
    lam_min: np.ndarray
    diagonal: bool
    layout: tuple | None = None  # the bounds' layout when already built (else built here)


def kernel_params(params):
    """:class:`KernelParams` for :class:`~gaussmix._mathematics.em.Params`."""
    k, d = params.means.shape
    cov_type = params.covariance_type
    u = params.precisions_cholesky
    prec_chol = np.ascontiguousarray(as_full(u, cov_type, k, d), dtype=np.float64)
    diagonal = cov_type in ("diag", "spherical")
    if diagonal:
        precisions = prec_chol * prec_chol  # diagonal matrices
        lam_min = precision_floor(params)
    else:
        precisions, lam_min = precision_facts(prec_chol, _stacked_covariances(params))
    return KernelParams(
        means=np.ascontiguousarray(params.means, dtype=np.float64),
        prec_chol=prec_chol,
        precisions=precisions,
        log_norm=np.ascontiguousarray(log_normaliser(params)),
        lam_min=np.ascontiguousarray(lam_min),
        diagonal=diagonal,
    )


def precision_floor(params):
    """A lower bound of each component's smallest precision eigenvalue, shape (K,) (for the
    kernel's bounds; see ``fused.precision_floors``)."""
    k = params.n_components
    if params.covariance_type in ("diag", "spherical"):
        u = np.asarray(params.precisions_cholesky, dtype=np.float64).reshape(k, -1)
        return np.min(u * u, axis=1) * (1.0 - 1e-9)
    return precision_floors(_stacked_covariances(params), k)


def _stacked_covariances(params):
    """Full or tied covariances as a contiguous (K, D, D) or (1, D, D) array."""
    d = params.n_features
    return np.ascontiguousarray(params.covariances.reshape(-1, d, d), dtype=np.float64)


def _n_blocks(n_tiles, k, q):
    threads = numba.get_num_threads()
    blocks = min(4 * threads, max(1, n_tiles))
    per_block = 8 * k * (q + 8)
    return max(1, min(blocks, max(threads, ACCUMULATOR_BYTES // per_block)))


@dataclass(frozen=True)
class KernelSums:
    """One kernel pass's statistics as its accumulator slots (G groups of K components):
    block b adds group g's sums to slot ``g + b`` (see ``fused.fused_e_step``).

    Attributes
    ----------
    resp_slots : (S, K)
    x_slots : (S, K, D), about the means
    xx_slots : (S, K, Q), about the means, packed as the kernel writes them
    covers : (G, B) int64
        The slots that hold each group's sums (-1: none; others are not written).
    log_likelihood : float
    pairs : int
        (row, component) pairs evaluated.
    exact_pairs : int
        Of them, those evaluated in difference form.
    log_prob : (N,)
        Each row's log-density.
    """

    resp_slots: np.ndarray
    x_slots: np.ndarray
    xx_slots: np.ndarray
    covers: np.ndarray
    log_likelihood: float
    pairs: int
    exact_pairs: int
    log_prob: np.ndarray

    def summed(self):
        """``(resp_sum (G K,), x_sum (G K, D), xx_sum (G K, Q))``: each group's slots added."""
        out = []
        for slots in (self.resp_slots, self.x_slots, self.xx_slots):
            groups = [slots[cover[cover >= 0]].sum(axis=0) for cover in self.covers]
            out.append(np.concatenate(groups))
        return tuple(out)


def grouped_e_step(source, kp, group_size, tile_group, threshold, n_groups=None):
    """:class:`KernelSums` of the fused kernel over a tiled source whose tiles each see one
    group of ``group_size`` components of ``kp`` (``tile_group``, non-decreasing; see
    ``fused_e_step``), or, with ``n_groups`` groups of tiles and one group of components,
    all the same components with each group's sums apart. The slots and ``log_prob`` are
    views of the source's workspace, valid until its next pass."""
    k_all, d = kp.means.shape
    n_groups = k_all // group_size if n_groups is None else n_groups
    n_tiles = len(source.starts) - 1
    q = d if kp.diagonal else d * (d + 1) // 2
    blocks = _n_blocks(n_tiles, group_size, q)
    slots = n_groups + blocks - 1
    workspace = source.workspace
    resp_slots = workspace.array("resp_slots", (slots, group_size))
    x_slots = workspace.array("x_slots", (slots, group_size, d))
    xx_slots = workspace.array("xx_slots", (slots, group_size, q))
    log_prob = workspace.array("log_prob", (source.n_rows,))
    log_lik = np.zeros(blocks)
    pairs = np.zeros((blocks, 2), dtype=np.int64)
    buffers = KernelBuffers.of(workspace, kp, group_size, source.starts, blocks)
    fused_e_step(source.kernel_x, source.sample_weight, source.hints(group_size),
                 source.starts, source.boxes, tile_group, group_size, kp.means, kp.precisions,
                 kp.log_norm, kp.lam_min, kp.diagonal, threshold, buffers.limit,
                 buffers.square_cap, buffers.layout, buffers.norms, buffers.max_rows,
                 buffers.floats, buffers.reals, buffers.ints, resp_slots, x_slots, xx_slots,
                 log_prob, log_lik, pairs)
    evaluated, exact = pairs.sum(axis=0)
    return KernelSums(resp_slots, x_slots, xx_slots, _group_covers(tile_group, n_groups, blocks),
                      float(log_lik.sum()), int(evaluated), int(exact), log_prob)


@njit(cache=True)
def _group_covers(tile_group, n_groups, n_blocks):
    """:attr:`KernelSums.covers` for blocks of consecutive tiles (as the kernel splits them)."""
    covers = np.full((n_groups, n_blocks), -1, dtype=np.int64)
    n_tiles = len(tile_group)
    for b in range(n_blocks):
        first, stop = b * n_tiles // n_blocks, (b + 1) * n_tiles // n_blocks
        if stop > first:
            for g in range(tile_group[first], tile_group[stop - 1] + 1):
                covers[g, b] = g + b
    return covers


def fused_expectation(source, params, threshold=PRUNE_NATS, report=None):
    """Statistics of all rows of a :class:`TiledSource` under ``params``, about the means.

    The seam's ``expectation`` for the numba backend (see ``loop.run_em``).

    Parameters
    ----------
    source : TiledSource
    params : Params
    threshold : float
        Pruning margin in nats (infinite: no pruning).
    report : dict, optional
        Receives ``"pair_fraction"``: the fraction of (row, component) pairs evaluated, and
        ``"exact_fraction"``: the fraction of all pairs evaluated in difference form.
    """
    if not expanded_form_fits(params.n_features, params.covariance_type):
        return _wide_expectation(source, params, report)
    kp = kernel_params(params)
    k, d = kp.means.shape
    sums = grouped_e_step(source, kp, k, np.zeros(len(source.starts) - 1, dtype=np.int64),
                          threshold)
    resp_sum, x_sum, xx_sum = sums.summed()
    weights = source.weight_facts
    worst_log_prob, worst_points = worst_rows(source.x, sums.log_prob,
                                              min(k, MAX_RESEED_CANDIDATES),
                                              weights.positive_rows)
    if report is not None:
        report["pair_fraction"] = sums.pairs / max(1, source.n_rows * k)
        report["exact_fraction"] = sums.exact_pairs / max(1, source.n_rows * k)
    return Stats(
        covariance_type=params.covariance_type,
        center=kp.means.copy(),
        resp_sum=resp_sum,
        x_sum=x_sum,
        xx_sum=second_moments_from_packed(xx_sum, params.covariance_type, d),
        log_likelihood=sums.log_likelihood,
        weight_sum=weights.total,
        n_rows=weights.n_positive,
        worst_log_prob=worst_log_prob,
        worst_points=worst_points,
    )


def _wide_expectation(source, params, report):
    """Wide data (full covariances of more than 152 features): numpy's difference form,
    whose matrix products beat the kernel's per-pair quadratic forms there (measured 2-3
    times on 2 cores, D=160-400) and whose memory follows D^2."""
    if report is not None:
        report["pair_fraction"] = report["exact_fraction"] = 1.0
    return expectation(source, params)


def streaming_fused_expectation(source, params, threshold=PRUNE_NATS, tile_rows=None,
                                report=None):
    """Statistics of a stream of chunks: each chunk is tiled and run through the kernel on its
    own, so memory stays one chunk deep. ``report`` as for :func:`fused_expectation` (the
    fraction over all chunks)."""
    if not expanded_form_fits(params.n_features, params.covariance_type):
        return _wide_expectation(source, params, report)
    total = None
    evaluated = exact = rows = 0
    workspace = Workspace()
    for x, w in source:
        order, tiled_rows, starts, margin = tile_order(x, params.n_components, threshold,
                                                       tile_rows)
        tiled = _Tiled(tiled_rows, np.ascontiguousarray(w[order]), starts, workspace)
        chunk_report = {}
        stats = fused_expectation(tiled, params, margin, chunk_report)
        evaluated += chunk_report["pair_fraction"] * len(x)
        exact += chunk_report["exact_fraction"] * len(x)
        rows += len(x)
        total = stats if total is None else total + stats
    if total is None:
        raise ValueError("No data: the chunk iterator yielded no rows.")
    if report is not None:
        report["pair_fraction"] = evaluated / max(1, rows)
        report["exact_fraction"] = exact / max(1, rows)
    return total


def sets_fused_expectation(sets, params, tile_rows=CONSECUTIVE_TILE_ROWS):
    """The statistics of each of many sets of rows, in one pass of the kernel: each set's
    rows in consecutive tiles of their own, its tiles one group, its sums apart.

    Parameters
    ----------
    sets : list of (x, w)
        Rows (n_i, D), float64, and their weights (n_i,), each set at least one row.
    params : Params

    Returns
    -------
    resp_sum : ndarray of shape (S, K)
    x_sum : ndarray of shape (S, K, D)
        About the means.
    xx_sum : ndarray
        About the means, shaped as :class:`Stats` holds them for the covariance type, with
        a leading axis of the S sets.
    log_likelihood, weight_sum : ndarray of shape (S,)
    """
    k, d = params.means.shape
    sizes = np.array([len(x) for x, _ in sets])
    tiles = [consecutive_starts(n, tile_rows)[:-1] for n in sizes]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    starts = np.append(np.concatenate([t + o for t, o in zip(tiles, offsets)]),
                       offsets[-1]).astype(np.int64)
    tile_group = np.repeat(np.arange(len(sets)), [len(t) for t in tiles]).astype(np.int64)
    x = np.concatenate([x for x, _ in sets]).astype(np.float64, copy=False)
    w = np.concatenate([w for _, w in sets]).astype(np.float64, copy=False)
    source = _Tiled(np.ascontiguousarray(x), w, starts, Workspace())
    sums = grouped_e_step(source, kernel_params(params), k, tile_group, np.inf,
                          n_groups=len(sets))
    resp_sum, x_sum, xx_sum = sums.summed()
    xx = np.stack([second_moments_from_packed(part, params.covariance_type, d)
                   for part in xx_sum.reshape(len(sets), k, -1)])
    positive = w > 0
    with np.errstate(invalid="ignore"):
        terms = np.where(positive, w * sums.log_prob, 0.0)
    return (resp_sum.reshape(len(sets), k), x_sum.reshape(len(sets), k, d), xx,
            np.add.reduceat(terms, offsets[:-1]), np.add.reduceat(w, offsets[:-1]))


class _Tiled:
    """One tiled chunk, in the shape :func:`fused_expectation` reads."""

    def __init__(self, x, sample_weight, starts, workspace):
        self.workspace = workspace
        self.x = self.kernel_x = x
        self.sample_weight = sample_weight.astype(np.float64)
        self.weight_facts = WeightFacts.of(self.sample_weight)
        self.starts = starts
        self.boxes = unmeasured_boxes(len(starts) - 1, x.shape[1])  # the kernel measures them

    @property
    def n_rows(self):
        return self.x.shape[0]

    def hints(self, n_components):
        """No hints: the chunk is seen once."""
        return np.full(self.n_rows, -1, dtype=np.int64)


def fused_scores(x, params, values=None, starts=None, threshold=PRUNE_NATS,
                 tile_rows=None):
    """``log p(x_n)``, the most likely component and ``sum_k r_nk values[k]`` for rows ``x``
    (working coordinates) by the pruned kernel.

    Parameters
    ----------
    x : ndarray of shape (N, D)
    params : Params
    values : ndarray of shape (K, M), optional
    starts : ndarray of int, optional
        Tile boundaries of rows already in spatial tiles (a pixel grid's blocks,
        ``imaging.points.pixel_tiles``); without them the rows are ordered here.

    Returns
    -------
    log_prob : ndarray of shape (N,)
    labels : ndarray of shape (N,), int
    sums : ndarray of shape (N, M) (M = 0 without ``values``)
    """
    x = np.asarray(x, dtype=np.float64)
    if starts is None:
        order, tiled, starts, margin = tile_order(x, params.n_components, threshold, tile_rows)
    else:
        order, tiled, margin = None, np.ascontiguousarray(x), threshold
    kp = kernel_params(params)
    values = np.zeros((params.n_components, 0)) if values is None else np.ascontiguousarray(
        values, dtype=np.float64)
    log_prob = np.empty(len(x))
    labels = np.empty(len(x), dtype=np.int64)
    sums = np.empty((len(x), values.shape[1]))
    # Two blocks per thread: each holds (K, tile rows) logits, and scoring keeps no sums.
    n_blocks = max(1, min(len(starts) - 1, 2 * numba.get_num_threads()))
    buffers = KernelBuffers.of(Workspace(), kp, params.n_components, starts, n_blocks)
    fused_log_density(tiled, starts, unmeasured_boxes(len(starts) - 1, tiled.shape[1]),
                      kp.means, kp.precisions,
                      kp.log_norm, kp.lam_min, kp.diagonal, margin, buffers.limit,
                      buffers.square_cap, buffers.layout, buffers.norms, buffers.max_rows,
                      buffers.floats, buffers.reals, buffers.ints, values, log_prob, labels,
                      sums)
    if order is None:
        return log_prob, labels, sums
    results = (log_prob, labels, sums)
    for result in results:
        result[order] = result.copy()
    return results
