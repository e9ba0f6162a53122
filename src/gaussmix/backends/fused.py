"""Fused, multi-threaded E-step kernel (numba) with exact pruning of far components.

For each tile of spatially close rows the kernel bounds every component's log-density from
above over the tile's bounding box,

    logit_k(x) <= log_norm_k - lambda_min(Lambda_k) * dist(mu_k, box)^2 / 2,

evaluates a few components with the best bounds exactly to get a lower bound ``B`` of every
row's largest logit, and skips the components whose bound lies more than ``threshold`` nats
below ``B``: their responsibility is below ``exp(-threshold)`` for every row of the tile
(about 4e-18 for the default 40 nats), so results equal full EM to rounding. The surviving
pairs are evaluated in difference form (``(x - mu_k) U_k``), normalised in the log domain and
accumulated, about the current means, in float64, in one pass over the tile.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# Components more than this many nats below a tile's best lower bound are skipped.
PRUNE_NATS = 40.0
# The best-bounded components evaluated first to bound every row's largest logit from below.
SEED_COMPONENTS = 4


@njit(cache=True, inline="always")
def _mahalanobis(x, n, means, k, prec_chol, diagonal, diff):
    """Squared Mahalanobis distance of row n to component k (difference form)."""
    d = means.shape[1]
    for i in range(d):
        diff[i] = x[n, i] - means[k, i]
    q = 0.0
    if diagonal:
        for i in range(d):
            v = diff[i] * prec_chol[k, i, i]
            q += v * v
    else:
        for j in range(d):
            v = 0.0
            for i in range(j + 1):
                v += diff[i] * prec_chol[k, i, j]
            q += v * v
    return q


@njit(cache=True)
def _tile_candidates(t, boxes, means, prec_chol, log_norm, lam_min, diagonal, bound, centre,
                     half, diff):
    """Fill ``bound`` with an upper bound of each component's logit over tile t's box.

    The squared Mahalanobis distance ``sum_j y_j^2``, ``y = (x - mu) U``, is bounded below
    over the box by interval arithmetic: each whitened coordinate ``y_j`` is linear in x, so
    over the box it lies within its value at the centre plus or minus
    ``sum_i half_width_i |U_ij|``, and ``y_j^2`` is at least the squared distance of that
    interval to zero (exact for diagonal precisions). The smallest precision eigenvalue times
    the squared distance from the mean to the box is a second bound; the larger is used.
    """
    k_total, d = means.shape
    for i in range(d):
        centre[i] = 0.5 * (boxes[t, 0, i] + boxes[t, 1, i])
        half[i] = 0.5 * (boxes[t, 1, i] - boxes[t, 0, i])
    for k in range(k_total):
        d2 = 0.0
        for i in range(d):
            m = means[k, i]
            lo = boxes[t, 0, i]
            hi = boxes[t, 1, i]
            g = lo - m if m < lo else (m - hi if m > hi else 0.0)
            d2 += g * g
            diff[i] = centre[i] - m
        q_interval = 0.0
        if diagonal:
            for i in range(d):
                u = abs(prec_chol[k, i, i])
                g = abs(diff[i]) * u - half[i] * u
                if g > 0.0:
                    q_interval += g * g
        else:
            for j in range(d):
                y = 0.0
                r = 0.0
                for i in range(j + 1):
                    u = prec_chol[k, i, j]
                    y += diff[i] * u
                    r += half[i] * abs(u)
                g = abs(y) - r
                if g > 0.0:
                    q_interval += g * g
        # Shrunk a little so that rounding never makes the bound too tight.
        q = max(lam_min[k] * d2, q_interval * (1.0 - 1e-9))
        bound[k] = log_norm[k] - 0.5 * q


@njit(parallel=True, cache=True, nogil=True)
def fused_e_step(x, w, starts, boxes, means, prec_chol, log_norm, lam_min, diagonal, threshold,
                 resp_sum, x_sum, xx_sum, log_prob, pairs):
    """One E-step over tiled rows, accumulating per block of tiles.

    Parameters
    ----------
    x : (N, D) float64 or float32, working coordinates, tiles contiguous
    w : (N,) float64 weights
    starts : (n_tiles + 1,) int64 tile boundaries
    boxes : (n_tiles, 2, D) float64 tile bounding boxes
    means : (K, D) float64
    prec_chol : (K, D, D) float64, upper Cholesky factors of the precisions
    log_norm : (K,) float64, log w_k + log det U_k - D log(2 pi) / 2
    lam_min : (K,) float64, a lower bound of each precision's smallest eigenvalue
    diagonal : bool, whether the precisions are diagonal
    threshold : float, pruning margin in nats
    resp_sum : (B, K) float64 out, zeroed; B blocks of tiles run in parallel
    x_sum : (B, K, D) float64 out, about the means
    xx_sum : (B, K, Q) float64 out, about the means: packed upper triangle (Q = D(D+1)/2),
        or the diagonal (Q = D) when ``diagonal``
    log_prob : (N,) float64 out, log p(x_n) (-inf for zero-weight rows)
    pairs : (B,) int64 out, (row, component) pairs evaluated
    """
    n_blocks = resp_sum.shape[0]
    n_tiles = starts.shape[0] - 1
    k_total, d = means.shape
    max_rows = 0
    for t in range(n_tiles):
        max_rows = max(max_rows, starts[t + 1] - starts[t])
    n_seed = min(SEED_COMPONENTS, k_total)
    for b in prange(n_blocks):
        bound = np.empty(k_total)
        cand = np.empty(k_total, dtype=np.int64)
        seeds = np.empty(n_seed, dtype=np.int64)
        diff = np.empty(d)
        centre = np.empty(d)
        half = np.empty(d)
        logits = np.empty((max_rows, k_total))
        row_floor = np.empty(max_rows)
        cand_bound = np.empty(k_total)
        sorted_cand = np.empty(k_total, dtype=np.int64)
        t_begin = b * n_tiles // n_blocks
        t_end = (b + 1) * n_tiles // n_blocks
        for t in range(t_begin, t_end):
            s = starts[t]
            e = starts[t + 1]
            _tile_candidates(t, boxes, means, prec_chol, log_norm, lam_min, diagonal, bound,
                             centre, half, diff)
            # The best-bounded components, evaluated exactly, bound each row's best logit.
            for j in range(n_seed):
                best = -1
                for k in range(k_total):
                    taken = False
                    for i in range(j):
                        if seeds[i] == k:
                            taken = True
                    if not taken and (best < 0 or bound[k] > bound[best]):
                        best = k
                seeds[j] = best
            floor = np.inf
            for n in range(s, e):
                if w[n] <= 0.0:
                    continue
                row_best = -np.inf
                for j in range(n_seed):
                    k = seeds[j]
                    v = log_norm[k] - 0.5 * _mahalanobis(x, n, means, k, prec_chol, diagonal,
                                                         diff)
                    if v > row_best:
                        row_best = v
                row_floor[n - s] = row_best
                if row_best < floor:
                    floor = row_best
            if floor == np.inf:  # every row of the tile has zero weight
                for n in range(s, e):
                    log_prob[n] = -np.inf
                continue
            n_cand = 0
            for k in range(k_total):
                if bound[k] >= floor - threshold:
                    cand[n_cand] = k
                    n_cand += 1
            # Candidates by decreasing bound: each row stops at the first one whose bound is
            # more than ``threshold`` below that row's own best seed logit.
            order = np.argsort(-bound[cand[:n_cand]])
            for j in range(n_cand):
                cand_bound[j] = bound[cand[order[j]]]
                sorted_cand[j] = cand[order[j]]
            for n in range(s, e):
                r = n - s
                if w[n] <= 0.0:
                    log_prob[n] = -np.inf
                    continue
                limit = row_floor[r] - threshold
                n_row = n_cand
                for j in range(n_cand):
                    if cand_bound[j] < limit:
                        n_row = j
                        break
                pairs[b] += n_row
                top = -np.inf
                for j in range(n_row):
                    k = sorted_cand[j]
                    v = log_norm[k] - 0.5 * _mahalanobis(x, n, means, k, prec_chol, diagonal,
                                                         diff)
                    logits[r, j] = v
                    if v > top:
                        top = v
                total = 0.0
                for j in range(n_row):
                    gap = logits[r, j] - top
                    v = np.exp(gap) if gap > -threshold else 0.0
                    logits[r, j] = v
                    total += v
                log_prob[n] = top + np.log(total)
                scale = w[n] / total
                for j in range(n_row):
                    resp = logits[r, j] * scale
                    if resp == 0.0:
                        continue
                    k = sorted_cand[j]
                    resp_sum[b, k] += resp
                    for i in range(d):
                        diff[i] = x[n, i] - means[k, i]
                        x_sum[b, k, i] += resp * diff[i]
                    if diagonal:
                        for i in range(d):
                            xx_sum[b, k, i] += resp * diff[i] * diff[i]
                    else:
                        p = 0
                        for i in range(d):
                            ri = resp * diff[i]
                            for i2 in range(i, d):
                                xx_sum[b, k, p] += ri * diff[i2]
                                p += 1


@njit(parallel=True, cache=True, nogil=True)
def fused_log_density(x, starts, boxes, means, prec_chol, log_norm, lam_min, diagonal,
                      threshold, log_prob, labels):
    """``log p(x_n)`` and the most likely component of tiled rows, with the same pruning."""
    n_tiles = starts.shape[0] - 1
    k_total, d = means.shape
    n_seed = min(SEED_COMPONENTS, k_total)
    for t in prange(n_tiles):
        bound = np.empty(k_total)
        cand = np.empty(k_total, dtype=np.int64)
        seeds = np.empty(n_seed, dtype=np.int64)
        diff = np.empty(d)
        centre = np.empty(d)
        half = np.empty(d)
        s = starts[t]
        e = starts[t + 1]
        _tile_candidates(t, boxes, means, prec_chol, log_norm, lam_min, diagonal, bound, centre,
                         half, diff)
        for j in range(n_seed):
            best = -1
            for k in range(k_total):
                taken = False
                for i in range(j):
                    if seeds[i] == k:
                        taken = True
                if not taken and (best < 0 or bound[k] > bound[best]):
                    best = k
            seeds[j] = best
        floor = np.inf
        for n in range(s, e):
            row_best = -np.inf
            for j in range(n_seed):
                k = seeds[j]
                v = log_norm[k] - 0.5 * _mahalanobis(x, n, means, k, prec_chol, diagonal, diff)
                if v > row_best:
                    row_best = v
            if row_best < floor:
                floor = row_best
        n_cand = 0
        for k in range(k_total):
            if bound[k] >= floor - threshold:
                cand[n_cand] = k
                n_cand += 1
        for n in range(s, e):
            top = -np.inf
            arg = -1
            for j in range(n_cand):
                k = cand[j]
                v = log_norm[k] - 0.5 * _mahalanobis(x, n, means, k, prec_chol, diagonal, diff)
                if v > top:
                    top = v
                    arg = k
            total = 0.0
            for j in range(n_cand):
                k = cand[j]
                v = log_norm[k] - 0.5 * _mahalanobis(x, n, means, k, prec_chol, diagonal, diff)
                gap = v - top
                if gap > -threshold:
                    total += np.exp(gap)
            log_prob[n] = top + np.log(total)
            labels[n] = arg
