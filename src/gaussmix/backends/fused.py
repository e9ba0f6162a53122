"""Fused, multi-threaded E-step kernel (numba) with exact pruning of far components.

Rows come in tiles of spatially close rows (see ``tiles.py``). For each tile:

1. **Bounds.** Every component's log-density is bounded from above over the tile's bounding
   box (interval arithmetic on the whitened coordinates, :func:`_tile_bounds`). The few
   best-bounded components, evaluated exactly, bound every row's largest logit from below;
   components whose bound lies more than ``threshold`` nats below that are skipped for the
   whole tile: their responsibility is below ``exp(-threshold)`` (about 4e-18 for the default
   40 nats), so results equal full EM to rounding.
2. **Logits as a small matrix product.** About the tile's centre ``c`` (``z = x - c``) every
   component's logit is linear in the features ``phi(z) = [1, z, quadratic terms of z]``, so
   the tile's logits are ``Phi @ W`` with ``W`` built from the candidates' parameters. Centring
   on the tile keeps the expanded quadratic forms accurate: ``|z|`` and ``|mu - c|`` are at
   most a few tile widths for every component that matters.
3. **Softmax** in the log domain with a vectorisable polynomial exp (about 1 ulp; libm's exp
   does not vectorise).
4. **Statistics** ``resp.T @ (w * Phi)`` about ``c``, then moved exactly to each component's
   mean and added, in float64, to the block's accumulators.

Tiles are laid out as (candidates, rows) blocks: every inner loop runs over the rows of a
tile (or over the whole block), contiguous, so it vectorises whatever the number of
candidates.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

# Components more than this many nats below a tile's lower bound are skipped.
PRUNE_NATS = 40.0
# The best-bounded components evaluated first to bound every row's largest logit from below.
SEED_COMPONENTS = 4
# With this few components the bounds cost more than the pairs they skip (measured on 2-D
# and 5-D pictures: break-even near 16 components, 15-25% saved at 30): every tile takes
# them all.
PRUNE_MIN_K = 24

_LOG2E = 1.4426950408889634
_LN2_HI = 0.6931471803691238
_LN2_LO = 1.9082149292705877e-10
# Adding 1.5 * 2**52 rounds a double to an integer held in its low mantissa bits.
_MAGIC = 6755399441055744.0
_MAGIC_BITS = int(np.float64(_MAGIC).view(np.int64))
_C = tuple(1.0 / math.factorial(n) for n in range(13))
_C0, _C1, _C2, _C3, _C4, _C5, _C6, _C7, _C8, _C9, _C10, _C11, _C12 = _C
# Responsibilities below exp(-700) (float64) or exp(-80) (float32) are that small instead.
_EXP_FLOOR = -700.0

# float32: the same scheme in single precision (typed constants keep every operation in
# float32), with Cephes' expf polynomial (about 1 ulp on |r| <= ln(2) / 2).
_F = np.float32
_EXP_FLOOR_F = _F(-80.0)
_LOG2E_F = _F(_LOG2E)
_HALF_F = _F(0.5)
_ONE_F = _F(1.0)
_LN2_HI_F = _F(0.693359375)
_LN2_LO_F = _F(-2.12194440e-4)
_MAGIC_F = _F(12582912.0)  # 1.5 * 2**23
_MAGIC_BITS_F = int(np.float32(12582912.0).view(np.int32))
_P_F = tuple(_F(c) for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
                             4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1))
_P0F, _P1F, _P2F, _P3F, _P4F, _P5F = _P_F

# Vectorising reductions needs reassociation; no assumptions about NaN or infinity.
_FAST = {"contract", "reassoc", "nsz"}
# The exp must not be reassociated: its argument reduction relies on exact rounding.
_EXACT = {"contract"}


@njit(cache=True, fastmath=_EXACT, inline="always")
def _exp_nonpositive(x, out, bits, n):
    """``out[:n] = exp(x[:n])`` for ``x <= 0`` (float64; ``x`` below -700 taken as -700),
    vectorisable, within about 1 ulp.

    exp(x) = 2^k exp(r) with k = round(x / ln 2), |r| <= ln(2) / 2, exp(r) by its Taylor
    polynomial of degree 12, and 2^k assembled in the exponent bits of ``bits`` (k + 1.5 * 2^52
    holds k in its low bits, which integer arithmetic moves into the exponent).
    """
    ibits = bits.view(np.int64)
    for j in range(n):
        v = max(x[j], _EXP_FLOOR)
        k = np.floor(v * _LOG2E + 0.5)
        bits[j] = k + _MAGIC
        r = v - k * _LN2_HI - k * _LN2_LO
        p = _C12
        p = p * r + _C11
        p = p * r + _C10
        p = p * r + _C9
        p = p * r + _C8
        p = p * r + _C7
        p = p * r + _C6
        p = p * r + _C5
        p = p * r + _C4
        p = p * r + _C3
        p = p * r + _C2
        p = p * r + _C1
        out[j] = p * r + _C0
    for j in range(n):
        ibits[j] = (ibits[j] - _MAGIC_BITS + 1023) << 52
    for j in range(n):
        out[j] *= bits[j]


@njit(cache=True, fastmath=_EXACT, inline="always")
def _exp_nonpositive_f32(x, out, bits, n):
    """:func:`_exp_nonpositive` in float32 (``x`` below -80 taken as -80): 2^k exp(r) with
    Cephes' degree-7 polynomial, 2^k assembled in the exponent bits of ``bits``."""
    ibits = bits.view(np.int32)
    for j in range(n):
        v = max(x[j], _EXP_FLOOR_F)
        k = np.floor(v * _LOG2E_F + _HALF_F)
        bits[j] = k + _MAGIC_F
        r = v - k * _LN2_HI_F - k * _LN2_LO_F
        p = _P0F
        p = p * r + _P1F
        p = p * r + _P2F
        p = p * r + _P3F
        p = p * r + _P4F
        p = p * r + _P5F
        out[j] = p * r * r + r + _ONE_F
    for j in range(n):
        ibits[j] = (ibits[j] - _MAGIC_BITS_F + 127) << 23
    for j in range(n):
        out[j] *= bits[j]


