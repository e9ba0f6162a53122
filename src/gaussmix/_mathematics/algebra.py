"""Mixture algebra as pure functions of :class:`~gaussmix._mathematics.em.Params`.

Moments of the whole mixture, marginals, conditioning (a conditioned Gaussian mixture is a
Gaussian mixture), batched conditional expectations, covariance scaling and subsets. Every
function returns new arrays; none mutates its input.

Conditioning works with precision matrices: for ``x = (x_a, x_b)`` and component precision
``Lambda``, the conditional of ``x_b`` given ``x_a = v`` has precision ``Lambda_bb`` (a
sub-block, so positive definite whatever the rounding) and mean
``mu_b - Lambda_bb^-1 Lambda_ba (v - mu_a)``; its weight is proportional to
``w_k N(v; mu_a, Sigma_aa)``.
"""

from __future__ import annotations

import numpy as np

from .._foundations.covariance import (
    as_full,
    covariances_from_precision_cholesky,
    precision_cholesky,
    precision_cholesky_from_precisions,
    precisions_from_precision_cholesky,
    solve_lower,
    solve_upper,
)
from .em import Params, plan_e_step, robust_centre, softmax_inplace, weighted_log_prob

# Elements of the (queries, K, D_b) arrays of conditional_mean per chunk of queries.
CONDITIONAL_CHUNK_ELEMENTS = 2**22


def dense_covariances(params):
    """Every component's covariance as a full matrix, shape (K, D, D)."""
    return as_full(params.covariances, params.covariance_type, *params.means.shape)


def mixture_mean(params):
    """``E[x] = sum_k w_k mu_k``, shape (D,)."""
    return params.weights @ params.means / params.weights.sum()


def mixture_covariance(params):
    """Covariance of the whole mixture, shape (D, D).

    ``sum_k w_k (Sigma_k + (mu_k - m)(mu_k - m)^T)`` with ``m`` the mixture mean (deviations
    from the mean, not raw second moments, so nothing cancels).
    """
    w = params.weights / params.weights.sum()
    dev = params.means - mixture_mean(params)
    within = np.tensordot(w, dense_covariances(params), axes=1)
    return within + (dev * w[:, np.newaxis]).T @ dev


def _with_covariances(params, weights, means, covariances, covariance_type, jitter_floor=1e-300):
    """New :class:`Params` whose precision factors are derived from ``covariances``."""
    prec_chol, covariances, _, _ = precision_cholesky(covariances, covariance_type, jitter_floor)
    return Params(weights, means, prec_chol, covariances, covariance_type)


def _with_precisions(weights, means, precisions, covariance_type):
    """New :class:`Params` from precision matrices (or vectors)."""
    prec_chol = precision_cholesky_from_precisions(precisions, covariance_type)
    covariances = covariances_from_precision_cholesky(prec_chol, covariance_type)
    return Params(weights, means, prec_chol, covariances, covariance_type)


def marginal(params, dims):
    """The mixture of ``x[dims]``: same weights, sub-vectors of means, sub-blocks of
    covariances; the covariance type is kept.

    Parameters
    ----------
    params : Params
    dims : ndarray of shape (M,), int
        Distinct feature indices, in the order wanted.
    """
    cov_type = params.covariance_type
    cov = params.covariances
    if cov_type == "full":
        sub = cov[:, dims][:, :, dims]
    elif cov_type == "tied":
        sub = cov[np.ix_(dims, dims)]
    elif cov_type == "diag":
        sub = cov[:, dims]
    else:
        sub = cov.copy()
    return _with_covariances(params, params.weights.copy(), params.means[:, dims], sub, cov_type)


def _split(params, given):
    """Indices of the remaining features, and precision blocks for conditioning.

    Returns
    -------
    rest : ndarray of shape (B,)
    precision_bb : ndarray, the conditional precisions (shape by covariance type)
    regression : ndarray of shape (K, B, A) or None
        ``-Lambda_bb^-1 Lambda_ba``: how each component's conditional mean moves with the
        given values (None when the type has no cross terms).
    """
    d = params.n_features
    rest = np.setdiff1d(np.arange(d), given)
    cov_type = params.covariance_type
    if cov_type in ("diag", "spherical"):
        prec = precisions_from_precision_cholesky(params.precisions_cholesky, cov_type)
        return rest, (prec[:, rest] if cov_type == "diag" else prec), None
    precision = precisions_from_precision_cholesky(params.precisions_cholesky, cov_type)
    if cov_type == "tied":
        precision = precision[np.newaxis]
    lam_bb = precision[:, rest][:, :, rest]
    lam_ba = precision[:, rest][:, :, given]
    regression = -_batched_cho_solve(np.linalg.cholesky(lam_bb), lam_ba)
    if cov_type == "tied":
        shape = (params.n_components,) + regression.shape[1:]
        return rest, lam_bb[0], np.broadcast_to(regression[0], shape)
    return rest, lam_bb, regression


def _batched_cho_solve(chol, rhs):
    """Solve ``L L^T X = rhs`` for stacked lower factors ``L`` (K, B, B) and ``rhs`` (K, B, A)."""
    return solve_upper(np.swapaxes(chol, -1, -2), solve_lower(chol, rhs))


class _GivenDensity:
    """``log w_k + log N(v; mu_k[given], Sigma_k[given, given])`` for batches of queries ``v``.

    The marginal mixture and its E-step plan are prepared once, centred on the marginal's
    weighted median (as ``inference.centred``) so that the expanded quadratic forms stay
    short.
    """

    def __init__(self, params, given):
        marg = marginal(params, given)
        self.centre = robust_centre(marg.means, marg.weights, np.zeros(marg.n_features))
        self.params = marg.shifted(-self.centre)
        self.plan = plan_e_step(self.params)

    def __call__(self, values):
        """Logits of shape (M, K) for queries of shape (M, A)."""
        return weighted_log_prob(values - self.centre, self.params, self.plan)


