"""Rows with missing entries on the fused kernel: every missingness pattern in one pass.

A row with holes is scored by the marginal of its observed features. Each pattern's
marginal mixture is written in full dimension, padded: mean 0 and unit precision on the
missing features, whose entries in the rows are 0 too, so they add nothing to any logit,
bound or moment. The kernel then runs all patterns at once, each tile (rows of one
pattern) seeing only its pattern's group of components, with the same exact pruning as
complete rows. The missing moments follow from the observed ones per pattern and component
(``B = S_mo S_oo^-1``, ``C = S_mm - B S_om``, see ``_missing.stats``), in a second kernel.

Padded parameters take K D^2 values per pattern; patterns are run in batches that keep
them about ``BATCH_VALUES``, so memory stays bounded for any number of patterns.
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
# Padded parameters per batch of patterns (values of one (G K, D, D) array): about 32 MB.
BATCH_VALUES = 4 * 2**20


@njit(parallel=True, cache=True, nogil=True)
def marginal_pieces(covariances, means, log_weights, observed, prec_chol, precisions,
                    padded_means, log_norm):
    """Every pattern's marginal mixture, padded to D features (see the module).

    Parameters
    ----------
    covariances : (K, D, D) float64
    means : (K, D) float64
    log_weights : (K,) float64
    observed : (P, D) bool, each pattern's observed features (at least one)
    prec_chol, precisions : (P K, D, D) float64 out, pattern p's component k at ``p K + k``:
        the upper Cholesky factor ``U = L^-T`` of ``S_oo^-1`` (``S_oo = L L^T``) and
        ``U U^T``, identity on the missing features
    padded_means : (P K, D) float64 out, 0 on the missing features
    log_norm : (P K,) float64 out, ``log w_k - (o log 2 pi + log det S_oo) / 2``
    """
    n_patterns, d = observed.shape
    k_total = means.shape[0]
    for c in prange((k_total + PIECE_CHUNK - 1) // PIECE_CHUNK):
        idx = np.empty(d, dtype=np.int64)
        chol = np.zeros((d, d))
        inv = np.zeros((d, d))  # L^-1, lower triangular
        for p in range(n_patterns):
            for k in range(c * PIECE_CHUNK, min(k_total, (c + 1) * PIECE_CHUNK)):
                _marginal_piece(covariances, means, log_weights, observed, p, k, idx, chol,
                                inv, prec_chol, precisions, padded_means, log_norm)


@njit(cache=True, inline="always")
def _marginal_piece(covariances, means, log_weights, observed, p, k, idx, chol, inv,
                    prec_chol, precisions, padded_means, log_norm):
    """Pattern p's marginal of component k (see :func:`marginal_pieces`); ``idx``, ``chol``
    and ``inv`` are scratch."""
    d = observed.shape[1]
    pk = p * means.shape[0] + k
    o = 0
    for i in range(d):
        if observed[p, i]:
            idx[o] = i
            o += 1
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
    for i in range(d):
        padded_means[pk, i] = 0.0
        for j in range(d):
            prec_chol[pk, i, j] = 0.0
            precisions[pk, i, j] = 0.0
        if not observed[p, i]:
            prec_chol[pk, i, i] = 1.0
            precisions[pk, i, i] = 1.0
    for a in range(o):
        padded_means[pk, idx[a]] = means[k, idx[a]]
        for b in range(a, o):
            prec_chol[pk, idx[a], idx[b]] = inv[b, a]  # U = L^-T
        for b in range(a, o):
            acc = 0.0  # (L^-T L^-1)[a, b] = sum_c inv[c, a] inv[c, b]
            for c in range(b, o):
                acc += inv[c, a] * inv[c, b]
            precisions[pk, idx[a], idx[b]] = acc
            precisions[pk, idx[b], idx[a]] = acc
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
    precisions : (P K, D, D) float64, from :func:`marginal_pieces` (``S_oo^-1`` padded)
    observed : (P, D) bool
    diagonal : bool, whether the kernel ran diagonal precisions (``xx_sum`` diagonals)
    resp_slots : (S, K), x_slots : (S, K, D), xx_slots : (S, K, Q): the kernel's sums about
        the means (zero on the missing features) in its slots, pattern p's in slots
        ``covers[p]`` (see ``numba_backend.KernelSums``)
    covers : (P, B) int64
    out_resp : (K,) float64 in/out
    out_x : (K, D) float64 in/out
    out_xx : (K, D, D) float64 in/out, full second moments about the means
    """
    n_patterns, d = observed.shape
    k_total = covariances.shape[0]
    n_packed = xx_slots.shape[2]
    for chunk in prange((k_total + PIECE_CHUNK - 1) // PIECE_CHUNK):
        obs = np.empty(d, dtype=np.int64)
        mis = np.empty(d, dtype=np.int64)
        x_sum = np.empty(d)
        xx_sum = np.empty(n_packed)
        s2 = np.empty((d, d))
        reg = np.empty((d, d))  # B (m, o)
        cross = np.empty((d, d))  # S2 B^T (o, m)
        for p in range(n_patterns):
            o = 0
            m = 0
            for i in range(d):
                if observed[p, i]:
                    obs[o] = i
                    o += 1
                else:
                    mis[m] = i
                    m += 1
            for k in range(chunk * PIECE_CHUNK, min(k_total, (chunk + 1) * PIECE_CHUNK)):
                pk = p * k_total + k
                n = 0.0
                for slot in covers[p]:
                    if slot >= 0:
                        n += resp_slots[slot, k]
                if n == 0.0:
                    continue
                for i in range(d):
                    x_sum[i] = 0.0
                for i in range(n_packed):
                    xx_sum[i] = 0.0
                for slot in covers[p]:
                    if slot >= 0:
                        for i in range(d):
                            x_sum[i] += x_slots[slot, k, i]
                        for i in range(n_packed):
                            xx_sum[i] += xx_slots[slot, k, i]
                out_resp[k] += n
                for i in range(d):
                    for j in range(d):
                        s2[i, j] = 0.0
                if diagonal:
                    for i in range(d):
                        s2[i, i] = xx_sum[i]
                else:
                    q = 0
                    for i in range(d):
                        for j in range(i, d):
                            s2[i, j] = xx_sum[q]
                            s2[j, i] = xx_sum[q]
                            q += 1
                for a in range(m):
                    for b in range(o):
                        acc = 0.0
                        for c in range(o):
                            acc += covariances[k, mis[a], obs[c]] * precisions[pk, obs[c], obs[b]]
                        reg[a, b] = acc
                for a in range(o):
                    out_x[k, obs[a]] += x_sum[obs[a]]
                    for b in range(o):
                        out_xx[k, obs[a], obs[b]] += s2[obs[a], obs[b]]
                for a in range(m):
                    acc = 0.0
                    for b in range(o):
                        acc += reg[a, b] * x_sum[obs[b]]
                    out_x[k, mis[a]] += acc
                for a in range(o):
                    for b in range(m):
                        acc = 0.0
                        for c in range(o):
                            acc += s2[obs[a], obs[c]] * reg[b, c]
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


class HoleTiles:
    """Rows with holes (working coordinates, NaN for missing; none entirely missing) in
    spatial tiles, pattern by pattern, padded with zeros; kept for every E-step of a fit.

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
        d = x.shape[1]
        self.observed = np.zeros((len(patterns), d), dtype=bool)
        rows, weights, starts, groups = [], [], [np.zeros(1, dtype=np.int64)], []
        self.pattern_tiles = [0]
        offset = 0
        for g, pattern in enumerate(patterns):
            self.observed[g, pattern.observed] = True
            order, pattern_starts, tiled = kd_tiles(
                np.nan_to_num(x[pattern.rows], nan=0.0),
                tile_rows or pattern_tile_rows(len(pattern.rows)))
            rows.append(tiled)
            weights.append(w[pattern.rows][order])
            starts.append(pattern_starts[1:] + offset)
            groups.append(np.full(len(pattern_starts) - 1, g, dtype=np.int64))
            offset += len(pattern.rows)
            self.pattern_tiles.append(self.pattern_tiles[-1] + len(pattern_starts) - 1)
        self.x = np.ascontiguousarray(np.concatenate(rows) if rows else np.empty((0, d)))
        self.sample_weight = np.ascontiguousarray(
            np.concatenate(weights) if weights else np.empty(0), dtype=np.float64)
        self.weight_facts = WeightFacts.of(self.sample_weight)
        self.starts = np.concatenate(starts)
        self.tile_group = np.concatenate(groups) if groups else np.empty(0, dtype=np.int64)
        self.boxes = tile_boxes(self.x, self.starts)
        self._hints = np.full(len(self.x), -1, dtype=np.int64)
        self._hints_k = None
        self.workspace = Workspace()  # one for every batch: memory of the largest

    def hints(self, n_components):
        """As :meth:`~gaussmix.backends.numba_backend.TiledSource.hints`."""
        if self._hints_k != n_components:
            self._hints.fill(-1)
            self._hints_k = n_components
        return self._hints

    def batches(self, n_components):
        """Consecutive pattern ranges ``(first, stop)`` whose padded parameters stay about
        ``BATCH_VALUES``, and their tiles as sources for the kernel."""
        d = self.x.shape[1]
        per_batch = max(1, BATCH_VALUES // (n_components * d * d))
        hints = self.hints(n_components)
        n_patterns = len(self.observed)
        for first in range(0, n_patterns, per_batch):
            stop = min(n_patterns, first + per_batch)
            yield first, stop, _Batch(self, first, stop, hints)


class _Batch:
    """The tiles of patterns ``first:stop`` of :class:`HoleTiles`, in the kernel's shape
    (views: the hints are updated in place)."""

    def __init__(self, tiles, first, stop, hints):
        t0, t1 = tiles.pattern_tiles[first], tiles.pattern_tiles[stop]
        r0, r1 = tiles.starts[t0], tiles.starts[t1]
        self.kernel_x = tiles.x[r0:r1]
        self.sample_weight = tiles.sample_weight[r0:r1]
        self.starts = tiles.starts[t0:t1 + 1] - r0
        self.boxes = tiles.boxes[t0:t1]
        self.tile_group = tiles.tile_group[t0:t1] - first
        self.workspace = tiles.workspace
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
    for first, stop, batch in tiles.batches(k):
        observed = tiles.observed[first:stop]
        size = (stop - first) * k
        workspace = batch.workspace
        prec_chol = workspace.array("prec_chol", (size, d, d))
        precisions = workspace.array("precisions", (size, d, d))
        padded_means = workspace.array("means", (size, d))
        log_norm = workspace.array("log_norm", (size,))
        marginal_pieces(covariances, means, log_weights, observed, prec_chol, precisions,
                        padded_means, log_norm)
        lam_mins = workspace.array("lam_min", (stop - first, k))
        lam_mins[:] = lam_min
        kp = KernelParams(padded_means, prec_chol, precisions, log_norm, lam_mins.reshape(-1),
                          diagonal)
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
