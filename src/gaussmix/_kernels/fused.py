"""Fused, multi-threaded E-step kernel (numba) with exact pruning of far components.

Rows come in tiles of spatially close rows (see ``tiles.py``). For each tile:

1. **Bounds.** Every component's log-density is bounded from above over the tile's bounding
   box (interval arithmetic on the whitened coordinates, :func:`_tile_bounds`, vectorised over
   the components). Each row's largest logit is bounded from below by its logit under its
   *hint*, the component most likely for it at the last E-step (or, without hints, under the
   few best-bounded components, both in difference form); components whose bound lies more
   than ``threshold`` nats below the smallest of these are skipped for the whole tile: their
   responsibility is below ``exp(-threshold)`` (about 4e-18 for the default 40 nats), so
   results equal full EM to rounding. Any hint keeps this exact; the last E-step's make it
   tight (on a 5-D picture with 1000 components, three times fewer pairs than with the
   best-bounded components).
2. **Logits as a small matrix product, where that is exact.** About the tile's centre ``c``
   (``z = x - c``) every component's logit is linear in the features
   ``phi(z) = [1, z, quadratic terms of z]``, so the tile's logits are ``W @ Phi`` with ``W``
   built from the candidates' parameters (BLAS from ``BLAS_MIN_FEATURES`` features, loops
   below). That expansion sums terms that can be far larger than the logit they make (a wide
   tile, a far row in it, a tight component far from the centre): each candidate's sum of
   absolute terms over the box, ``| |U|^T (h + |mu - c|) |^2``, is checked against
   ``EXPANSION_LIMIT`` (``em``) times one plus the box's least squared distance to it
   (:func:`_expansion_is_exact`), and the candidates that fail take the difference form
   ``|(x - mu) U|^2``, row by row in float64, for their logits and their moments. Either way
   a logit is exact to within a small factor of the difference form's own rounding.
3. **Softmax** in the log domain with a vectorisable polynomial exp (about 1 ulp; libm's exp
   does not vectorise). Candidates more than ``threshold`` nats below every row's best, now
   known exactly, are dropped before the exponentials (about half of those the box bounds
   keep). A row whose every distance overflows (a row at 1e155 under components of unit
   size) has log-density -inf and no responsibility, and the other rows of its tile keep
   theirs. A row's responsibilities more than ``PRUNE_NATS`` below its best are zero; where
   a tile keeps at most ``SPARSE_SHARE`` of its pairs (each row near a few of many
   components), only the kept pairs are exponentiated and summed, from a list.
4. **Statistics** ``resp @ (w * Phi).T`` about ``c``, then moved exactly to each component's
   mean and added, in float64, to the block's accumulators (the difference-form candidates'
   straight about their means).

Tiles are laid out as (candidates, rows) blocks: every inner loop runs over the rows of a
tile (or over the whole block), contiguous, so it vectorises whatever the number of
candidates.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .threading_layer import parallel_kernel
from .tiles import measure_box

# Components more than this many nats below a tile's lower bound are skipped.
PRUNE_NATS = 40.0
# The best-bounded components evaluated first to bound every row's largest logit from below.
SEED_COMPONENTS = 4
# With this few components the bounds cost more than the pairs they skip (measured on 2-D
# and 5-D pictures: break-even near 16 components, 15-25% saved at 30): every tile takes
# them all.
PRUNE_MIN_K = 24

# From this many features (D >= 4, or D = 3 with full covariances) BLAS runs a tile's two
# matrix products (logits, moments) faster than the loops, which are load/store bound.
BLAS_MIN_FEATURES = 10

_LOG2E = 1.4426950408889634
_LN2_HI = 0.6931471803691238
_LN2_LO = 1.9082149292705877e-10
# Adding 1.5 * 2**52 rounds a double to an integer held in its low mantissa bits.
_MAGIC = 6755399441055744.0
_MAGIC_BITS = int(np.float64(_MAGIC).view(np.int64))
_C = tuple(1.0 / math.factorial(n) for n in range(13))
_C0, _C1, _C2, _C3, _C4, _C5, _C6, _C7, _C8, _C9, _C10, _C11, _C12 = _C
# Responsibilities below exp(-700) are that small instead.
_EXP_FLOOR = -700.0
# A row's responsibilities more than PRUNE_NATS below its largest are zero (below 4e-18 of
# it: what pruning a whole component already drops for a tile), so that where each row has
# a few likely components the exponentials and the moments skip the rest.
_ROW_FLOOR = math.exp(-PRUNE_NATS)
# Up to this share of kept (row, candidate) pairs a tile's softmax and moments run over the
# list of kept pairs, beyond it over the whole block (see _tile_softmax).
SPARSE_SHARE = 0.25

# Vectorising reductions needs reassociation; no assumptions about NaN or infinity.
_FAST = {"contract", "reassoc", "nsz"}
# The exp must not be reassociated: its argument reduction relies on exact rounding.
_EXACT = {"contract"}


@njit(cache=True, fastmath=_EXACT, inline="always")
def exp_nonpositive(x, out, bits, n):
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


def precision_facts(prec_chol, covariances, power_steps=3):
    """Precision matrices ``U U^T`` and a lower bound of each one's smallest eigenvalue
    (:func:`precision_floors`).

    Parameters
    ----------
    prec_chol : (K, D, D) upper Cholesky factors U of the precisions
    covariances : (K, D, D), or (1, D, D) shared by all components (tied)

    Returns
    -------
    precisions : (K, D, D)
    lam_min : (K,)
    """
    k_total = prec_chol.shape[0]
    return precision_products(prec_chol), precision_floors(covariances, k_total, power_steps)


@njit(cache=True)
def precision_products(prec_chol):
    """``U U^T`` for each upper factor U of ``prec_chol`` (K, D, D)."""
    k_total, d, _ = prec_chol.shape
    precisions = np.empty((k_total, d, d))
    for k in range(k_total):
        for i in range(d):
            for j in range(i, d):
                acc = 0.0
                for l in range(j, d):
                    acc += prec_chol[k, i, l] * prec_chol[k, j, l]
                precisions[k, i, j] = acc
                precisions[k, j, i] = acc
    return precisions


@parallel_kernel(cache=True, nogil=True)
def precision_floors(covariances, k_total, power_steps=3):
    """A lower bound of each precision's smallest eigenvalue, (K,): ``1 / lambda_max(S)``
    for the covariance S, with ``lambda_max(S) <= lambda_max(|S|) <= max_i (|S| v)_i / v_i``
    for any positive v (Collatz-Wielandt); a few power steps bring v near the Perron vector of
    ``|S|``, so the bound is near tight at a fraction of an eigensolver's cost. It is shrunk
    a little: the precisions are the covariances' inverses only to rounding.

    ``covariances``: (K, D, D), or (1, D, D) shared by all ``k_total`` components (tied).
    """
    n_cov, d, _ = covariances.shape
    floors = np.empty(n_cov)
    chunk = 64
    for first in prange((n_cov + chunk - 1) // chunk):
        v = np.empty(d)
        av = np.empty(d)
        for c in range(first * chunk, min(n_cov, (first + 1) * chunk)):
            a = covariances[c]  # |a| is taken entry by entry: no array per component
            v[:] = 1.0
            for _ in range(power_steps):
                top = 0.0
                for i in range(d):
                    av[i] = 0.0
                    for j in range(d):
                        av[i] += abs(a[i, j]) * v[j]
                    top = max(top, av[i])
                for i in range(d):
                    v[i] = av[i] / top
            upper = 0.0
            for i in range(d):
                acc = 0.0
                for j in range(d):
                    acc += abs(a[i, j]) * v[j]
                upper = max(upper, acc / v[i])
            # 0 (no bound) where the covariance is degenerate enough to break the steps.
            floors[c] = (1.0 - 1e-6) / upper if 0.0 < upper < np.inf else 0.0
    lam_min = np.empty(k_total)
    for k in range(k_total):
        lam_min[k] = floors[k if n_cov > 1 else 0]
    return lam_min


def layout_shapes(n_all, group_size, d, diagonal):
    """Shapes of :func:`bound_layout`'s three arrays for ``n_all`` components in groups of
    ``group_size``."""
    q = d if diagonal else d * (d + 1) // 2
    n_groups = n_all // group_size
    return (n_groups * d, group_size), (n_groups * q, group_size), (n_groups * q, group_size)


@parallel_kernel(cache=True, nogil=True)
def bound_layout(means, prec_chol, diagonal, group_size, means_t, u_t, abs_u_t):
    """The components as the bounds read them: one row per coordinate, components along it,
    each group of ``group_size`` components in its own block of rows (see
    :func:`fused_e_step`), into the three arrays (shapes from :func:`layout_shapes`).

    means_t : (G D, K) means (K = group_size, G groups)
    u_t : (G Q, K) the upper Cholesky factors' entries ``U[i, j]``, i <= j, by columns j
        (Q = D(D+1)/2), or their diagonals (Q = D) when ``diagonal``
    abs_u_t : (G Q, K) their absolute values
    """
    k_all, d = means.shape
    q = d if diagonal else d * (d + 1) // 2
    for k in prange(k_all):
        g = k // group_size
        c = k - g * group_size
        p = g * q
        for j in range(d):
            means_t[g * d + j, c] = means[k, j]
            for i in range(j if diagonal else 0, j + 1):
                u_t[p, c] = prec_chol[k, i, j]
                abs_u_t[p, c] = abs(prec_chol[k, i, j])
                p += 1


@parallel_kernel(cache=True, nogil=True)
def factor_row_norms(layout, group_size, diagonal, out):
    """``out[g K + k, i] = | U[i, :] |``, the Euclidean norm of row i of each component's
    upper factor, from a :func:`bound_layout` (what :func:`_split_candidates` bounds the
    expansion's terms with). ``out``: (G K, D)."""
    means_t, _, abs_u_t = layout
    k_all, d = out.shape
    q = d if diagonal else d * (d + 1) // 2
    for k in prange(k_all):
        g = k // group_size
        c = k - g * group_size
        for i in range(d):
            out[k, i] = 0.0
        p = g * q
        for j in range(d):
            for i in range(j if diagonal else 0, j + 1):
                out[k, i] += abs_u_t[p, c] * abs_u_t[p, c]
                p += 1
        for i in range(d):
            out[k, i] = np.sqrt(out[k, i])


@njit(cache=True, inline="always")
def _group_layout(layout, g, d, q):
    """Group g's rows of a :func:`bound_layout` (C-contiguous views)."""
    means_t, u_t, abs_u_t = layout
    return means_t[g * d:(g + 1) * d], u_t[g * q:(g + 1) * q], abs_u_t[g * q:(g + 1) * q]


@njit(cache=True, fastmath=_FAST)
def _tile_bounds(t, boxes, layout, log_norm, lam_min, diagonal, half, bound, work):
    """Fill ``bound`` with an upper bound of each component's logit over tile t's box.

    The squared Mahalanobis distance ``sum_j y_j^2``, ``y = (x - mu) U``, is bounded below
    over the box by interval arithmetic: each whitened coordinate ``y_j`` is linear in x, so
    over the box it lies within its value at the centre plus or minus
    ``sum_i half_width_i |U_ij|``, and ``y_j^2`` is at least the squared distance of that
    interval to zero (exact for diagonal precisions). The smallest precision eigenvalue times
    the squared distance from the mean to the box is a second bound; the larger is used.

    Every loop runs over the components (``layout`` from :func:`bound_layout`), so it
    vectorises; ``work`` is (3 + D, K) scratch.
    """
    means_t, u_t, abs_u_t = layout
    d, k_total = means_t.shape
    d2 = work[0]
    y = work[1]
    r = work[2]
    diff = work[3:]
    for k in range(k_total):
        d2[k] = 0.0
        bound[k] = 0.0  # the interval bound of the squared distance, summed here first
    for i in range(d):
        lo = boxes[t, 0, i]
        hi = boxes[t, 1, i]
        c = 0.5 * lo + 0.5 * hi  # no overflow for any finite box
        for k in range(k_total):
            m = means_t[i, k]
            g = max(lo - m, 0.0) + max(m - hi, 0.0)
            d2[k] += g * g
            diff[i, k] = c - m
    if diagonal:
        for j in range(d):
            h = half[j]
            for k in range(k_total):
                g = (abs(diff[j, k]) - h) * abs_u_t[j, k]
                bound[k] += g * g if g > 0.0 else 0.0
    else:
        p = 0
        for j in range(d):
            for k in range(k_total):
                y[k] = 0.0
                r[k] = 0.0
            for i in range(j + 1):
                h = half[i]
                for k in range(k_total):
                    y[k] += diff[i, k] * u_t[p, k]
                    r[k] += h * abs_u_t[p, k]
                p += 1
            for k in range(k_total):
                g = abs(y[k]) - r[k]  # NaN where a huge box overflows: no bound (0)
                bound[k] += g * g if g > 0.0 else 0.0
    for k in range(k_total):
        # Shrunk a little so that rounding never makes the bound too tight; a distance that
        # overflows (0 * inf) gives no bound rather than NaN.
        q = bound[k] * (1.0 - 1e-9)
        by_floor = lam_min[k] * d2[k]
        if by_floor > q:
            q = by_floor
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

    Features are rows and tile rows columns (``phi`` has shape (F, e - s)). Quadratic terms:
    squares for diagonal precisions, else products ``z_i z_l`` (i <= l) in row-major order of
    the upper triangle.
    """
    d = centre.shape[0]
    n_rows = e - s
    # Feature by feature over the rows (contiguous rows of phi): four times faster than row
    # by row, whose stores stride across phi.
    phi[0, :n_rows] = 1.0
    for i in range(d):
        c = centre[i]
        z = phi[1 + i]
        for r in range(n_rows):
            z[r] = x[s + r, i] - c
    p = 1 + d
    for i in range(d):
        z_i = phi[1 + i]
        for l in range(i, i + 1 if diagonal else d):
            z_l = phi[1 + l]
            out = phi[p]
            for r in range(n_rows):
                out[r] = z_i[r] * z_l[r]
            p += 1


@njit(cache=True)
def _tile_coefficients(cand, n_cand, centre, means, precisions, log_norm, diagonal, coef, m):
    """``coef[j]`` such that ``coef[j] @ phi(z)`` is candidate j's logit.

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
                coef[j, 1 + i] = lam * m[i]
                coef[j, 1 + d + i] = -0.5 * lam
                quad_mean += lam * m[i] * m[i]
        else:
            p = 1 + d
            for i in range(d):
                lin = 0.0
                for l in range(d):
                    lin += precisions[k, i, l] * m[l]
                coef[j, 1 + i] = lin
                quad_mean += lin * m[i]
                coef[j, p] = -0.5 * precisions[k, i, i]
                p += 1
                for l in range(i + 1, d):
                    coef[j, p] = -precisions[k, i, l]
                    p += 1
        coef[j, 0] = log_norm[k] - 0.5 * quad_mean


@njit(cache=True, fastmath=_FAST)
def _tile_logits(phi, n_rows, coef, n_cand, logits):
    """``logits[j * n_rows + r] = coef[j] . phi[:, r]`` (vectorised over rows).

    ``logits`` is a flat buffer holding an (n_cand, n_rows) block.
    """
    n_feat = phi.shape[0]
    for j in range(n_cand):
        base = j * n_rows
        c0 = coef[j, 0]
        for r in range(n_rows):
            logits[base + r] = c0
        for f in range(1, n_feat):
            c = coef[j, f]
            for r in range(n_rows):
                logits[base + r] += c * phi[f, r]


@njit(cache=True, inline="always")
def _candidate_logits(phi, n_rows, coef, n_cand, logits):
    """:func:`_tile_logits`, by BLAS with many features."""
    if phi.shape[0] >= BLAS_MIN_FEATURES:
        np.dot(coef[:n_cand], phi, logits[:n_cand * n_rows].reshape((n_cand, n_rows)))
    else:
        _tile_logits(phi, n_rows, coef, n_cand, logits)


@njit(cache=True, fastmath=_FAST)
def block_max(values, start, n):
    """``max(values[start:start + n])`` (vectorised)."""
    top = values.dtype.type(-np.inf)
    for r in range(start, start + n):
        top = max(top, values[r])
    return top


@njit(cache=True, fastmath=_FAST)
def block_sum(values, start, n):
    """``sum(values[start:start + n])`` (vectorised: reassociated)."""
    total = values.dtype.type(0)
    for r in range(start, start + n):
        total += values[r]
    return total


@njit(cache=True)
def _drop_far(logits, n_rows, n_cand, n_expanded, cand, threshold):
    """Drop the candidates more than ``threshold`` nats below every row's best (logits
    already relative to each row's largest): their responsibilities are below
    ``exp(-threshold)`` for every row of the tile. Compacts the (n_cand, n_rows) block and
    ``cand`` in place, in order; returns the number kept and how many of them are among the
    first ``n_expanded``."""
    n_keep = 0
    n_keep_expanded = 0
    for j in range(n_cand):
        base = j * n_rows
        if block_max(logits, base, n_rows) < -threshold:
            continue
        if n_keep != j:
            target = n_keep * n_rows
            for r in range(n_rows):
                logits[target + r] = logits[base + r]
            cand[n_keep] = cand[j]
        n_keep += 1
        if j < n_expanded:
            n_keep_expanded += 1
    return n_keep, n_keep_expanded


@njit(cache=True, fastmath=_EXACT)
def _tile_softmax(logits, n_rows, n_cand, n_expanded, cand, threshold, row_weights,
                  out_log_prob, top, total, bits, best, kept):
    """Weighted responsibilities in place of the (n_cand, n_rows) logits block, in the
    logits' precision.

    ``out_log_prob[r] = log p(row r)`` and ``best[r]`` the first candidate component with the
    largest logit. The box bounds keep more candidates than the rows need: those more than
    ``threshold`` nats below every row's best are dropped before the exponentials (``cand``
    and the block are compacted in order); returns the number of candidates kept and how
    many of them are among the first ``n_expanded``. Responsibilities below ``_ROW_FLOOR``
    times their row's largest are zero: where few pairs remain (``SPARSE_SHARE``), only
    theirs are exponentiated, and their flat indices are left in ``kept`` (int scratch of
    the block's size), whose length is returned third (-1: the whole block was taken). A
    row whose every logit is -inf (its distance to every candidate overflows) has
    log-density -inf and no responsibility. Every loop runs over rows, over the whole block
    or over the kept pairs.
    """
    # Each candidate's row of the block is taken as a view and the best index kept by a
    # select (no branch): both keep the loops vectorised (15% off the softmax, measured).
    for r in range(n_rows):
        top[r] = -np.inf
        total[r] = 0.0
        best[r] = 0
    for j in range(n_cand):
        block = logits[j * n_rows:(j + 1) * n_rows]
        for r in range(n_rows):
            top[r] = max(top[r], block[r])
    for r in range(n_rows):
        out_log_prob[r] = 0.0
        if top[r] == -np.inf:
            out_log_prob[r] = -np.inf  # marks the row; its block entries stay -inf
            top[r] = 0.0
    for j in range(n_cand - 1, -1, -1):  # downwards: ties go to the first candidate
        block = logits[j * n_rows:(j + 1) * n_rows]
        for r in range(n_rows):
            value = block[r]
            best[r] = j if value == top[r] else best[r]
            block[r] = value - top[r]
    for r in range(n_rows):
        if out_log_prob[r] == -np.inf:
            best[r] = 0
        best[r] = cand[best[r]]
    if threshold < np.inf:
        n_cand, n_expanded = _drop_far(logits, n_rows, n_cand, n_expanded, cand, threshold)
    size = n_cand * n_rows
    n_kept = _near_pairs(logits, size, kept)
    if n_kept <= SPARSE_SHARE * size:
        _sparse_softmax(logits, n_rows, size, kept, n_kept, out_log_prob, top, total,
                        row_weights, bits)
        return n_cand, n_expanded, n_kept
    exp_nonpositive(logits, logits, bits, size)
    for j in range(n_cand):
        block = logits[j * n_rows:(j + 1) * n_rows]
        for r in range(n_rows):
            total[r] += block[r]
    _row_totals(out_log_prob, top, total, row_weights, n_rows)
    for j in range(n_cand):
        block = logits[j * n_rows:(j + 1) * n_rows]
        for r in range(n_rows):
            value = block[r]
            block[r] = value * total[r] if value >= _ROW_FLOOR else 0.0
    return n_cand, n_expanded, -1


@njit(cache=True, fastmath=_FAST)
def _near_pairs(logits, size, kept):
    """The flat indices of the (candidate, row) pairs within ``PRUNE_NATS`` of their row's
    largest logit (logits already relative to it), in order, into ``kept``; returns their
    number. Branch-free (a store for every pair, the count advanced by the test)."""
    n = 0
    for i in range(size):
        kept[n] = i
        n += logits[i] >= -PRUNE_NATS
    return n


@njit(cache=True, inline="always")
def _row_totals(out_log_prob, top, total, row_weights, n_rows):
    """Each row's log-density from its largest logit and its sum of exponentials, and
    ``total`` turned into the factor of its responsibilities (weight / sum; 0 for a row
    without density)."""
    for r in range(n_rows):
        if out_log_prob[r] == -np.inf:
            total[r] = 0.0
        else:
            out_log_prob[r] = top[r] + np.log(total[r])
            total[r] = row_weights[r] / total[r]


@njit(cache=True, fastmath=_EXACT)
def _sparse_softmax(logits, n_rows, size, kept, n_kept, out_log_prob, top, total,
                    row_weights, bits):
    """The softmax of :func:`_tile_softmax` over its kept pairs only (``kept[:n_kept]``,
    flat indices of the block): their exponentials gathered into ``bits`` (at most half of
    it: ``SPARSE_SHARE`` < 1/2), every other entry of the block zero."""
    values = bits[:n_kept]
    scratch = bits[n_kept:2 * n_kept]
    for i in range(n_kept):
        values[i] = logits[kept[i]]
    exp_nonpositive(values, values, scratch, n_kept)
    for i in range(size):
        logits[i] = 0.0
    base = 0  # the first flat index of the kept pair's candidate (the list is in order)
    for i in range(n_kept):
        while kept[i] >= base + n_rows:
            base += n_rows
        total[kept[i] - base] += values[i]
    _row_totals(out_log_prob, top, total, row_weights, n_rows)
    base = 0
    for i in range(n_kept):
        while kept[i] >= base + n_rows:
            base += n_rows
        logits[kept[i]] = values[i] * total[kept[i] - base]


@njit(cache=True, fastmath=_FAST)
def _tile_moments(phi, n_rows, resp, n_cand, moments):
    """``moments[j, f] = sum_r phi[f, r] resp[j * n_rows + r]`` (dot products over rows)."""
    n_feat = phi.shape[0]
    for j in range(n_cand):
        base = j * n_rows
        for f in range(n_feat):
            acc = phi.dtype.type(0)
            for r in range(n_rows):
                acc += phi[f, r] * resp[base + r]
            moments[j, f] = acc


@njit(cache=True, fastmath=_FAST)
def _sparse_moments(x, s, centre, diagonal, phi, n_rows, resp, n_cand, moments, phi_rows,
                    kept, n_kept):
    """:func:`_tile_moments` summed over the kept pairs of the first ``n_cand`` candidates
    (``kept[:n_kept]``, flat indices of the block in order, from :func:`_tile_softmax`).
    Diagonal precisions take each pair's features ``[1, z, z**2]`` from its row of ``x``
    (contiguous, ``z = x - centre`` as :func:`_tile_features` forms them); the others take
    the features transposed once into ``phi_rows`` (rows, F), a contiguous row per pair."""
    n_feat = phi.shape[0]
    d = centre.shape[0]
    if not diagonal:
        for f in range(n_feat):
            for r in range(n_rows):
                phi_rows[r, f] = phi[f, r]
    for j in range(n_cand):
        for f in range(n_feat):
            moments[j, f] = 0.0
    j = 0
    base = 0  # j * n_rows, advanced along the list (in order): no division per pair
    for i in range(n_kept):
        flat = kept[i]
        while flat >= base + n_rows:
            j += 1
            base += n_rows
        if j >= n_cand:
            break
        g = resp[flat]
        out = moments[j]
        if diagonal:
            row = x[s + flat - base]
            out[0] += g
            for f in range(d):
                z = row[f] - centre[f]
                out[1 + f] += g * z
                out[1 + d + f] += g * (z * z)
        else:
            row = phi_rows[flat - base]
            for f in range(n_feat):
                out[f] += g * row[f]


@njit(cache=True, inline="always")
def _candidate_moments(x, s, centre, diagonal, phi, n_rows, resp, n_cand, moments, phi_rows,
                       kept, n_kept):
    """:func:`_tile_moments`: over the kept pairs where the softmax listed them (``n_kept``
    >= 0, :func:`_sparse_moments`), else by BLAS with many features and by loops with few;
    ``phi_rows`` (max_rows, F) scratch."""
    if n_kept >= 0:
        _sparse_moments(x, s, centre, diagonal, phi, n_rows, resp, n_cand, moments, phi_rows,
                        kept, n_kept)
    elif phi.shape[0] >= BLAS_MIN_FEATURES:
        np.dot(resp[:n_cand * n_rows].reshape((n_cand, n_rows)), phi.T, moments[:n_cand])
    else:
        _tile_moments(phi, n_rows, resp, n_cand, moments)


@njit(cache=True)
def _scatter(b, cand, n_cand, centre, means, diagonal, moments, resp_sum, x_sum, xx_sum, m):
    """Move a tile's moments about its centre to each candidate's mean and add them up.

    With ``m = mu - c``: ``sum r (z - m) = M1 - N m`` and
    ``sum r (z - m)(z - m)^T = M2 - M1 m^T - m M1^T + N m m^T``.
    """
    d = centre.shape[0]
    for j in range(n_cand):
        k = cand[j]
        total = moments[j, 0]
        if total == 0.0:
            continue
        for i in range(d):
            m[i] = means[k, i] - centre[i]
        resp_sum[b, k] += total
        for i in range(d):
            x_sum[b, k, i] += moments[j, 1 + i] - total * m[i]
        p = 1 + d
        if diagonal:
            for i in range(d):
                xx_sum[b, k, i] += (moments[j, p + i] - 2.0 * m[i] * moments[j, 1 + i]
                                    + total * m[i] * m[i])
        else:
            q = 0
            for i in range(d):
                for l in range(i, d):
                    xx_sum[b, k, q] += (moments[j, p] - m[l] * moments[j, 1 + i]
                                        - m[i] * moments[j, 1 + l] + total * m[i] * m[l])
                    p += 1
                    q += 1


@njit(cache=True, inline="always")
def _component_logit(x, n, k, layout, diagonal, log_norm):
    """Component k's logit at row n: ``log_norm - |(x - mu) U|^2 / 2`` (U upper
    triangular), from the bounds' layout (:func:`bound_layout`)."""
    means_t, u_t, _ = layout
    d = means_t.shape[0]
    q = 0.0
    p = 0
    for j in range(d):
        y = 0.0
        for i in range(j if diagonal else 0, j + 1):
            y += (x[n, i] - means_t[i, k]) * u_t[p, k]
            p += 1
        q += y * y
    if not q < np.inf:  # overflow (inf, or NaN from inf - inf): the log-density is -inf
        return -np.inf
    return log_norm[k] - 0.5 * q


@njit(cache=True, inline="always")
def _expansion_is_exact(k, centre, half, layout, diagonal, limit, square_cap):
    """Whether component k's logits and moments may be expanded about a tile's centre.

    About the centre c the expanded quadratic form sums terms (the features ``z z^T`` of
    ``z = x - c``, the coefficients built from ``m = mu - c`` and ``Lambda = U U^T``)
    whose absolute values add up to at most ``T = | |U|^T (h + |m|) |^2`` for every row of
    the box (half-widths h), so it rounds to within a few machine epsilons of T; the
    difference form ``|(x - mu) U|^2`` rounds to within a few epsilons of the distance
    itself. The expansion is kept where ``T <= limit * (1 + q_low)``, with ``q_low`` the
    box's least squared distance (interval arithmetic, as :func:`_tile_bounds`): its error
    is then within ``limit`` times the difference form's, for the logits and, by the same
    sum, for the moments moved from the centre to the mean. ``square_cap`` bounds the
    squares the features hold (``sum (h + |m|)^2``): beyond it they could overflow.
    """
    means_t, u_t, abs_u_t = layout
    d = centre.shape[0]
    reach = 0.0
    for i in range(d):
        a = half[i] + abs(centre[i] - means_t[i, k])
        reach += a * a
    if not reach <= square_cap:  # also False for inf and NaN
        return False
    t = 0.0
    q_low = 0.0
    p = 0
    for j in range(d):
        y = 0.0
        r = 0.0
        a = 0.0
        for i in range(j if diagonal else 0, j + 1):
            diff = centre[i] - means_t[i, k]
            y += diff * u_t[p, k]
            r += half[i] * abs_u_t[p, k]
            a += (half[i] + abs(diff)) * abs_u_t[p, k]
            p += 1
        t += a * a
        g = abs(y) - r
        if g > 0.0:
            q_low += g * g
    return t <= limit * (1.0 + q_low)


@njit(cache=True)
def _split_candidates(cand, n_cand, centre, half, means, norms, layout, diagonal, limit,
                      square_cap, bound, log_norm, bounded, spare):
    """Order the candidates so that those whose expansion about the tile's centre is exact
    (:func:`_expansion_is_exact`) come first, each part in its former order; returns how
    many they are. The others take the difference form (``spare``: (K,) int scratch).

    Most candidates pass a quick sufficient test first: with ``a_i = h_i + |c_i - mu_i|``,
    the expansion's terms are at most ``(sum_i a_i |U[i, :]|)^2`` (Minkowski; ``norms`` are
    the rows' norms, contiguous per component), which is checked against ``limit`` and, when
    the tile was bounded (``bounded``: ``bound`` holds its logits' upper bounds), against
    ``limit`` times one plus the least squared distance they imply. Only the candidates it
    does not clear take the exact check (the factors' entries, strided in the layout)."""
    d = centre.shape[0]
    n_expanded = 0
    n_exact = 0
    for j in range(n_cand):
        k = cand[j]
        reach = 0.0
        terms = 0.0
        for i in range(d):
            a = half[i] + abs(centre[i] - means[k, i])
            reach += a * a
            terms += a * norms[k, i]
        terms *= terms
        if not reach <= square_cap:
            expanded = False
        elif terms <= limit:
            expanded = True
        elif bounded and terms <= limit * (1.0 + 2.0 * (log_norm[k] - bound[k])):
            expanded = True
        else:
            expanded = _expansion_is_exact(k, centre, half, layout, diagonal, limit,
                                           square_cap)
        if expanded:
            cand[n_expanded] = k
            n_expanded += 1
        else:
            spare[n_exact] = k
            n_exact += 1
    for j in range(n_exact):
        cand[n_expanded + j] = spare[j]
    return n_expanded


@njit(cache=True, fastmath=_FAST)
def _row_differences(x, s, n_rows, k, means_t, diffs):
    """``diffs[i, r] = x[s + r, i] - mu_k[i]``."""
    for i in range(means_t.shape[0]):
        mean = means_t[i, k]
        row = diffs[i]
        for r in range(n_rows):
            row[r] = x[s + r, i] - mean


@njit(cache=True, fastmath=_FAST)
def _difference_logits(x, s, n_rows, cand, first, n_cand, layout, diagonal, log_norm, logits,
                       diffs, y, q):
    """Candidates ``first:n_cand``'s logits in difference form, ``log_norm - |(x - mu) U|^2
    / 2`` in float64 (written in the logits' precision; -inf where the distance overflows),
    vectorised over the tile's rows; ``diffs`` (D, rows), ``y`` and ``q`` (rows,) scratch."""
    means_t, u_t, _ = layout
    d = means_t.shape[0]
    for j in range(first, n_cand):
        k = cand[j]
        _row_differences(x, s, n_rows, k, means_t, diffs)
        for r in range(n_rows):
            q[r] = 0.0
        p = 0
        for jj in range(d):
            for r in range(n_rows):
                y[r] = 0.0
            for i in range(jj if diagonal else 0, jj + 1):
                u = u_t[p, k]
                row = diffs[i]
                for r in range(n_rows):
                    y[r] += row[r] * u
                p += 1
            for r in range(n_rows):
                q[r] += y[r] * y[r]
        base = j * n_rows
        norm = log_norm[k]
        for r in range(n_rows):
            value = norm - 0.5 * q[r]
            # inf, or NaN from inf - inf, where the distance overflows: -inf.
            logits[base + r] = value if value > -np.inf else -np.inf


@njit(cache=True, fastmath=_FAST)
def _difference_moments(b, x, s, n_rows, cand, first, n_cand, layout, diagonal, resp, resp_sum,
                        x_sum, xx_sum, diffs, weighted):
    """Add candidates ``first:n_cand``'s moments about their means, accumulated from the
    rows' differences in float64 (``resp``: the block of weighted responsibilities), to
    slot b's sums (the layouts of :func:`_scatter`); ``diffs`` (D, rows) and ``weighted``
    (rows,) scratch."""
    means_t = layout[0]
    d = means_t.shape[0]
    for j in range(first, n_cand):
        k = cand[j]
        base = j * n_rows
        total = 0.0
        for r in range(n_rows):
            total += resp[base + r]
        if total == 0.0:
            continue
        resp_sum[b, k] += total
        _row_differences(x, s, n_rows, k, means_t, diffs)
        q = 0
        for i in range(d):
            row_i = diffs[i]
            acc = 0.0
            for r in range(n_rows):
                weighted[r] = resp[base + r] * row_i[r]
                acc += weighted[r]
            x_sum[b, k, i] += acc
            for l in range(i, i + 1 if diagonal else d):
                row_l = diffs[l]
                acc = 0.0
                for r in range(n_rows):
                    acc += weighted[r] * row_l[r]
                xx_sum[b, k, q] += acc
                q += 1


@njit(cache=True)
def _select_candidates(t, s, e, x, w, hints, boxes, means, layout, log_norm, lam_min,
                       diagonal, threshold, bound, half, work, seeds, cand, row_floor):
    """Candidates of tile t (all components when few or when ``threshold`` is infinite:
    tiles that are not spatial); returns their number (0: no rows with a positive weight).

    Every row's largest logit is bounded from below by the logit of its hint (its most likely
    component at the last E-step, ``hints[n] >= 0``) or, for rows without one, of the
    best-bounded components; any component gives a valid bound, a good one a tight bound.
    """
    k_total = means.shape[0]
    n_rows = e - s
    any_weight = False
    need_seeds = False
    for n in range(s, e):
        if w[n] > 0.0:
            any_weight = True
            if hints[n] < 0 or hints[n] >= k_total:
                need_seeds = True
    if not any_weight:
        return 0
    if k_total <= PRUNE_MIN_K or threshold == np.inf:
        for k in range(k_total):
            cand[k] = k
        return k_total
    _tile_bounds(t, boxes, layout, log_norm, lam_min, diagonal, half, bound, work)
    for r in range(n_rows):
        row_floor[r] = -np.inf
    if need_seeds:
        # In difference form, as the hints': a floor must never exceed the logit it bounds,
        # and an expanded form about the tile's centre may round far off in a wide tile.
        n_seed = seeds.shape[0]
        _best_indices(bound, n_seed, seeds)
        for r in range(n_rows):
            for j in range(n_seed):
                value = _component_logit(x, s + r, seeds[j], layout, diagonal, log_norm)
                if value > row_floor[r]:
                    row_floor[r] = value
    floor = np.inf
    for r in range(n_rows):
        n = s + r
        if w[n] <= 0.0:
            continue
        h = hints[n]
        if 0 <= h < k_total:
            value = _component_logit(x, n, h, layout, diagonal, log_norm)
            if value > row_floor[r]:
                row_floor[r] = value
        floor = min(floor, row_floor[r])
    # Lowered by more than the difference form's rounding (about D eps of the distance).
    floor -= 1e-9 * abs(floor)
    n_cand = 0
    for k in range(k_total):
        if bound[k] >= floor - threshold:
            cand[n_cand] = k
            n_cand += 1
    return n_cand


@njit(cache=True, fastmath=_FAST, inline="always")
def _tile_frame(t, x, s, e, boxes, diagonal, centre, half, phi):
    """Tile ``t``'s box centre and half-widths, and the features of its rows about the
    centre (into ``centre``, ``half`` and ``phi``). A box left empty (lower above upper:
    ``tiles.unmeasured_boxes``) is measured here first, on the core that reads the rows."""
    if boxes[t, 0, 0] > boxes[t, 1, 0]:
        measure_box(x, s, e, boxes[t])
    for i in range(x.shape[1]):
        # Halves first: no overflow for any finite box.
        centre[i] = 0.5 * boxes[t, 0, i] + 0.5 * boxes[t, 1, i]
        half[i] = 0.5 * boxes[t, 1, i] - 0.5 * boxes[t, 0, i]
    _tile_features(x, s, e, centre, diagonal, phi)


def scratch_sizes(k_total, d, n_feat, max_rows):
    """Lengths of one block's work arrays (see :func:`_block_scratch`): float64 values,
    values in the rows' precision, int64 values."""
    floats = k_total + 3 * d + (3 + d) * k_total + (4 + d) * max_rows
    reals = 2 * n_feat * max_rows + 2 * k_total * n_feat + 2 * k_total * max_rows + 2 * max_rows
    ints = 2 * k_total + min(SEED_COMPONENTS, k_total) + max_rows + k_total * max_rows
    return floats, reals, ints


@njit(cache=True, inline="always")
def _block_scratch(floats, reals, ints, k_total, d, n_feat, max_rows):
    """One thread's work arrays for tiles of up to ``max_rows`` rows, as views of its rows of
    the kernel's scratch buffers (lengths from :func:`scratch_sizes`; buffers that live
    across E-steps spare the page faults of fresh ones). Features, logits and softmax are in
    the precision of ``reals``; the features are flat: each tile views its start as an
    (F, rows) array (contiguous, for BLAS). The last two items hold the difference form's
    work arrays, ``(diffs (D, rows), y (rows,), q (rows,), spare (K,) int)`` (see
    :func:`_difference_logits` and :func:`_split_candidates`), and the sparse moments',
    ``(phi_rows (rows, F), kept (K rows,) int)`` (see :func:`_tile_softmax`)."""
    f = 0
    bound = floats[f:f + k_total]
    f += k_total
    centre = floats[f:f + d]
    half = floats[f + d:f + 2 * d]
    m = floats[f + 2 * d:f + 3 * d]
    f += 3 * d
    work = floats[f:f + (3 + d) * k_total].reshape((3 + d, k_total))
    f += (3 + d) * k_total
    row_log_prob = floats[f:f + max_rows]
    acc = floats[f + max_rows:f + 2 * max_rows]
    f += 2 * max_rows
    diffs = floats[f:f + d * max_rows].reshape((d, max_rows))
    f += d * max_rows
    y = floats[f:f + max_rows]
    q = floats[f + max_rows:f + 2 * max_rows]
    r = 0
    phi_buf = reals[r:r + n_feat * max_rows]
    r += n_feat * max_rows
    coef = reals[r:r + k_total * n_feat].reshape((k_total, n_feat))
    r += k_total * n_feat
    moments = reals[r:r + k_total * n_feat].reshape((k_total, n_feat))
    r += k_total * n_feat
    logits = reals[r:r + k_total * max_rows]
    r += k_total * max_rows
    bits = reals[r:r + k_total * max_rows]
    r += k_total * max_rows
    top = reals[r:r + max_rows]
    total = reals[r + max_rows:r + 2 * max_rows]
    r += 2 * max_rows
    phi_rows = reals[r:r + n_feat * max_rows].reshape((max_rows, n_feat))
    n_seed = min(SEED_COMPONENTS, k_total)
    cand = ints[:k_total]
    seeds = ints[k_total:k_total + n_seed]
    best = ints[k_total + n_seed:k_total + n_seed + max_rows]
    spare = ints[k_total + n_seed + max_rows:2 * k_total + n_seed + max_rows]
    i = 2 * k_total + n_seed + max_rows
    kept = ints[i:i + k_total * max_rows]
    return (bound, cand, seeds, centre, half, work, m, phi_buf, coef, moments, logits, bits,
            row_log_prob, acc, top, total, best, (diffs, y, q, spare), (phi_rows, kept))


@njit(cache=True, inline="always")
def _block_slots(b, first, stop, tile_group):
    """The accumulator slots ``first_slot:stop_slot`` of block b over tiles ``first:stop``
    (slot b alone for a block without tiles)."""
    if stop == first:
        return b, b + 1
    return tile_group[first] + b, tile_group[stop - 1] + b + 1


@parallel_kernel(cache=True, nogil=True)
def fused_e_step(x, w, hints, starts, boxes, tile_group, group_size, means, precisions,
                 log_norm, lam_min, diagonal, threshold, limit, square_cap, layout, norms,
                 max_rows, floats, reals, ints, resp_sum, x_sum, xx_sum, log_prob, log_lik,
                 pairs):
    """One E-step over tiled rows, accumulating per block of tiles.

    The components come in G groups of ``group_size`` and each tile's rows see only the
    components of its group (one group: an ordinary mixture; more: the marginal mixtures of
    rows with missing entries, one per missingness pattern, see ``missing``), or one group
    of components serves every group of tiles, whose sums are kept apart (many sets of rows
    in one pass, each its own group; ``means`` of ``group_size`` rows). Each tile's
    candidates whose expansion about its centre is exact (:func:`_expansion_is_exact`) take
    the matrix products; the others (a wide tile, a far row, a tight component far from the
    centre) take the difference form, for their logits and their moments.

    Parameters
    ----------
    x : (N, D) float64, working coordinates, tiles contiguous
    w : (N,) float64 weights
    hints : (N,) int64 in/out, each row's most likely component of its group at the last
        E-step (-1: not known), which makes the pruning tight; overwritten with this
        E-step's
    starts : (n_tiles + 1,) int64 tile boundaries
    boxes : (n_tiles, 2, D) float64 tile bounding boxes
    tile_group : (n_tiles,) int64, each tile's group
    group_size : int, K components per group
    means : (G K, D) float64
    precisions : (G K, D, D) float64, the precision matrices (for the logits)
    log_norm : (G K,) float64, log w_k + log det U_k - D log(2 pi) / 2
    lam_min : (G K,) float64, a lower bound of each precision's smallest eigenvalue
    diagonal : bool, whether the precisions are diagonal
    threshold : float, pruning margin in nats; ``inf``: no pruning (tiles not spatial)
    limit, square_cap : float, the expansion's limits (see :func:`_expansion_is_exact`)
    layout : tuple of three arrays, :func:`bound_layout` of the components (for the bounds,
        the expansion's check and the difference form)
    norms : (G K, D) float64, :func:`factor_row_norms` of the layout
    max_rows : int, the most rows of a tile
    floats, reals, ints : (B', L) scratch, a row per block at least (B' >= B), of the
        lengths :func:`scratch_sizes` gives
    resp_sum : (G + B - 1, K) float64 out: B blocks of consecutive tiles run in parallel,
        and block b adds group g's sums to slot ``g + b`` (groups never decrease along the
        tiles, so no two blocks share a slot; one group: a slot per block). Only the slots
        of :func:`_block_slots` are written (zeroed first).
    x_sum : (G + B - 1, K, D) float64 out, about the means
    xx_sum : (G + B - 1, K, Q) float64 out, about the means: packed upper triangle by rows
        (Q = D(D+1)/2), or the diagonal (Q = D) when ``diagonal``
    log_prob : (N,) float64 out, log p(x_n) (-inf for zero-weight rows)
    log_lik : (B,) float64 out, sum of w_n log p(x_n) over each block's positive-weight rows
        (its length is the number of blocks)
    pairs : (B, 2) int64 out, (row, component) pairs evaluated, and of them those in
        difference form
    """
    k_total = group_size
    d = means.shape[1]
    n_blocks = log_lik.shape[0]
    shared = means.shape[0] == group_size  # one set of parameters for every group
    bounded = k_total > PRUNE_MIN_K and threshold < np.inf  # as _select_candidates decides
    n_tiles = starts.shape[0] - 1
    q = d if diagonal else d * (d + 1) // 2
    n_feat = 1 + q + d
    for b in prange(n_blocks):
        (bound, cand, seeds, centre, half, work, m, phi_buf, coef, moments, logits, bits,
         row_log_prob, _, top, total, best, (diffs, y, dist, spare),
         (phi_rows, kept)) = _block_scratch(floats[b], reals[b], ints[b], k_total, d, n_feat,
                                             max_rows)
        block_pairs = 0  # counted locally: a shared counter would bounce between cores
        block_exact = 0
        block_log_lik = 0.0
        stop = (b + 1) * n_tiles // n_blocks
        first_slot, stop_slot = _block_slots(b, b * n_tiles // n_blocks, stop, tile_group)
        for slot in range(first_slot, stop_slot):  # the block's own: zeroed in parallel
            resp_sum[slot] = 0.0
            x_sum[slot] = 0.0
            xx_sum[slot] = 0.0
        for t in range(b * n_tiles // n_blocks, stop):
            s = starts[t]
            e = starts[t + 1]
            n_rows = e - s
            g = tile_group[t]
            p = 0 if shared else g  # the group's parameters
            lo = p * group_size
            hi = lo + group_size
            g_means = means[lo:hi]
            g_precisions = precisions[lo:hi]
            g_log_norm = log_norm[lo:hi]
            g_layout = _group_layout(layout, p, d, q)
            phi = phi_buf[:n_feat * n_rows].reshape((n_feat, n_rows))
            _tile_frame(t, x, s, e, boxes, diagonal, centre, half, phi)
            n_cand = _select_candidates(t, s, e, x, w, hints, boxes, g_means, g_layout,
                                        g_log_norm, lam_min[lo:hi], diagonal, threshold,
                                        bound, half, work, seeds, cand, row_log_prob)
            if n_cand == 0:
                for n in range(s, e):
                    log_prob[n] = -np.inf
                continue
            n_exp = _split_candidates(cand, n_cand, centre, half, g_means, norms[lo:hi],
                                      g_layout, diagonal, limit, square_cap, bound,
                                      g_log_norm, bounded, spare)
            block_pairs += n_rows * n_cand
            block_exact += n_rows * (n_cand - n_exp)
            _tile_coefficients(cand, n_exp, centre, g_means, g_precisions, g_log_norm,
                               diagonal, coef, m)
            _candidate_logits(phi, n_rows, coef, n_exp, logits)
            _difference_logits(x, s, n_rows, cand, n_exp, n_cand, g_layout, diagonal,
                               g_log_norm, logits, diffs, y, dist)
            n_cand, n_exp, n_kept = _tile_softmax(logits, n_rows, n_cand, n_exp, cand,
                                                  threshold, w[s:e], row_log_prob, top, total,
                                                  bits, best, kept)
            for r in range(n_rows):
                hints[s + r] = best[r]
                if w[s + r] > 0.0:
                    log_prob[s + r] = row_log_prob[r]
                    block_log_lik += w[s + r] * row_log_prob[r]
                else:
                    log_prob[s + r] = -np.inf
            _candidate_moments(x, s, centre, diagonal, phi, n_rows, logits, n_exp, moments,
                               phi_rows, kept, n_kept)
            _scatter(g + b, cand, n_exp, centre, g_means, diagonal, moments, resp_sum, x_sum,
                     xx_sum, m)
            _difference_moments(g + b, x, s, n_rows, cand, n_exp, n_cand, g_layout, diagonal,
                                logits, resp_sum, x_sum, xx_sum, diffs, y)
        pairs[b, 0] = block_pairs
        pairs[b, 1] = block_exact
        log_lik[b] = block_log_lik


@parallel_kernel(cache=True, nogil=True)
def fused_log_density(x, starts, boxes, means, precisions, log_norm, lam_min,
                      diagonal, threshold, limit, square_cap, layout, norms, max_rows, floats,
                      reals, ints, values, log_prob, labels, sums):
    """``log p(x_n)``, the most likely component and ``sum_k r_nk values[k]`` of tiled rows
    (responsibilities ``r``), with the same pruning and the same choice between the
    expanded and the difference form; as many blocks of consecutive tiles as the scratch
    buffers have rows run in parallel (the arguments as for :func:`fused_e_step`).

    ``values`` (K, M) and ``sums`` (N, M) out: per-component values averaged by each row's
    responsibilities (M = 0: none), e.g. the pieces of a conditional mean. Components the
    pruning skips have responsibilities below ``exp(-threshold)``.
    """
    n_tiles = starts.shape[0] - 1
    k_total, d = means.shape
    n_values = values.shape[1]
    n_feat = 1 + d + (d if diagonal else d * (d + 1) // 2)
    n_blocks = floats.shape[0]
    bounded = k_total > PRUNE_MIN_K and threshold < np.inf  # as _select_candidates decides
    w = np.ones(x.shape[0])
    hints = np.full(x.shape[0], -1, dtype=np.int64)
    for b in prange(n_blocks):
        (bound, cand, seeds, centre, half, work, m, phi_buf, coef, _, logits, bits,
         row_log_prob, acc, top, total, best, (diffs, y, dist, spare),
         (_, kept)) = _block_scratch(floats[b], reals[b], ints[b], k_total, d, n_feat,
                                     max_rows)
        for t in range(b * n_tiles // n_blocks, (b + 1) * n_tiles // n_blocks):
            s = starts[t]
            e = starts[t + 1]
            n_rows = e - s
            phi = phi_buf[:n_feat * n_rows].reshape((n_feat, n_rows))
            _tile_frame(t, x, s, e, boxes, diagonal, centre, half, phi)
            n_cand = _select_candidates(t, s, e, x, w, hints, boxes, means, layout, log_norm,
                                        lam_min, diagonal, threshold, bound, half, work, seeds,
                                        cand, row_log_prob)
            n_exp = _split_candidates(cand, n_cand, centre, half, means, norms, layout,
                                      diagonal, limit, square_cap, bound, log_norm, bounded,
                                      spare)
            _tile_coefficients(cand, n_exp, centre, means, precisions, log_norm, diagonal,
                               coef, m)
            _candidate_logits(phi, n_rows, coef, n_exp, logits)
            _difference_logits(x, s, n_rows, cand, n_exp, n_cand, layout, diagonal, log_norm,
                               logits, diffs, y, dist)
            n_cand, n_exp, _ = _tile_softmax(logits, n_rows, n_cand, n_exp, cand, threshold,
                                             w[s:e], row_log_prob, top, total, bits, best,
                                             kept)
            for r in range(n_rows):
                labels[s + r] = best[r]
                log_prob[s + r] = row_log_prob[r]
            for v in range(n_values):
                for r in range(n_rows):
                    acc[r] = 0.0
                for j in range(n_cand):
                    value = values[cand[j], v]
                    base = j * n_rows
                    for r in range(n_rows):
                        acc[r] += logits[base + r] * value
                for r in range(n_rows):
                    sums[s + r, v] = acc[r]