def condition(params, given, values):
    """The mixture of the other features given ``x[given] = values``.

    Parameters
    ----------
    params : Params
    given : ndarray of shape (A,), int
        Distinct feature indices, fewer than D.
    values : ndarray of shape (A,)

    Returns
    -------
    Params
        Over the remaining features in increasing order; the covariance type is kept.
    """
    rest, precision_bb, regression = _split(params, given)
    log_w = _GivenDensity(params, given)(values[np.newaxis])
    softmax_inplace(log_w)
    weights = log_w[0]
    means = params.means[:, rest].copy()
    if regression is not None:
        means += np.einsum("kba,ka->kb", regression, values - params.means[:, given])
    return _with_precisions(weights, means, precision_bb, params.covariance_type)


def conditional_terms(params, given):
    """The pieces of every component's conditional mean ``c_k + B_k (v - centre)``.

    The centre is the given features' marginal's weighted median (as for scoring), so that
    the two terms stay small.

    Returns
    -------
    rest : ndarray of shape (B,), int
        The features not given, in increasing order.
    centre : ndarray of shape (A,)
    intercept : ndarray of shape (K, B)
        ``c_k``: each component's conditional mean at ``v = centre``.
    regression : ndarray of shape (K, B, A) or None
        ``B_k`` (None where the given and other features are uncorrelated).
    precision_bb : ndarray
        The other features' precision, in the covariance type's shape.
    """
    rest, precision_bb, regression = _split(params, given)
    centre = robust_centre(params.means[:, given], params.weights, np.zeros(len(given)))
    intercept = params.means[:, rest].copy()
    if regression is not None:
        intercept -= np.einsum("kba,ka->kb", regression, params.means[:, given] - centre)
    return rest, centre, intercept, regression, precision_bb


def conditional_moments(params, given, values, chunk_size=None, return_covariance=False,
                        return_weights=False):
    """``E[x_rest | x[given] = v]`` for many queries at once, chunked over queries, with
    ``Cov[x_rest | v]`` and the components' posterior weights given ``v`` where asked
    (``_fitting.inference.conditional_mean`` computes the mean alone in the scoring pass).

    Parameters
    ----------
    params : Params
    given : ndarray of shape (A,), int
    values : ndarray of shape (M, A), float64
    chunk_size : int, optional
        Queries per chunk; by default the (queries, K, B) work arrays stay within a few tens
        of MB.
    return_covariance : bool
        Also return ``Cov[x_rest | v]`` of shape (M, B, B).
    return_weights : bool
        Also return each query's component weights (posterior given ``v``), shape (M, K).

    Returns
    -------
    means : ndarray of shape (M, B)
    covariances : ndarray of shape (M, B, B), if requested
    weights : ndarray of shape (M, K), if requested
    """
    rest, centre, intercept, regression, precision_bb = conditional_terms(params, given)
    k = params.n_components
    b = len(rest)
    m = values.shape[0]
    if regression is not None:
        flat_regression = regression.reshape(k, -1)
    if return_covariance:
        cond_cov = covariances_from_precision_cholesky(
            precision_cholesky_from_precisions(precision_bb, params.covariance_type),
            params.covariance_type,
        )
        cond_cov = as_full(cond_cov, params.covariance_type, k, b).reshape(k, -1)
    if chunk_size is None:
        chunk_size = max(1, CONDITIONAL_CHUNK_ELEMENTS // (k * max(b, 1)))
    given_density = _GivenDensity(params, given)

    out_mean = np.empty((m, b))
    out_cov = np.empty((m, b, b)) if return_covariance else None
    out_weights = np.empty((m, k)) if return_weights else None
    for start in range(0, m, chunk_size):
        v = values[start : start + chunk_size] - centre
        resp = given_density(v + centre)
        softmax_inplace(resp)
        mean = resp @ intercept
        if regression is not None:
            slope = (resp @ flat_regression).reshape(len(v), b, -1)
            mean += np.einsum("mba,ma->mb", slope, v)
        out_mean[start : start + len(v)] = mean
        if return_covariance:
            comp_means = intercept[np.newaxis] + (
                np.einsum("kba,ma->mkb", regression, v) if regression is not None else 0.0
            )
            dev = comp_means - mean[:, np.newaxis, :]
            spread = np.einsum("mk,mkb,mkc->mbc", resp, dev, dev)
            out_cov[start : start + len(v)] = (resp @ cond_cov).reshape(len(v), b, b) + spread
        if return_weights:
            out_weights[start : start + len(v)] = resp
    outputs = (out_mean,) + ((out_cov,) if return_covariance else ()) + (
        (out_weights,) if return_weights else ()
    )
    return outputs[0] if len(outputs) == 1 else outputs


def scale_covariances(params, factor):
    """Every covariance multiplied by ``factor`` (> 0)."""
    return Params(
        params.weights.copy(),
        params.means.copy(),
        params.precisions_cholesky / np.sqrt(factor),
        params.covariances * factor,
        params.covariance_type,
    )


def subset(params, components):
    """Only ``components`` (indices), with weights renormalised to sum to one."""
    weights = params.weights[components]
    tied = params.covariance_type == "tied"
    return Params(
        weights / weights.sum(),
        params.means[components],
        params.precisions_cholesky.copy() if tied else params.precisions_cholesky[components],
        params.covariances.copy() if tied else params.covariances[components],
        params.covariance_type,
    )