def exp_nonpositive(x, out, bits, n):
    """``out[:n] = exp(x[:n])`` for ``x <= 0`` in the arrays' precision (in compiled code:
    the float32 or float64 kernel)."""
    if x.dtype == np.float32:
        _exp_nonpositive_f32(x, out, bits, n)
    else:
        _exp_nonpositive(x, out, bits, n)


@overload(exp_nonpositive, inline="always")
def _exp_nonpositive_overload(x, out, bits, n):
    if x.dtype == types.float32:
        return lambda x, out, bits, n: _exp_nonpositive_f32(x, out, bits, n)
    return lambda x, out, bits, n: _exp_nonpositive(x, out, bits, n)


@njit(cache=True)
def _tile_bounds(t, boxes, means, prec_chol, log_norm, lam_min, diagonal, bound, centre, half,
                 diff):
    """Fill ``bound`` with an upper bound of each component's logit over tile t's box.

    The squared Mahalanobis distance ``sum_j y_j^2``, ``y = (x - mu) U``, is bounded below
    over the box by interval arithmetic: each whitened coordinate ``y_j`` is linear in x, so
    over the box it lies within its value at the centre plus or minus
    ``sum_i half_width_i |U_ij|``, and ``y_j^2`` is at least the squared distance of that
    interval to zero (exact for diagonal precisions). The smallest precision eigenvalue times
    the squared distance from the mean to the box is a second bound; the larger is used.
    """
    k_total, d = means.shape
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


@njit(cache=True)
def _best_indices(values, count, out):
    """Indices of the ``count`` largest ``values`` (count small), into ``out``."""
    n = values.shape[0]
    for j in range(count):
        best = -1
        for k in range(n):
            taken = False
            for i in range(j):
                if out[i] == k:
                    taken = True
            if not taken and (best < 0 or values[k] > values[best]):
                best = k
        out[j] = best


@njit(cache=True)
def _tile_features(x, s, e, centre, diagonal, phi):
    """``phi[:, r] = [1, z, quadratic terms of z]`` for ``z = x[s + r] - centre``.

    Features are rows and tile rows columns (``phi`` has shape (F, R_max)). Quadratic terms:
    squares for diagonal precisions, else products ``z_i z_l`` (i <= l) in row-major order of
    the upper triangle.
    """
    d = centre.shape[0]
    for n in range(s, e):
        r = n - s
        phi[0, r] = 1.0
        for i in range(d):
            phi[1 + i, r] = x[n, i] - centre[i]
        p = 1 + d
        if diagonal:
            for i in range(d):
                phi[p, r] = phi[1 + i, r] * phi[1 + i, r]
                p += 1
        else:
            for i in range(d):
                zi = phi[1 + i, r]
                for l in range(i, d):
                    phi[p, r] = zi * phi[1 + l, r]
                    p += 1


