"""Passes over rows in their own order under given parameters: a stream's chunk
(``partial_fit``), an adaptation (``adapt``), a Fisher vector.

A fit prepares its data once for many passes (a robust origin, the data's moments, tiles).
One pass needs none of that where the numba kernel runs on complete rows held in memory: the
kernel expands each tile about its own centre and takes the difference form where the
expansion would not be exact, so it reads the rows as they are, in their own coordinates,
and the data's spread (what a fit's preparation measures to refuse overflowing data and to
floor the covariances' jitter) is read off the pass's own statistics (``Stats.spread``).
Every other input (streams, Dask arrays, rows with missing entries, the numpy and torch
backends) takes a fit's plan over a single pass (``streams.single_pass``). Both give the same
statistics to rounding.
"""

from __future__ import annotations

import numpy as np

from .._data import backends
from .._data.chunks import default_chunk_size, jitter_floor
from .._data.inputs import input_for
from .._data.streams import single_pass
from .._foundations.stats import Stats, sum_stats
from .._foundations.validation import InputError, check_n_features, check_scale
from .._mathematics.em import e_step, expanded_form_fits, plan_e_step
from .fit import plan_fit, plan_statistics

# Rows the kernel takes at a time: it holds no (rows, K) block, only a tiled copy of the
# chunk's rows when it orders them (40 MiB at 20 features).
KERNEL_PASS_ROWS = 262_144


def one_pass(X, sample_weight, model):
    """How to pass over the rows of ``X`` under the parameters of a fitted mixture.

    Parameters
    ----------
    X : any input ``fit`` takes
    sample_weight : array-like of shape (n_rows,) or None
    model : MixtureEstimator
        Fitted: its ``n_features_in_``, ``n_components``, ``covariance_type``, ``backend``,
        ``chunk_size`` and ``reg_covar`` decide the pass.

    Returns
    -------
    KernelPass or PlannedPass
    """
    n_components = model.n_components
    rows = input_for(X).rows_in_memory(X, sample_weight) if _kernel_serves(model) else None
    if rows is not None:
        arr, weights = rows
        check_n_features(arr.shape[1], model.n_features_in_, type(model).__name__)
        return KernelPass(arr, weights, float(model.reg_covar))
    data, _ = input_for(X).prepare(X, sample_weight, 1, model.backend, model.chunk_size)
    check_n_features(data.n_features, model.n_features_in_, type(model).__name__)
    chunk = model.chunk_size or default_chunk_size(n_components, data.n_features)
    return PlannedPass(plan_fit(single_pass(data, chunk), n_components, backend=model.backend,
                                chunk_size=model.chunk_size, reg_covar=float(model.reg_covar)))


def statistics_of_sets(sets, model, params):
    """The statistics of each of many sets of rows under ``params`` (data coordinates): in
    batches of sets through one kernel pass each, where the kernel serves complete rows in
    memory, else set by set (:func:`one_pass`).

    Parameters
    ----------
    sets : list of array-like
        Each at least one row of ``model.n_features_in_`` features.
    model : MixtureEstimator
        Fitted.
    params : Params
        Whose statistics (``model``'s or derived from them, of the same size).

    Returns
    -------
    list of Stats
    """
    rows = [input_for(x).rows_in_memory(x, None) for x in sets] if _kernel_serves(model) \
        else [None]
    if any(r is None for r in rows):
        return [one_pass(x, None, model).statistics(params) for x in sets]
    for arr, _ in rows:
        check_n_features(arr.shape[1], model.n_features_in_, type(model).__name__)
    out = []
    for batch in _batches(rows, params):
        out += _kernel_statistics_of_sets(batch, params)
    return out


