"""Rows with missing entries on the fused kernel: every missingness pattern in one pass.

A row with holes is scored by the marginal of its observed features. The rows of the
patterns that observe ``o`` features are held with those ``o`` entries alone, and each such
pattern's marginal mixture in its ``o`` dimensions; the kernel then runs all these patterns
at once, in ``o`` dimensions, each tile (rows of one pattern) seeing only its pattern's
group of components, with the same exact pruning as complete rows. Holding the observed
entries alone, rather than padding every row to ``D`` features, makes each (row, component)
pair and each tile's bounds cheaper by the features a pattern lacks (a quadratic form in
``o`` rather than ``D`` features: 15 terms instead of 21 for 4 of 5 observed, 10 for 3).
The missing moments follow from the observed ones per pattern and component
(``B = S_mo S_oo^-1``, ``C = S_mm - B S_om``, see ``_missing.stats``), in a second kernel.

The marginal parameters take K o^2 values per pattern; patterns are run in batches that
keep them about ``BATCH_VALUES``, so memory stays bounded for any number of patterns.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .._covariance import as_full, second_moments_from_full
from .._stats import Stats
from .fused import PRUNE_NATS
from .numba_backend import (
    KernelParams,
    WeightFacts,
    Workspace,
    grouped_e_step,
    precision_floor,
)
from .tiles import kd_tiles, tile_boxes

LOG_2PI = math.log(2.0 * math.pi)
# Rows per tile of a pattern: an eighth of its rows, within these limits. A pattern's rows
# are sparser than complete rows (on a picture with 10% of entries missing, a twentieth of the
# pixels each for the five patterns missing one entry, a hundredth or less for the others),
# so its tiles' boxes are wider and hold more candidates: small tiles win that back for the
# sparse patterns, while each tile's bounds over every component favour larger ones for the
# large patterns (astronaut 128^2, K=1000; ms per E-step at 16 / 32 / 64 / 128 rows: patterns
# missing one entry 6.1 at 32, 5.6 at 64, 6.0 at 128; missing two 5.0 / 5.3 / 5.8 / 6.8).
HOLE_TILE_MIN_ROWS = 16
HOLE_TILE_MAX_ROWS = 64


def pattern_tile_rows(n_rows):
    """Rows per tile for a pattern of ``n_rows`` rows (see ``HOLE_TILE_MIN_ROWS``)."""
    return int(min(HOLE_TILE_MAX_ROWS, max(HOLE_TILE_MIN_ROWS, n_rows // 8)))


# Components per task of the per-pattern kernels: each task runs its components over every
# pattern, so the (pattern, component) entries it writes and reads are contiguous.
PIECE_CHUNK = 32
# Marginal parameters per batch of patterns (values of one (G K, o, o) array): about 32 MB.
BATCH_VALUES = 4 * 2**20


@njit(parallel=True, cache=True, nogil=True)
def marginal_pieces(covariances, means, log_weights, observed, prec_chol, precisions,
                    marginal_means, log_norm):
    """Every pattern's marginal mixture over its ``o`` observed features.

    Parameters
    ----------
    covariances : (K, D, D) float64
    means : (K, D) float64
    log_weights : (K,) float64
    observed : (P, o) int64, each pattern's observed features, increasing
    prec_chol, precisions : (P K, o, o) float64 out, pattern p's component k at ``p K + k``:
        the upper Cholesky factor ``U = L^-T`` of ``S_oo^-1`` (``S_oo = L L^T``) and
        ``U U^T``
    marginal_means : (P K, o) float64 out
    log_norm : (P K,) float64 out, ``log w_k - (o log 2 pi + log det S_oo) / 2``
    """
    n_patterns, o = observed.shape
    k_total = means.shape[0]
    for c in prange((k_total + PIECE_CHUNK - 1) // PIECE_CHUNK):
        chol = np.zeros((o, o))
        inv = np.zeros((o, o))  # L^-1, lower triangular
        for p in range(n_patterns):
            for k in range(c * PIECE_CHUNK, min(k_total, (c + 1) * PIECE_CHUNK)):
                _marginal_piece(covariances, means, log_weights, observed[p], p * k_total + k,
                                k, chol, inv, prec_chol, precisions, marginal_means, log_norm)


@njit(cache=True, inline="always")
def _marginal_piece(covariances, means, log_weights, idx, pk, k, chol, inv, prec_chol,
                    precisions, marginal_means, log_norm):
    """Component k's marginal over the features ``idx``, into entry ``pk`` (see
    :func:`marginal_pieces`); ``chol`` and ``inv`` are scratch."""
    o = idx.shape[0]
    log_det = 0.0
    for a in range(o):
        for b in range(a + 1):
            acc = covariances[k, idx[a], idx[b]]
            for c in range(b):
                acc -= chol[a, c] * chol[b, c]
            if a == b:
                root = math.sqrt(acc)
                chol[a, a] = root
                log_det += 2.0 * math.log(root)
            else:
                chol[a, b] = acc / chol[b, b]
    for a in range(o):
        inv[a, a] = 1.0 / chol[a, a]
        for b in range(a):
            acc = 0.0
            for c in range(b, a):
                acc += chol[a, c] * inv[c, b]
            inv[a, b] = -acc / chol[a, a]
    for a in range(o):
        marginal_means[pk, a] = means[k, idx[a]]
        for b in range(a):
            prec_chol[pk, a, b] = 0.0
        for b in range(a, o):
            prec_chol[pk, a, b] = inv[b, a]  # U = L^-T
            acc = 0.0  # (L^-T L^-1)[a, b] = sum_c inv[c, a] inv[c, b]
            for c in range(b, o):
                acc += inv[c, a] * inv[c, b]
            precisions[pk, a, b] = acc
            precisions[pk, b, a] = acc
    log_norm[pk] = log_weights[k] - 0.5 * (o * LOG_2PI + log_det)


@njit(parallel=True, cache=True, nogil=True)
def complete_moments(covariances, precisions, observed, diagonal, resp_slots, x_slots,
                     xx_slots, covers, out_resp, out_x, out_xx):
    """Add every pattern's statistics, completed with the missing moments, to each
    component's (parallel over components).

    With ``y = x - mu_k`` and ``B = S_mo S_oo^-1``: ``E[y_m] = B y_o`` and
    ``Cov[y_m] = C = S_mm - B S_om``, so the first moments gain ``B S1`` and the second
    ``S2 B^T`` and ``B S2 B^T + N C``.

    Parameters
    ----------
    covariances : (K, D, D) float64
    precisions : (P K, o, o) float64, from :func:`marginal_pieces` (``S_oo^-1``)
    observed : (P, o) int64, each pattern's observed features, increasing
    diagonal : bool, whether the kernel ran diagonal precisions (``xx_sum`` diagonals)
    resp_slots : (S, K), x_slots : (S, K, o), xx_slots : (S, K, Q): the kernel's sums over
        the observed features about the means (Q = o(o+1)/2 packed, or o when
        ``diagonal``) in its slots, pattern p's in slots ``covers[p]`` (see
        ``numba_backend.KernelSums``)
    covers : (P, B) int64
    out_resp : (K,) float64 in/out
    out_x : (K, D) float64 in/out
    out_xx : (K, D, D) float64 in/out, full second moments about the means
    """
    n_patterns, o = observed.shape
    k_total, d = covariances.shape[0], covariances.shape[1]
    m = d - o
    n_packed = xx_slots.shape[2]
    for chunk in prange((k_total + PIECE_CHUNK - 1) // PIECE_CHUNK):
        mis = np.empty(m, dtype=np.int64)
        x_sum = np.empty(o)
        xx_sum = np.empty(n_packed)
        s2 = np.empty((o, o))
        reg = np.empty((m, o))  # B
        cross = np.empty((o, m))  # S2 B^T
        for p in range(n_patterns):
            obs = observed[p]
            _missing_features(obs, d, mis)
            for k in range(chunk * PIECE_CHUNK, min(k_total, (chunk + 1) * PIECE_CHUNK)):
                pk = p * k_total + k
                n = 0.0
                for slot in covers[p]:
                    if slot >= 0:
                        n += resp_slots[slot, k]
                if n == 0.0:
                    continue
                x_sum[:] = 0.0
                xx_sum[:] = 0.0
                for slot in covers[p]:
                    if slot >= 0:
                        for i in range(o):
                            x_sum[i] += x_slots[slot, k, i]
                        for i in range(n_packed):
                            xx_sum[i] += xx_slots[slot, k, i]
                out_resp[k] += n
                _unpack_second_moments(xx_sum, diagonal, s2)
                for a in range(m):
                    for b in range(o):
                        acc = 0.0
                        for c in range(o):
                            acc += covariances[k, mis[a], obs[c]] * precisions[pk, c, b]
                        reg[a, b] = acc
                for a in range(o):
                    out_x[k, obs[a]] += x_sum[a]
                    for b in range(o):
                        out_xx[k, obs[a], obs[b]] += s2[a, b]
                for a in range(m):
                    acc = 0.0
                    for b in range(o):
                        acc += reg[a, b] * x_sum[b]
                    out_x[k, mis[a]] += acc
                for a in range(o):
                    for b in range(m):
                        acc = 0.0
                        for c in range(o):
                            acc += s2[a, c] * reg[b, c]
                        cross[a, b] = acc
                        out_xx[k, obs[a], mis[b]] += acc
                        out_xx[k, mis[b], obs[a]] += acc
                for a in range(m):
                    for b in range(m):
                        acc = covariances[k, mis[a], mis[b]]  # C = S_mm - B S_om
                        for c in range(o):
                            acc -= reg[a, c] * covariances[k, obs[c], mis[b]]
                        acc *= n
                        for c in range(o):
                            acc += reg[a, c] * cross[c, b]
                        out_xx[k, mis[a], mis[b]] += acc


@njit(cache=True, inline="always")
def _missing_features(obs, d, mis):
    """The features of ``range(d)`` not in ``obs`` (increasing), into ``mis``."""
    m = 0
    j = 0
    for i in range(d):
        if j < obs.shape[0] and obs[j] == i:
            j += 1
        else:
            mis[m] = i
            m += 1


@njit(cache=True, inline="always")
def _unpack_second_moments(packed, diagonal, out):
    """``out`` (o, o): the symmetric matrix of the kernel's packed upper triangle (by rows),
    or the diagonal matrix of ``packed`` when ``diagonal``."""
    o = out.shape[0]
    out[:] = 0.0
    if diagonal:
        for i in range(o):
            out[i, i] = packed[i]
        return
    q = 0
    for i in range(o):
        for j in range(i, o):
            out[i, j] = packed[q]
            out[j, i] = packed[q]
            q += 1


class HoleTiles:
    """Rows with holes (working coordinates, NaN for missing; none entirely missing) in
    spatial tiles, pattern by pattern, each row holding its observed entries alone; kept for
    every E-step of a fit.

    Patterns that observe the same number of features form a *level* (its rows are one
    array); the kernel runs a level's patterns in batches.

    Parameters
    ----------
    patterns : list of ``_missing.Pattern``
        Those with at least one observed feature.
    x : ndarray of shape (M, D)
    w : ndarray of shape (M,)
    tile_rows : int, optional
        Rows per tile of every pattern (default: :func:`pattern_tile_rows`).
    """

    def __init__(self, patterns, x, w, tile_rows=None):
        by_count = {}
        for pattern in sorted(patterns, key=lambda p: -len(p.observed)):
            by_count.setdefault(len(pattern.observed), []).append(pattern)
        self.levels = []
        offset = 0
        for group in by_count.values():
            self.levels.append(_Level(group, x, w, tile_rows, offset))
            offset += self.levels[-1].n_rows
        self.n_rows = offset
        self.sample_weight = np.concatenate(
            [level.sample_weight for level in self.levels]) if self.levels else np.empty(0)
        self.weight_facts = WeightFacts.of(self.sample_weight)
        self._hints = np.full(offset, -1, dtype=np.int64)
        self._hints_k = None
        self.workspace = Workspace()  # one for every batch: memory of the largest

    def hints(self, n_components):
        """As :meth:`~gaussmix.backends.numba_backend.TiledSource.hints`."""
        if self._hints_k != n_components:
            self._hints.fill(-1)
            self._hints_k = n_components
        return self._hints

    def batches(self, n_components):
        """Consecutive pattern ranges of each level whose marginal parameters stay about
        ``BATCH_VALUES``: ``(observed, source)``, the patterns' observed features (P, o) and
        their tiles as a source for the kernel."""
        hints = self.hints(n_components)
        for level in self.levels:
            n_patterns, o = level.observed.shape
            per_batch = max(1, BATCH_VALUES // (n_components * o * o))
            level_hints = hints[level.offset:level.offset + level.n_rows]
            for first in range(0, n_patterns, per_batch):
                stop = min(n_patterns, first + per_batch)
                yield level.observed[first:stop], _Batch(level, first, stop, level_hints,
                                                         self.workspace)


class _Level:
    """The patterns of :class:`HoleTiles` that observe ``o`` features: their rows' observed
    entries, tiled pattern by pattern and concatenated.

    Attributes
    ----------
    observed : (P, o) int64, each pattern's observed features
    x : (n, o) float64, C-contiguous
    sample_weight : (n,)
    starts : (n_tiles + 1,) int64
    boxes : (n_tiles, 2, o)
    tile_group : (n_tiles,) int64, each tile's pattern
    pattern_tiles : list of int, pattern p's tiles ``pattern_tiles[p]:pattern_tiles[p + 1]``
    offset : int, the level's first row among all of :class:`HoleTiles`
    """

    def __init__(self, patterns, x, w, tile_rows, offset):
        self.observed = np.array([p.observed for p in patterns], dtype=np.int64)
        rows, weights, starts, groups = [], [], [np.zeros(1, dtype=np.int64)], []
        self.pattern_tiles = [0]
        n = 0
        for g, pattern in enumerate(patterns):
            order, pattern_starts, tiled = kd_tiles(
                x[np.ix_(pattern.rows, pattern.observed)],
                tile_rows or pattern_tile_rows(len(pattern.rows)))
            rows.append(tiled)
            weights.append(w[pattern.rows][order])
            starts.append(pattern_starts[1:] + n)
            groups.append(np.full(len(pattern_starts) - 1, g, dtype=np.int64))
            n += len(pattern.rows)
            self.pattern_tiles.append(self.pattern_tiles[-1] + len(pattern_starts) - 1)
        self.x = np.ascontiguousarray(np.concatenate(rows))
        self.sample_weight = np.ascontiguousarray(np.concatenate(weights), dtype=np.float64)
        self.starts = np.concatenate(starts)
        self.tile_group = np.concatenate(groups)
        self.boxes = tile_boxes(self.x, self.starts)
        self.offset = offset

    @property
    def n_rows(self):
        return self.x.shape[0]


class _Batch:
    """The tiles of patterns ``first:stop`` of a :class:`_Level`, in the kernel's shape
    (views: the hints are updated in place)."""

    def __init__(self, level, first, stop, hints, workspace):
        t0, t1 = level.pattern_tiles[first], level.pattern_tiles[stop]
        r0, r1 = level.starts[t0], level.starts[t1]
        self.kernel_x = level.x[r0:r1]
        self.sample_weight = level.sample_weight[r0:r1]
        self.starts = level.starts[t0:t1 + 1] - r0
        self.boxes = level.boxes[t0:t1]
        self.tile_group = level.tile_group[t0:t1] - first
        self.workspace = workspace
        self._hints = hints[r0:r1]

    @property
    def n_rows(self):
        return self.kernel_x.shape[0]

    def hints(self, n_components):
        return self._hints


def hole_stats(tiles, params, threshold=PRUNE_NATS):
    """:class:`~gaussmix._stats.Stats` of the rows of ``tiles`` (:class:`HoleTiles`) under
    ``params``, about the components' means, in full dimension: what ``_missing.stats``
    computes, by the fused kernel."""
    k, d = params.n_components, params.n_features
    cov_type = params.covariance_type
    covariances = np.ascontiguousarray(as_full(params.covariances, cov_type, k, d),
                                       dtype=np.float64)
    means = np.ascontiguousarray(params.means, dtype=np.float64)
    with np.errstate(divide="ignore"):
        log_weights = np.log(params.weights)
    # A marginal's smallest precision eigenvalue is at least the full precision's (its
    # covariance's largest eigenvalue is at most the full one's): one bound serves all.
    lam_min = precision_floor(params)
    diagonal = cov_type in ("diag", "spherical")
    resp = np.zeros(k)
    out_x = np.zeros((k, d))
    out_xx = np.zeros((k, d, d))
    log_likelihood = 0.0
    workspace = tiles.workspace
    for observed, batch in tiles.batches(k):
        n_patterns, o = observed.shape
        size = n_patterns * k
        prec_chol = workspace.array("prec_chol", (size, o, o))
        precisions = workspace.array("precisions", (size, o, o))
        marginal_means = workspace.array("means", (size, o))
        log_norm = workspace.array("log_norm", (size,))
        marginal_pieces(covariances, means, log_weights, observed, prec_chol, precisions,
                        marginal_means, log_norm)
        lam_mins = workspace.array("lam_min", (n_patterns, k))
        lam_mins[:] = lam_min
        kp = KernelParams(marginal_means, prec_chol, precisions, log_norm,
                          lam_mins.reshape(-1), diagonal)
        sums = grouped_e_step(batch, kp, k, batch.tile_group, threshold)
        complete_moments(covariances, precisions, observed, diagonal, sums.resp_slots,
                         sums.x_slots, sums.xx_slots, sums.covers, resp, out_x, out_xx)
        log_likelihood += sums.log_likelihood
    facts = tiles.weight_facts
    return Stats(covariance_type=cov_type, center=params.means.copy(), resp_sum=resp,
                 x_sum=out_x, xx_sum=second_moments_from_full(out_xx, cov_type),
                 log_likelihood=log_likelihood, weight_sum=facts.total,
                 n_rows=facts.n_positive, worst_log_prob=np.empty(0),
                 worst_points=np.empty((0, d)))