@njit(cache=True)
def _tile_coefficients(cand, n_cand, centre, means, precisions, log_norm, diagonal, coef, m):
    """``coef[:, j]`` such that ``phi(z) @ coef[:, j]`` is candidate j's logit.

    ``logit = log_norm - (z - m)^T Lambda (z - m) / 2`` with ``m = mu - centre``.
    """
    d = centre.shape[0]
    for j in range(n_cand):
        k = cand[j]
        for i in range(d):
            m[i] = means[k, i] - centre[i]
        quad_mean = 0.0
        if diagonal:
            for i in range(d):
                lam = precisions[k, i, i]
                coef[1 + i, j] = lam * m[i]
                coef[1 + d + i, j] = -0.5 * lam
                quad_mean += lam * m[i] * m[i]
        else:
            p = 1 + d
            for i in range(d):
                lin = 0.0
                for l in range(d):
                    lin += precisions[k, i, l] * m[l]
                coef[1 + i, j] = lin
                quad_mean += lin * m[i]
                coef[p, j] = -0.5 * precisions[k, i, i]
                p += 1
                for l in range(i + 1, d):
                    coef[p, j] = -precisions[k, i, l]
                    p += 1
        coef[0, j] = log_norm[k] - 0.5 * quad_mean


@njit(cache=True, fastmath=_FAST)
def _tile_logits(phi, n_rows, coef, n_cand, logits):
    """``logits[j * n_rows + r] = coef[:, j] . phi[:, r]`` (vectorised over rows).

    ``logits`` is a flat buffer holding an (n_cand, n_rows) block.
    """
    n_feat = phi.shape[0]
    for j in range(n_cand):
        base = j * n_rows
        c0 = coef[0, j]
        for r in range(n_rows):
            logits[base + r] = c0
        for f in range(1, n_feat):
            c = coef[f, j]
            for r in range(n_rows):
                logits[base + r] += c * phi[f, r]


@njit(cache=True, fastmath=_EXACT)
def _tile_softmax(logits, n_rows, n_cand, row_weights, out_log_prob, top, total, bits):
    """Weighted responsibilities in place of the (n_cand, n_rows) logits block, in the
    logits' precision.

    ``out_log_prob[r] = log p(row r)``; every loop runs over rows or over the whole block.
    """
    size = n_cand * n_rows
    for r in range(n_rows):
        top[r] = -np.inf
        total[r] = 0.0
    for j in range(n_cand):
        base = j * n_rows
        for r in range(n_rows):
            top[r] = max(top[r], logits[base + r])
    for j in range(n_cand):
        base = j * n_rows
        for r in range(n_rows):
            logits[base + r] -= top[r]
    exp_nonpositive(logits, logits, bits, size)
    for j in range(n_cand):
        base = j * n_rows
        for r in range(n_rows):
            total[r] += logits[base + r]
    for r in range(n_rows):
        out_log_prob[r] = top[r] + np.log(total[r])
        total[r] = row_weights[r] / total[r]
    for j in range(n_cand):
        base = j * n_rows
        for r in range(n_rows):
            logits[base + r] *= total[r]


@njit(cache=True, fastmath=_FAST)
def _tile_moments(phi, n_rows, resp, n_cand, moments):
    """``moments[f, j] = sum_r phi[f, r] resp[j * n_rows + r]`` (dot products over rows)."""
    n_feat = phi.shape[0]
    for j in range(n_cand):
        base = j * n_rows
        for f in range(n_feat):
            acc = phi.dtype.type(0)
            for r in range(n_rows):
                acc += phi[f, r] * resp[base + r]
            moments[f, j] = acc


@njit(cache=True)
def _scatter(b, cand, n_cand, centre, means, diagonal, moments, resp_sum, x_sum, xx_sum, m):
    """Move a tile's moments about its centre to each candidate's mean and add them up.

    With ``m = mu - c``: ``sum r (z - m) = M1 - N m`` and
    ``sum r (z - m)(z - m)^T = M2 - M1 m^T - m M1^T + N m m^T``.
    """
    d = centre.shape[0]
    for j in range(n_cand):
        k = cand[j]
        total = moments[0, j]
        if total == 0.0:
            continue
        for i in range(d):
            m[i] = means[k, i] - centre[i]
        resp_sum[b, k] += total
        for i in range(d):
            x_sum[b, k, i] += moments[1 + i, j] - total * m[i]
        p = 1 + d
        if diagonal:
            for i in range(d):
                xx_sum[b, k, i] += (moments[p + i, j] - 2.0 * m[i] * moments[1 + i, j]
                                    + total * m[i] * m[i])
        else:
            q = 0
            for i in range(d):
                for l in range(i, d):
                    xx_sum[b, k, q] += (moments[p, j] - m[l] * moments[1 + i, j]
                                        - m[i] * moments[1 + l, j] + total * m[i] * m[l])
                    p += 1
                    q += 1