def _batches(sets, params):
    """Consecutive sets whose rows and accumulators stay within the kernel's bounds."""
    from .._kernels.numba_estep import ACCUMULATOR_BYTES

    k, d = params.means.shape
    q = d * (d + 1) // 2 if params.covariance_type in ("full", "tied") else d
    most_sets = max(1, ACCUMULATOR_BYTES // (8 * k * (1 + d + q)))
    batch, n_rows = [], 0
    for x, w in sets:
        if batch and (len(batch) >= most_sets or n_rows + len(x) > KERNEL_PASS_ROWS):
            yield batch
            batch, n_rows = [], 0
        batch.append((x, w))
        n_rows += len(x)
    if batch:
        yield batch


def _kernel_statistics_of_sets(sets, params):
    """Statistics of validated sets ``(x, w)`` (float32 or float64 rows) through one kernel
    pass, each checked as :meth:`KernelPass.statistics` checks its rows."""
    from .._kernels.numba_estep import sets_fused_expectation  # imports numba

    with backends.kernel_threads_for(params.n_features):
        resp_sum, x_sum, xx_sum, log_lik, weight_sum = sets_fused_expectation(
            [(np.asarray(x, dtype=np.float64), w) for x, w in sets], params)
    out = []
    for i, (x, w) in enumerate(sets):
        stats = Stats(covariance_type=params.covariance_type, center=params.means.copy(),
                      resp_sum=resp_sum[i], x_sum=x_sum[i], xx_sum=xx_sum[i],
                      log_likelihood=float(log_lik[i]), weight_sum=float(weight_sum[i]),
                      n_rows=int(np.count_nonzero(w > 0)),
                      worst_log_prob=np.empty(0), worst_points=np.empty((0, x.shape[1])))
        out.append(_checked(stats, x.dtype))
    return out


def _kernel_serves(model):
    """Whether the kernel takes ``model``'s passes over complete rows in memory: where the
    estimator's backend resolves to it, at any size (a fit's preparation, a pass to measure
    the rows and a robust origin, costs more than the launch: 1.1 ms a set of 300 rows, 64
    components, 20 features, against 2.2 ms through a fit's plan on numpy)."""
    return (backends.resolve(model.backend) == "numba"
            and expanded_form_fits(model.n_features_in_, model._arrays_covariance_type))


def _checked(stats, dtype):
    """A kernel pass's statistics, refused as a fit refuses its data: spread too widely for
    sums in ``dtype`` (read off the statistics), or rows beyond every component's reach."""
    check_scale(stats.spread()[1], dtype)
    return check_reachable(stats)


class PlannedPass:
    """A pass through a fit's plan (its data prepared: origin, moments, scale checked).

    Parameters
    ----------
    plan : FitPlan
    """

    def __init__(self, plan):
        self.plan = plan
        self.dtype = plan.dtype

    def statistics(self, params):
        """:class:`~gaussmix._foundations.stats.Stats` of the rows under ``params`` (data
        coordinates, both)."""
        with np.errstate(over="ignore", invalid="ignore"):  # refused below
            return check_reachable(plan_statistics(self.plan, params))

    def exact_statistics(self, params, relevance_factor=0.0):
        """:meth:`statistics`: a fit's plan takes the difference form wherever the expanded
        one could cancel under ``params`` (all of it for a few components on numpy), the
        contract of a fit's step."""
        return self.statistics(params)

    def jitter_floor(self, stats):
        """Least extra diagonal for a covariance that fails its factorisation (see
        ``chunks.jitter_floor``): the plan's."""
        return self.plan.jitter_floor


class KernelPass:
    """A pass of the numba kernel over complete rows held in memory, in their own order and
    coordinates (no copy of float64 rows but the kernel's tiles).

    Parameters
    ----------
    X : ndarray of shape (N, D), float32 or float64, finite
    sample_weight : ndarray of shape (N,), validated
    reg_covar : float
    """

    def __init__(self, X, sample_weight, reg_covar):
        self.X = X
        self.sample_weight = sample_weight
        self.reg_covar = reg_covar
        self.dtype = X.dtype

    def statistics(self, params):
        """:class:`~gaussmix._foundations.stats.Stats` of the rows under ``params`` (data
        coordinates, both); refuses data spread too widely for float64 sums, as a fit does."""
        from .._kernels.numba_estep import streaming_fused_expectation  # imports numba

        chunks = ((np.asarray(self.X[s:s + KERNEL_PASS_ROWS], dtype=np.float64),
                   self.sample_weight[s:s + KERNEL_PASS_ROWS])
                  for s in range(0, self.X.shape[0], KERNEL_PASS_ROWS))
        with backends.kernel_threads_for(self.X.shape[1]):
            stats = streaming_fused_expectation(chunks, params)
        return _checked(stats, self.dtype)

    def exact_statistics(self, params, relevance_factor=0.0):
        """:meth:`statistics` exact relative to the covariances that an adaptation with
        ``relevance_factor`` makes of them (0: one M-step), what it keeps as its final
        parameters.

        The kernel sums each tile's moments about the tile's centre and moves them to the
        means, exact relative to the covariances of ``params`` (a fit's next step, under
        the new covariances, leaves no trace of it). Where a component's spread in these
        rows is far narrower than the reach of the rows from its mean (a far row in a tile
        of ordinary ones, a prior far wider than the data) that move could cancel
        (:func:`moments_may_cancel`): the rows' statistics are then summed in difference
        form, about each mean, in float64.
        """
        stats = self.statistics(params)
        if not moments_may_cancel(stats, *self._box(), params, relevance_factor,
                                  self.reg_covar):
            return stats
        return check_reachable(sum_stats(
            e_step(x, w, params, plan_e_step(params, exact=True))
            for x, w in self._chunks(default_chunk_size(params.n_components,
                                                        params.n_features))))

    def jitter_floor(self, stats):
        """Least extra diagonal for a covariance that fails its factorisation, from the
        data's spread as the pass's statistics give it (see ``chunks.jitter_floor``)."""
        mean, variance = stats.spread()
        return jitter_floor(self.reg_covar, variance, mean)

    def _chunks(self, rows):
        for start in range(0, self.X.shape[0], rows):
            yield (np.asarray(self.X[start:start + rows], dtype=np.float64),
                   self.sample_weight[start:start + rows])

    def _box(self):
        """Each feature's least and largest value over the rows with a positive weight."""
        positive = (self.sample_weight > 0)[:, None]  # no copy of the rows
        return (np.min(self.X, axis=0, where=positive, initial=np.inf).astype(np.float64),
                np.max(self.X, axis=0, where=positive, initial=-np.inf).astype(np.float64))


# Epsilons per term that summing a tile's moments about its centre and moving them to a mean
# may cost, and the share of a component's spread that an adaptation may lose to them.
MOVE_EPSILONS = 16
MOMENT_TOLERANCE = 1e-9


def moments_may_cancel(stats, lower, upper, params, relevance_factor, reg_covar):
    """Whether moments summed about points as far from the means as the rows reach could
    lose more than ``MOMENT_TOLERANCE`` of the covariances an adaptation makes of them.

    Summed about a point within the rows' box and moved to a mean, a component's second
    moments per unit of responsibility are exact to about ``MOVE_EPSILONS (D + 1)`` epsilons
    of the squared reach from the mean to the box's far side. An adaptation keeps
    ``a = n / (n + r)`` of them (plus ``reg_covar``) and ``1 - a`` of the prior's
    covariance, which is what the loss is measured against (per feature for 'diag', by the
    least eigenvalue for 'full' and 'tied').

    Parameters
    ----------
    stats : Stats
        About the means of ``params`` (``center``).
    lower, upper : ndarray of shape (D,)
        The rows' box.
    params : Params
        The prior of the adaptation.
    relevance_factor, reg_covar : float
    """
    n = stats.resp_sum
    d = stats.n_features
    held = n > 0
    if not held.any():
        return False
    reach = np.maximum(upper - stats.center, stats.center - lower)  # (K, D)
    with np.errstate(over="ignore"):
        loss = MOVE_EPSILONS * (d + 1) * np.finfo(np.float64).eps * reach**2
    kept = n / (n + relevance_factor)
    means = stats.center + stats.x_sum / np.where(held, n, 1.0)[:, None]
    spread = stats.recentered(np.where(held[:, None], means, stats.center)).xx_sum
    prior = params.covariances
    cov_type = stats.covariance_type
    if cov_type == "diag":
        lost = kept[held, None] * loss[held]
        made = kept[held, None] * (spread[held] / n[held, None] + reg_covar) \
            + (1 - kept[held, None]) * prior[held]
    elif cov_type == "spherical":
        lost = kept[held] * loss[held].mean(axis=1)
        made = kept[held] * (spread[held] / (n[held] * d) + reg_covar) \
            + (1 - kept[held]) * prior[held]
    elif cov_type == "tied":
        pooled = n.sum() / (n.sum() + relevance_factor)
        lost = pooled * (n[held] @ loss[held].sum(axis=1)) / n.sum()
        made = (pooled * (np.linalg.eigvalsh(spread / n.sum())[0] + reg_covar)
                + (1 - pooled) * np.linalg.eigvalsh(prior)[0])
    else:
        lost = kept[held] * loss[held].sum(axis=1)
        made = kept[held] * (np.linalg.eigvalsh(spread[held] / n[held, None, None])[:, 0]
                             + reg_covar) + (1 - kept[held]) * np.linalg.eigvalsh(
            prior[held])[:, 0]
    return bool(np.any(~(lost <= MOMENT_TOLERANCE * made)))


def check_reachable(stats, name="X"):
    """``stats``, unless a row with a positive weight has no density under the parameters
    (its squared distance to every component overflows float64, so that it takes no
    responsibility and its statistics would silently miss it, or overflow): one
    sentence."""
    finite = np.isfinite(stats.x_sum).all() and np.isfinite(stats.xx_sum).all()
    if stats.log_likelihood == -np.inf or not finite:
        raise InputError(f"Rows of {name} lie so far from every component of the mixture that "
                         "their squared distances overflow float64 and their density is zero; "
                         "drop those rows, or fit a mixture on data that include them.")
    return stats
