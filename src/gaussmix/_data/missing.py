"""Missing values (NaN) as missing at random: exact EM, marginal scores and imputation.

A row with holes is scored by the marginal density of its observed entries, and its
statistics add, per component, the conditional expectation of the missing entries and the
conditional covariance of the missing block (Ghahramani and Jordan, 1994), so EM maximises
the observed-data likelihood exactly. Both come from the same per-component pieces:

    x_m | x_o, k  ~  N(mu_m + B_k (x_o - mu_o), C_k),
    B_k = S_mo S_oo^-1,  C_k = S_mm - B_k S_om,

which depend only on the row's missingness pattern, so rows are grouped by pattern and each
pattern's pieces are computed once per component, not once per row. Complete rows never come
here: they keep the fused kernel. This module is the numpy path, and the reference that the
kernel over every pattern (``_kernels.holes``) is tested against. Everything is a pure
function of an array and :class:`~gaussmix._mathematics.em.Params` (a plain mixture: a
variational one's constants assume every feature observed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .._foundations.covariance import as_full, second_moments_from_full
from .._mathematics import algebra as _algebra
from .chunks import FitData, PreparedData, robust_centre, rows_expectation, spaced_rows
from .held import HeldRows
from .._foundations.stats import Stats

LOG_2PI = math.log(2.0 * math.pi)
# Rows per block of one pattern: its (rows, K, D) conditional means stay about 32 MB.
BLOCK_VALUES = 4 * 2**20


@dataclass(frozen=True)
class Pattern:
    """Rows sharing one missingness pattern.

    Attributes
    ----------
    observed, missing : ndarray of int
        Feature indices.
    rows : ndarray of int
        Row indices (into the array the pattern was found in).
    """

    observed: np.ndarray
    missing: np.ndarray
    rows: np.ndarray


def patterns(x):
    """The missingness patterns of ``x`` (n, D) with NaN for missing, most rows first."""
    holes = np.isnan(x)
    keys, inverse = np.unique(holes, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse, minlength=len(keys)))
    found = []
    for p, key in enumerate(keys):
        rows = order[(bounds[p - 1] if p else 0):bounds[p]]
        found.append(Pattern(np.flatnonzero(~key), np.flatnonzero(key), rows))
    return sorted(found, key=lambda pat: -len(pat.rows))


@dataclass(frozen=True)
class Conditional:
    """One pattern's per-component pieces (K components, o observed, m missing features).

    Attributes
    ----------
    log_norm : ndarray (K,)
        ``log w_k - (o log 2 pi + log det S_oo) / 2``.
    whiten : ndarray (K, o, o)
        ``L^-1`` for ``S_oo = L L^T``: a row's squared distance is ``|L^-1 (x_o - mu_o)|^2``
        (a sum of squares, which nothing cancels).
    regression : ndarray (K, m, o)
        ``B_k``.
    covariance : ndarray (K, m, m)
        ``C_k``.
    """

    log_norm: np.ndarray
    whiten: np.ndarray
    regression: np.ndarray
    covariance: np.ndarray


def conditional(params, pattern, dense=None):
    """:class:`Conditional` of ``params`` for ``pattern`` (``dense``: the (K, D, D)
    covariances, when already expanded)."""
    k, d = params.n_components, params.n_features
    cov = as_full(params.covariances, params.covariance_type, k, d) if dense is None else dense
    o, m = pattern.observed, pattern.missing
    s_oo = cov[:, o][:, :, o]
    chol = np.linalg.cholesky(s_oo)
    log_det = 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
    inv_chol = np.linalg.inv(chol)
    inv_oo = np.swapaxes(inv_chol, 1, 2) @ inv_chol
    regression = cov[:, m][:, :, o] @ inv_oo
    covariance = cov[:, m][:, :, m] - regression @ cov[:, o][:, :, m]
    with np.errstate(divide="ignore"):
        log_weights = np.log(params.weights)
    return Conditional(log_weights - 0.5 * (len(o) * LOG_2PI + log_det), inv_chol, regression,
                       0.5 * (covariance + np.swapaxes(covariance, 1, 2)))


def _blocks(pattern, k, d):
    rows = max(1, BLOCK_VALUES // max(1, k * d))
    return [pattern.rows[s:s + rows] for s in range(0, len(pattern.rows), rows)]


def _logits_and_fill(x_obs, params, pattern, cond):
    """Logits (n, K) of the observed entries and the conditional means (n, K, m)."""
    diff = x_obs[:, None, :] - params.means[None][:, :, pattern.observed]
    whitened = np.einsum("kij,nkj->nki", cond.whiten, diff)
    maha = np.einsum("nki,nki->nk", whitened, whitened)
    logits = cond.log_norm - 0.5 * maha
    fill = params.means[None][:, :, pattern.missing] + np.einsum("kmo,nko->nkm",
                                                                  cond.regression, diff)
    return logits, fill


def _softmax(logits):
    top = logits.max(axis=1, keepdims=True)
    resp = np.exp(logits - top)
    total = resp.sum(axis=1, keepdims=True)
    return resp / total, (top + np.log(total))[:, 0]


def stats(x, w, params, cache=None):
    """Statistics of rows with holes (working coordinates, NaN for missing) under
    ``params``, about the components' means; rows with nothing observed are left out.

    The numpy path (the numba one is ``_kernels.holes``, all patterns in one kernel pass):
    each pattern's rows go through numpy's E-step of the marginal mixture of their observed
    features, which gives the responsibilities and the observed moments ``N_k``,
    ``S1 = sum w r y_o`` and ``S2 = sum w r y_o y_o^T`` about the means (``y = x - mu_k``).
    The missing part follows from ``E[y_m | x_o, k] = B_k y_o`` and
    ``Cov[y_m | x_o, k] = C_k``: first moments ``B_k S1``, second moments ``S2 B_k^T`` and
    ``B_k S2 B_k^T + N_k C_k``.

    ``cache`` (a dict, for rows that stay the same across a fit's E-steps) keeps the patterns
    and each pattern's observed entries.

    Returns
    -------
    Stats
    """
    k, d = params.n_components, params.n_features
    cov_type = params.covariance_type
    dense = as_full(params.covariances, cov_type, k, d)
    cache = {} if cache is None else cache
    if "patterns" not in cache:
        cache["patterns"] = patterns(x)
    total = None
    for index, pattern in enumerate(cache["patterns"]):
        if len(pattern.observed) == 0:
            continue
        rows = cache.get(index)
        if rows is None:
            rows = cache[index] = PatternRows(x, w, pattern)
        part = _pattern_stats(rows, params, pattern, conditional(params, pattern, dense))
        total = part if total is None else total + part
    if total is None:
        total = Stats(covariance_type=cov_type, center=params.means.copy(),
                      resp_sum=np.zeros(k), x_sum=np.zeros((k, d)),
                      xx_sum=second_moments_from_full(np.zeros((k, d, d)), cov_type),
                      log_likelihood=0.0, weight_sum=0.0, n_rows=0,
                      worst_log_prob=np.empty(0), worst_points=np.empty((0, d)))
    return total


class PatternRows:
    """One pattern's rows: their observed entries and weights, kept for every E-step of a
    fit."""

    def __init__(self, x, w, pattern):
        self.x = np.ascontiguousarray(x[np.ix_(pattern.rows, pattern.observed)])
        self.w = np.ascontiguousarray(w[pattern.rows])

    def expectation(self, params):
        """The observed-feature statistics under the marginal mixture ``params``."""
        return rows_expectation(self.x, self.w, params, "numpy")


# What one pattern of holes costs numpy's E-step to set up (its conditional pieces and
# marginal mixture, about half a millisecond), in (row, component) pairs of its E-step.
NUMPY_PATTERN_PAIRS = 20_000

# Below this many (row, component) pairs a pattern's statistics are computed directly: the
# marginal mixture and its E-step cost more to set up than they save.
DIRECT_PAIRS = 2_000


def _pattern_stats(rows, params, pattern, cond):
    """One pattern's statistics in full dimension, about the components' means."""
    if len(rows.w) * params.n_components < DIRECT_PAIRS:
        return _direct_stats(rows, params, pattern, cond)
    o, m = pattern.observed, pattern.missing
    k, d = params.n_components, params.n_features
    cov_type = params.covariance_type
    observed = _algebra.marginal(params, o)
    part = rows.expectation(observed).recentered(observed.means)
    n_k, s1, s2 = part.resp_sum, part.x_sum, part.xx_sum
    b = cond.regression  # (K, m, o)
    x_sum = np.zeros((k, d))
    x_sum[:, o] = s1
    if cov_type in ("full", "tied"):
        x_sum[:, m] = np.einsum("kmo,ko->km", b, s1)
        full = np.zeros((k, d, d)) if cov_type == "full" else np.zeros((d, d))
        if cov_type == "full":
            cross = s2 @ np.swapaxes(b, 1, 2)  # (K, o, m)
            full[:, o[:, None], o[None, :]] = s2
            full[:, o[:, None], m[None, :]] = cross
            full[:, m[:, None], o[None, :]] = np.swapaxes(cross, 1, 2)
            full[:, m[:, None], m[None, :]] = (b @ cross + n_k[:, None, None] * cond.covariance)
        else:  # one covariance: B and C are the same for every component
            cross = s2 @ b[0].T
            full[np.ix_(o, o)] = s2
            full[np.ix_(o, m)] = cross
            full[np.ix_(m, o)] = cross.T
            full[np.ix_(m, m)] = b[0] @ cross + n_k.sum() * cond.covariance[0]
        xx = full
    elif cov_type == "diag":  # independent features: nothing to regress on
        xx = np.zeros((k, d))
        xx[:, o] = s2
        xx[:, m] = n_k[:, None] * np.diagonal(cond.covariance, axis1=1, axis2=2)
    else:
        xx = s2 + n_k * np.trace(cond.covariance, axis1=1, axis2=2)
    return Stats(covariance_type=cov_type, center=params.means.copy(), resp_sum=n_k,
                 x_sum=x_sum, xx_sum=xx, log_likelihood=part.log_likelihood,
                 weight_sum=part.weight_sum, n_rows=part.n_rows,
                 worst_log_prob=np.empty(0), worst_points=np.empty((0, d)))


def _direct_stats(rows, params, pattern, cond):
    """:func:`_pattern_stats` for a few rows: responsibilities and filled rows at once."""
    k, d = params.n_components, params.n_features
    o, m = pattern.observed, pattern.missing
    logits, fill = _logits_and_fill(rows.x, params, pattern, cond)
    resp, log_prob = _softmax(logits)
    positive = rows.w > 0
    wr = resp * rows.w[:, None]
    mass = wr.sum(axis=0)
    full = np.empty((len(rows.w), k, d))
    full[:, :, o] = rows.x[:, None, :]
    full[:, :, m] = fill
    full -= params.means[None]  # moments about the means, as the kernel's
    x_sum = np.einsum("nk,nkd->kd", wr, full)
    xx_full = np.einsum("nk,nki,nkj->kij", wr, full, full)
    xx_full[:, m[:, None], m[None, :]] += mass[:, None, None] * cond.covariance
    return Stats(covariance_type=params.covariance_type, center=params.means.copy(),
                 resp_sum=mass, x_sum=x_sum,
                 xx_sum=second_moments_from_full(xx_full, params.covariance_type),
                 log_likelihood=float(rows.w[positive] @ log_prob[positive]),
                 weight_sum=float(rows.w.sum()), n_rows=int(positive.sum()),
                 worst_log_prob=np.empty(0), worst_points=np.empty((0, d)))


def log_prob_and_resp(x, params):
    """Marginal log-density of each row's observed entries (n,) and the responsibilities
    (n, K); a row with nothing observed has log-density 0 and the weights as
    responsibilities."""
    n, k = x.shape[0], params.n_components
    log_prob = np.zeros(n)
    resp = np.empty((n, k))
    dense = as_full(params.covariances, params.covariance_type, k, params.n_features)
    for pattern in patterns(x):
        if len(pattern.observed) == 0:
            resp[pattern.rows] = params.weights / params.weights.sum()
            continue
        cond = conditional(params, pattern, dense)
        for rows in _blocks(pattern, k, params.n_features):
            logits, _ = _logits_and_fill(x[np.ix_(rows, pattern.observed)], params, pattern,
                                         cond)
            resp[rows], log_prob[rows] = _softmax(logits)
    return log_prob, resp


def impute(x, params, method="mean", random_state=None):
    """``x`` with every NaN filled: ``E[x_m | x_o]`` under the mixture ('mean'), or one draw
    from the conditional mixture ('sample': a component by its responsibility, then the
    missing entries from its conditional Gaussian).

    Parameters
    ----------
    x : ndarray of shape (n, D), NaN for missing (data coordinates)
    params : Params
    method : {'mean', 'sample'}
    random_state : numpy RandomState (for 'sample')

    Returns
    -------
    ndarray of shape (n, D), float64
    """
    out = np.array(x, dtype=np.float64)
    k, d = params.n_components, params.n_features
    dense = as_full(params.covariances, params.covariance_type, k, d)
    weights = params.weights / params.weights.sum()
    for pattern in patterns(out):
        if len(pattern.missing) == 0:
            continue
        if len(pattern.observed) == 0:
            cond = None
        else:
            cond = conditional(params, pattern, dense)
        for rows in _blocks(pattern, k, d):
            if cond is None:  # nothing observed: the mixture itself
                resp = np.tile(weights, (len(rows), 1))
                fill = np.broadcast_to(params.means[None], (len(rows), k, d))
                covariance = dense
            else:
                logits, fill = _logits_and_fill(out[np.ix_(rows, pattern.observed)], params,
                                                pattern, cond)
                resp, _ = _softmax(logits)
                covariance = cond.covariance
            if method == "mean":
                values = np.einsum("nk,nkm->nm", resp, fill)
            else:
                values = _draw(resp, fill, covariance, random_state)
            out[np.ix_(rows, pattern.missing)] = values
    return out


def _draw(resp, fill, covariance, random_state):
    """One draw per row: a component by ``resp``, then ``N(fill[k], covariance[k])``."""
    cumulative = np.cumsum(resp, axis=1)
    u = random_state.uniform(size=(len(resp), 1)) * cumulative[:, -1:]
    labels = np.minimum((cumulative < u).sum(axis=1), resp.shape[1] - 1)
    eigenvalues, vectors = np.linalg.eigh(covariance)
    factors = vectors * np.sqrt(np.clip(eigenvalues, 0.0, None))[:, None, :]
    z = random_state.standard_normal((len(resp), covariance.shape[1]))
    rows = np.arange(len(resp))
    return fill[rows, labels] + np.einsum("nij,nj->ni", factors[labels], z)


@dataclass(frozen=True)
class MissingData(PreparedData):
    """Training data with holes: the complete rows as ordinary prepared data (the fused
    kernel serves them), and the rows with holes, in working coordinates, for this module.

    Attributes
    ----------
    complete : FitData or None
        None when every row has a hole.
    holes : ndarray of shape (M, D)
        The rows with at least one NaN, minus ``shift``.
    hole_weights : ndarray of shape (M,)
    shift : ndarray of shape (D,)
        The origin of the working coordinates (``chunks.robust_centre`` of the observed
        entries).
    variance : ndarray of shape (D,)
        Weighted variance of each feature's observed entries.
    n_missing : int
        Missing entries.
    n_unobserved : int
        Rows with nothing observed (left out of the fit: they carry no information).
    """

    complete: object
    holes: np.ndarray
    hole_weights: np.ndarray
    shift: np.ndarray
    variance: np.ndarray
    dtype: np.dtype
    n_missing: int
    n_unobserved: int
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def n_features(self):
        return self.holes.shape[1]

    @property
    def n_rows(self):
        return self.holes.shape[0] + (0 if self.complete is None else self.complete.n_rows)

    def e_step_pairs(self, n_components):
        """As for complete data, each pattern of holes counting ``NUMPY_PATTERN_PAIRS``:
        numpy's E-step pays a set-up per pattern that the kernel does not."""
        return self.n_rows * n_components + len(self._hole_patterns()) * NUMPY_PATTERN_PAIRS

    def fit_source(self, backend, chunk_size):
        return [] if self.complete is None else self.complete.fit_source(backend, chunk_size)

    def _hole_patterns(self):
        """The missingness patterns of the rows with holes that observe something."""
        if "patterns" not in self._cache:
            self._cache["patterns"] = [p for p in patterns(self.holes) if len(p.observed)]
        return self._cache["patterns"]

    def hole_expectation(self, backend):
        """``params -> Stats`` of the rows with holes: the fused kernel over every pattern
        at once (``_kernels.holes``) for numba, else pattern by pattern (:func:`stats`)."""
        if backend == "numba":
            if "tiles" not in self._cache:
                from .._kernels.holes import HoleTiles  # imports numba

                self._cache["tiles"] = HoleTiles(self._hole_patterns(), self.holes,
                                                 self.hole_weights)
            from .._kernels.holes import hole_stats  # imports numba

            tiles = self._cache["tiles"]
            return lambda params: hole_stats(tiles, params)
        cache = self._cache.setdefault("holes", {"patterns": self._hole_patterns()})
        return lambda params: stats(self.holes, self.hole_weights, params, cache)

    def expectation_for(self, backend):
        complete = None if self.complete is None else self.complete.expectation_for(backend)
        holes = self.hole_expectation(backend)

        def expectation(source, params):
            part = holes(params)
            if complete is None:
                return part
            whole = complete(source, params)
            return whole + part.recentered(whole.center)

        return expectation

    def sample(self, n, random_state):
        """Rows to initialise from, as many as ``n``: the complete rows when they are at
        least half of all, else every row with its holes at the observed mean (of the rows
        taken, :func:`filled_with_mean`).

        Rows with holes filled by the mean would seed components of the mean's colour on
        the holes (an inpainting mask's strokes), which EM cannot recolour: their colours are
        never observed."""
        complete_rows = 0 if self.complete is None else self.complete.n_rows
        use_holes = not complete_rows_suffice(complete_rows, self.n_rows)
        available = complete_rows + (self.holes.shape[0] if use_holes else 0)
        picked = np.arange(available) if available <= n else np.sort(
            random_state.choice(available, n, replace=False))
        from_complete = picked[picked < complete_rows]  # only the picked rows are copied
        from_holes = picked[picked >= complete_rows] - complete_rows
        parts = [] if self.complete is None else [
            (np.asarray(self.complete.X[from_complete], dtype=np.float64) - self.shift,
             self.complete.sample_weight[from_complete])]
        if use_holes:
            parts.append((self.holes[from_holes], self.hole_weights[from_holes]))
        x = np.concatenate([p[0] for p in parts])
        w = np.concatenate([p[1] for p in parts])
        return _Rows(filled_with_mean(x, w) if use_holes else x, w)


class _Rows(HeldRows):
    def __init__(self, x, sample_weight, chunk_size=65536):
        self.x = np.ascontiguousarray(x)
        self.sample_weight = sample_weight
        self.chunk_size = chunk_size


def prepare(arr, weights, chunk_size):
    """:class:`MissingData` of an array with NaN (no infinity) and its weights."""
    holes_mask = np.isnan(arr)
    has_hole = holes_mask.any(axis=1)
    observed = ~holes_mask
    unobserved = int((~observed.any(axis=1)).sum())
    w = weights[:, None] * observed
    total = w.sum(axis=0)
    check_observed(total)
    positive = np.flatnonzero(weights > 0)
    sample = positive[spaced_rows(len(positive))]
    shift = robust_centre(arr[sample], weights[sample], np.zeros(arr.shape[1]))
    # About the centre, with weights that sum to one per feature (see _data.weighted_moments).
    unit = w / total
    with np.errstate(over="ignore", invalid="ignore"):
        mean = shift + (unit * np.where(observed, arr - shift, 0.0)).sum(axis=0)
        variance = (unit * np.where(observed, arr - mean, 0.0) ** 2).sum(axis=0)
    complete = None
    if not has_hole.all():
        rows = arr[~has_hole]
        complete = FitData(rows, weights[~has_hole], shift, variance)
    holes = np.asarray(arr[has_hole], dtype=np.float64) - shift
    return MissingData(complete=complete, holes=holes, hole_weights=weights[has_hole],
                       shift=shift, variance=variance, dtype=arr.dtype,
                       n_missing=int(holes_mask.sum()), n_unobserved=unobserved)


def check_observed(observed_weight):
    """Refuse data with a feature that is never observed (with a positive weight): nothing
    could be learnt about it. ``observed_weight``: (D,) sums of the observed entries'
    weights."""
    if not (observed_weight > 0).all():
        empty = int(np.flatnonzero(~(observed_weight > 0))[0])
        raise ValueError(f"Feature {empty} has no observed entry with a positive weight; drop "
                         "that column or give it at least one value.")


def complete_rows_suffice(n_complete, n_rows):
    """Whether initialisation should draw from the complete rows only: when they are at least
    half of the rows (see :meth:`MissingData.sample`)."""
    return 2 * n_complete >= n_rows


def seed_rows(x, w, holes, n_positive):
    """Sampled rows (working coordinates, NaN for missing) made fit for initialisation: the
    complete ones when :func:`complete_rows_suffice` (``holes``: the data's
    ``HoleCounts``), else all, their holes at the observed mean (:func:`filled_with_mean`)."""
    hole = np.isnan(x).any(axis=1)
    if complete_rows_suffice(holes.n_complete, n_positive) and not hole.all():
        return x[~hole], w[~hole]
    return filled_with_mean(x, w), w


def filled_with_mean(x, w):
    """``x`` (n, D) with each NaN replaced by its feature's weighted mean over the observed
    entries of these rows (the origin where none is observed): where initialisation puts
    the holes, whatever the working coordinates' origin."""
    observed = ~np.isnan(x)
    weights = w[:, np.newaxis] * observed
    totals = weights.sum(axis=0)
    sums = (weights * np.where(observed, x, 0.0)).sum(axis=0)
    means = np.divide(sums, totals, out=np.zeros(x.shape[1]), where=totals > 0)
    return np.where(observed, x, means)


def rows_stats(x, w, params, backend):
    """Statistics (about the means) of rows held in memory that may have holes (working
    coordinates): a chunk of a stream or a block of a Dask array. Complete rows take
    ``chunks.rows_expectation``; rows with holes the kernel over their patterns (numba) or
    :func:`stats`."""
    hole = np.isnan(x).any(axis=1)
    if not hole.any():
        return rows_expectation(x, w, params, backend)
    found = [p for p in patterns(x[hole]) if len(p.observed)]
    if backend == "numba":
        from .._kernels.holes import HoleTiles, hole_stats  # imports numba

        part = hole_stats(HoleTiles(found, x[hole], w[hole]), params)
    else:
        part = stats(x[hole], w[hole], params, {"patterns": found})
    if hole.all():
        return part
    whole = rows_expectation(x[~hole], w[~hole], params, backend)
    return whole + part.recentered(whole.center)


def streaming_expectation(backend):
    """The seam's ``expectation`` over a stream whose chunks may have holes
    (:func:`rows_stats` chunk by chunk)."""

    def expectation(source, params):
        total = None
        for x, w in source:
            part = rows_stats(x, w, params, backend)
            total = part if total is None else total + part.recentered(total.center)
        if total is None:
            raise ValueError("No data: the chunk iterator yielded no rows.")
        return total

    return expectation