@njit(cache=True)
def _select_candidates(t, s, e, x, w, boxes, means, prec_chol, precisions, log_norm, lam_min,
                       diagonal, threshold, bound, centre, half, diff, seeds, cand, phi, coef,
                       logits, m):
    """Candidates of tile t (all components when few or when ``threshold`` is infinite:
    tiles that are not spatial); returns their number (0: no rows with a positive weight)."""
    k_total = means.shape[0]
    n_rows = e - s
    any_weight = False
    for n in range(s, e):
        if w[n] > 0.0:
            any_weight = True
    if not any_weight:
        return 0
    if k_total <= PRUNE_MIN_K or threshold == np.inf:
        for k in range(k_total):
            cand[k] = k
        return k_total
    _tile_bounds(t, boxes, means, prec_chol, log_norm, lam_min, diagonal, bound, centre, half,
                 diff)
    n_seed = seeds.shape[0]
    _best_indices(bound, n_seed, seeds)
    _tile_coefficients(seeds, n_seed, centre, means, precisions, log_norm, diagonal, coef, m)
    _tile_logits(phi, n_rows, coef, n_seed, logits)
    floor = np.inf
    for r in range(n_rows):
        if w[s + r] <= 0.0:
            continue
        best = -np.inf
        for j in range(n_seed):
            best = max(best, logits[j * n_rows + r])
        floor = min(floor, best)
    n_cand = 0
    for k in range(k_total):
        if bound[k] >= floor - threshold:
            cand[n_cand] = k
            n_cand += 1
    return n_cand


@njit(cache=True, fastmath=_FAST, inline="always")
def _tile_frame(t, x, s, e, boxes, diagonal, centre, half, phi):
    """Tile ``t``'s box centre and half-widths, and the features of its rows about the
    centre (into ``centre``, ``half`` and ``phi``)."""
    for i in range(x.shape[1]):
        centre[i] = 0.5 * (boxes[t, 0, i] + boxes[t, 1, i])
        half[i] = 0.5 * (boxes[t, 1, i] - boxes[t, 0, i])
    _tile_features(x, s, e, centre, diagonal, phi)


@njit(cache=True)
def _max_tile_rows(starts):
    max_rows = 0
    for t in range(starts.shape[0] - 1):
        max_rows = max(max_rows, starts[t + 1] - starts[t])
    return max_rows


@njit(cache=True, inline="always")
def _tile_scratch(k_total, d, n_feat, max_rows, x):
    """Work arrays of one thread for tiles of up to ``max_rows`` rows (see the kernels);
    features, logits and softmax in the precision of the rows ``x``."""
    dt = x.dtype
    return (np.empty(k_total), np.empty(k_total, dtype=np.int64),
            np.empty(min(SEED_COMPONENTS, k_total), dtype=np.int64), np.empty(d), np.empty(d),
            np.empty(d), np.empty(d), np.empty((n_feat, max_rows), dt),
            np.empty((n_feat, k_total), dt), np.empty(k_total * max_rows, dt),
            np.empty(k_total * max_rows, dt), np.empty(max_rows), np.empty(max_rows, dt),
            np.empty(max_rows, dt))


@njit(parallel=True, cache=True, nogil=True)
def fused_e_step(x, w, starts, boxes, means, prec_chol, precisions, log_norm, lam_min, diagonal,
                 threshold, resp_sum, x_sum, xx_sum, log_prob, log_lik, pairs):
    """One E-step over tiled rows, accumulating per block of tiles.

    Parameters
    ----------
    x : (N, D) float64 or float32, working coordinates, tiles contiguous; logits, softmax
        and per-tile moments run in this precision, the accumulators in float64
    w : (N,) float64 weights
    starts : (n_tiles + 1,) int64 tile boundaries
    boxes : (n_tiles, 2, D) float64 tile bounding boxes
    means : (K, D) float64
    prec_chol : (K, D, D) float64, upper Cholesky factors of the precisions (for the bounds)
    precisions : (K, D, D) float64, the precision matrices (for the logits)
    log_norm : (K,) float64, log w_k + log det U_k - D log(2 pi) / 2
    lam_min : (K,) float64, a lower bound of each precision's smallest eigenvalue
    diagonal : bool, whether the precisions are diagonal
    threshold : float, pruning margin in nats; ``inf``: no pruning (tiles not spatial)
    resp_sum : (B, K) float64 out, zeroed; B blocks of tiles run in parallel
    x_sum : (B, K, D) float64 out, about the means
    xx_sum : (B, K, Q) float64 out, about the means: packed upper triangle by rows
        (Q = D(D+1)/2), or the diagonal (Q = D) when ``diagonal``
    log_prob : (N,) float64 out, log p(x_n) (-inf for zero-weight rows)
    log_lik : (B,) float64 out, sum of w_n log p(x_n) over each block's positive-weight rows
    pairs : (B,) int64 out, (row, component) pairs evaluated
    """
    n_blocks = resp_sum.shape[0]
    n_tiles = starts.shape[0] - 1
    k_total, d = means.shape
    n_feat = 1 + d + (d if diagonal else d * (d + 1) // 2)
    max_rows = _max_tile_rows(starts)
    for b in prange(n_blocks):
        (bound, cand, seeds, centre, half, diff, m, phi, coef, logits, bits, row_log_prob, top,
         total) = _tile_scratch(k_total, d, n_feat, max_rows, x)
        moments = np.empty((n_feat, k_total), x.dtype)
        block_pairs = 0  # counted locally: a shared counter would bounce between cores
        block_log_lik = 0.0
        for t in range(b * n_tiles // n_blocks, (b + 1) * n_tiles // n_blocks):
            s = starts[t]
            e = starts[t + 1]
            n_rows = e - s
            _tile_frame(t, x, s, e, boxes, diagonal, centre, half, phi)
            n_cand = _select_candidates(t, s, e, x, w, boxes, means, prec_chol, precisions,
                                        log_norm, lam_min, diagonal, threshold, bound, centre,
                                        half, diff, seeds, cand, phi, coef, logits, m)
            if n_cand == 0:
                for n in range(s, e):
                    log_prob[n] = -np.inf
                continue
            block_pairs += n_rows * n_cand
            _tile_coefficients(cand, n_cand, centre, means, precisions, log_norm, diagonal,
                               coef, m)
            _tile_logits(phi, n_rows, coef, n_cand, logits)
            _tile_softmax(logits, n_rows, n_cand, w[s:e], row_log_prob, top, total, bits)
            for r in range(n_rows):
                if w[s + r] > 0.0:
                    log_prob[s + r] = row_log_prob[r]
                    block_log_lik += w[s + r] * row_log_prob[r]
                else:
                    log_prob[s + r] = -np.inf
            _tile_moments(phi, n_rows, logits, n_cand, moments)
            _scatter(b, cand, n_cand, centre, means, diagonal, moments, resp_sum, x_sum, xx_sum,
                     m)
        pairs[b] = block_pairs
        log_lik[b] = block_log_lik


@njit(parallel=True, cache=True, nogil=True)
def fused_log_density(x, starts, boxes, means, prec_chol, precisions, log_norm, lam_min,
                      diagonal, threshold, n_blocks, log_prob, labels):
    """``log p(x_n)`` and the most likely component of tiled rows, with the same pruning;
    ``n_blocks`` blocks of consecutive tiles run in parallel, each with one set of work
    arrays."""
    n_tiles = starts.shape[0] - 1
    k_total, d = means.shape
    n_feat = 1 + d + (d if diagonal else d * (d + 1) // 2)
    max_rows = _max_tile_rows(starts)
    w = np.ones(x.shape[0])
    for b in prange(n_blocks):
        (bound, cand, seeds, centre, half, diff, m, phi, coef, logits, bits, row_log_prob, top,
         total) = _tile_scratch(k_total, d, n_feat, max_rows, x)
        for t in range(b * n_tiles // n_blocks, (b + 1) * n_tiles // n_blocks):
            s = starts[t]
            e = starts[t + 1]
            n_rows = e - s
            _tile_frame(t, x, s, e, boxes, diagonal, centre, half, phi)
            n_cand = _select_candidates(t, s, e, x, w, boxes, means, prec_chol, precisions,
                                        log_norm, lam_min, diagonal, threshold, bound, centre,
                                        half, diff, seeds, cand, phi, coef, logits, m)
            _tile_coefficients(cand, n_cand, centre, means, precisions, log_norm, diagonal,
                               coef, m)
            _tile_logits(phi, n_rows, coef, n_cand, logits)
            for r in range(n_rows):
                best = 0
                for j in range(1, n_cand):
                    if logits[j * n_rows + r] > logits[best * n_rows + r]:
                        best = j
                labels[s + r] = cand[best]
            _tile_softmax(logits, n_rows, n_cand, w[s:e], row_log_prob, top, total, bits)
            for r in range(n_rows):
                log_prob[s + r] = row_log_prob[r]
