"""The exactness oracle's reference: a plain float64 mixture in difference form.

Every fast path of gaussmix (the fused kernel, the numpy and torch E-steps, the kernels for
rows with holes) is checked against these few lines: per component, the Cholesky factor of
its covariance (scipy), the row's difference from the mean solved against it, and a
log-sum-exp over components. Nothing here expands a quadratic form, shares work between
rows or prunes a component, so a row's result depends on that row and the parameters alone.

How close a fast path must come is relative to the size of a row's terms: a float64
evaluation of ``log w_k - log det(L_k) - D log(2 pi) / 2 - |L_k^-1 (x - mu_k)|^2 / 2``
rounds each term, so even this reference is only exact to about machine epsilon times
``|log w_k| + |log det L_k| + |L_k^-1 (x - mu_k)|^2 / 2``. :func:`reference_scores` returns
that magnitude per row (``scale``: one plus its responsibility-weighted mean), and the tests
allow ``rtol * scale``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.linalg import cholesky, solve_triangular
from scipy.special import logsumexp

LOG_2PI = math.log(2.0 * math.pi)


def dense_covariances(covariances, covariance_type, n_components, n_features):
    """Every covariance (or precision factor, or precision: any per-type array that is a
    diagonal for 'diag' and a multiple of the identity for 'spherical') as a (K, D, D)
    float64 array."""
    cov = np.asarray(covariances, dtype=np.float64)
    if covariance_type == "full":
        return cov
    if covariance_type == "tied":
        return np.broadcast_to(cov, (n_components, n_features, n_features))
    if covariance_type == "diag":
        return np.stack([np.diag(c) for c in cov])
    return np.stack([np.eye(n_features) * c for c in cov.reshape(-1)])


def component_terms(X, weights, means, covariances=None, precisions_cholesky=None,
                    log_weights=None):
    """Per row and component: the log-weight plus normaliser and the squared Mahalanobis
    distance, in difference form, over the observed (not NaN) entries of each row.

    Parameters
    ----------
    X : ndarray of shape (n, D); NaN marks a missing entry (the marginal is used)
    weights : ndarray of shape (K,)
    means : ndarray of shape (K, D)
    covariances : ndarray of shape (K, D, D), optional
        Each component's factor is the Cholesky factor of its covariance (scipy), of its
        observed block for a row with holes.
    precisions_cholesky : ndarray of shape (K, D, D), optional
        Or, for complete rows, the upper factors U of the precisions, ``Sigma^-1 = U U^T``:
        the distance is ``|(x - mu) U|^2`` (the parameters a model scores complete rows
        with; rows with holes take the covariances' observed blocks).
    log_weights : ndarray of shape (K,), optional
        In place of ``log(weights)`` (a variational mixture's expected log weights and
        constants).

    Returns
    -------
    log_norm : ndarray of shape (n, K)
        ``log w_k - log det L_k - o log(2 pi) / 2`` (o observed entries).
    maha : ndarray of shape (n, K)
        ``|L_k^-1 (x_o - mu_k,o)|^2`` (inf where it overflows).
    """
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    k = len(means)
    log_norm = np.empty((n, k))
    maha = np.empty((n, k))
    observed = ~np.isnan(X)
    keys, inverse = np.unique(observed, axis=0, return_inverse=True)
    if log_weights is None:
        with np.errstate(divide="ignore"):
            log_weights = np.log(np.asarray(weights, dtype=np.float64))
    for p, key in enumerate(keys):
        rows = np.flatnonzero(inverse.ravel() == p)
        o = np.flatnonzero(key)
        for j in range(k):
            if len(o) == 0:
                log_norm[rows, j], maha[rows, j] = log_weights[j], 0.0
                continue
            diff = X[np.ix_(rows, o)] - means[j, o]
            with np.errstate(over="ignore", invalid="ignore"):
                if precisions_cholesky is not None and len(o) == X.shape[1]:
                    y = (diff @ precisions_cholesky[j]).T
                    log_det = -np.log(np.diag(precisions_cholesky[j])).sum()
                else:
                    chol = cholesky(covariances[j][np.ix_(o, o)], lower=True)
                    y = solve_triangular(chol, diff.T, lower=True)
                    log_det = np.log(np.diag(chol)).sum()
                maha[rows, j] = np.einsum("ij,ij->j", y, y)
            log_norm[rows, j] = log_weights[j] - log_det - 0.5 * len(o) * LOG_2PI
    maha[np.isnan(maha)] = np.inf  # inf - inf inside an overflowing solve
    return log_norm, maha


def model_arrays(model):
    """A fitted model's weights, means and dense covariances in float64."""
    k, d = model.means_.shape
    return (np.asarray(model.weights_, dtype=np.float64),
            np.asarray(model.means_, dtype=np.float64),
            dense_covariances(model.covariances_, model.covariance_type, k, d))


def reference_scores(weights, means, covariances, X, precisions_cholesky=None,
                     log_weights=None):
    """Log-densities, responsibilities, labels and the tolerance scale of rows ``X`` (the
    parameters as :func:`component_terms` takes them).

    Returns
    -------
    dict with
        log_prob : (n,), -inf where every component's distance overflows
        resp : (n, K), NaN on such rows
        labels : (n,), the most likely component (first of ties)
        margin : (n,), the gap in nats between the best and second-best component
        scale : (n,), ``1 + sum_k r_nk (|log_norm_nk| + maha_nk / 2)``: the size of the
            row's terms, to which any float64 evaluation is exact only relatively
        logits : (n, K)
        maha : (n, K), the squared Mahalanobis distances
    """
    log_norm, maha = component_terms(X, weights, means, covariances, precisions_cholesky,
                                      log_weights)
    logits = log_norm - 0.5 * maha
    with np.errstate(invalid="ignore"):
        log_prob = logsumexp(logits, axis=1)
        resp = np.exp(logits - log_prob[:, None])
    ordered = np.sort(logits, axis=1)
    with np.errstate(invalid="ignore"):
        margin = ordered[:, -1] - ordered[:, -2] if logits.shape[1] > 1 else np.full(
            len(X), np.inf)
        terms = np.where(resp > 0, resp * (np.abs(log_norm) + 0.5 * maha), 0.0)
    return dict(log_prob=log_prob, resp=resp, labels=logits.argmax(axis=1), margin=margin,
                scale=1.0 + terms.sum(axis=1), logits=logits, maha=maha)


def reference_of(model, X):
    """:func:`reference_scores` of a fitted estimator (Cholesky factors of its
    ``covariances_``)."""
    return reference_scores(*model_arrays(model), X)


def reference_of_params(params, X):
    """:func:`reference_scores` under a :class:`gaussmix._mathematics.em.Params` as a model scores with
    it: its precision factors (and a variational mixture's log weights) in difference form,
    nothing else taken from gaussmix."""
    k, d = params.means.shape
    return reference_scores(params.weights, params.means,
                            dense_covariances(params.covariances, params.covariance_type, k, d),
                            X, dense_covariances(params.precisions_cholesky,
                                                 params.covariance_type, k, d),
                            params.log_weights)


def n_parameters(covariance_type, n_components, n_features):
    """Free parameters of a mixture (what BIC and AIC count)."""
    k, d = n_components, n_features
    cov = {"full": k * d * (d + 1) / 2, "tied": d * (d + 1) / 2, "diag": k * d,
           "spherical": k}[covariance_type]
    return k - 1 + k * d + cov


def reference_bic(model, X):
    """``-2 log L + p log n`` by the reference."""
    ref = reference_of(model, X)
    p = n_parameters(model.covariance_type, *model.means_.shape)
    return -2.0 * ref["log_prob"].sum() + p * math.log(len(X))


def whitened_error(covariance, reference):
    """How far ``covariance`` is from ``reference`` in the reference's own units: the
    largest eigenvalue in absolute value of ``L^-1 (C - R) L^-T`` (``R = L L^T``)."""
    chol = cholesky(reference, lower=True)
    diff = solve_triangular(chol, solve_triangular(chol, covariance - reference, lower=True).T,
                            lower=True)
    return float(np.max(np.abs(np.linalg.eigvalsh(0.5 * (diff + diff.T)))))


def entrywise_sensitivity(covariance):
    """How far a relative error of delta in each entry of a covariance C can move it in
    :func:`whitened_error`'s units, divided by delta: the largest eigenvalue of
    ``|L^-1| |C| |L^-1|^T`` (1 for a diagonal covariance, about the condition of its
    correlations for a nearly singular one; inf when float64 cannot factor it). Where delta
    (a few machine epsilons) times this exceeds a tolerance, even this reference does not
    resolve the covariance to it."""
    try:
        inverse = np.abs(np.linalg.inv(cholesky(covariance, lower=True)))
    except np.linalg.LinAlgError:  # not positive definite in float64: nothing resolves it
        return np.inf
    return float(np.linalg.eigvalsh(inverse @ np.abs(covariance) @ inverse.T)[-1])


def rounding_reach(sizes, covariance):
    """The longest Mahalanobis length (under ``covariance``) of a vector whose entries are
    at most ``sizes`` (D,) in absolute value, whatever their signs: ``| |L^-1| sizes |``
    bounds it (the reach of each entry's rounding, say)."""
    inverse = np.abs(np.linalg.inv(cholesky(covariance, lower=True)))
    return float(np.linalg.norm(inverse @ sizes))


def mean_error(mean, reference_mean, reference_covariance):
    """The Mahalanobis length of ``mean - reference_mean`` under the reference covariance."""
    chol = cholesky(reference_covariance, lower=True)
    y = solve_triangular(chol, mean - reference_mean, lower=True)
    return float(np.sqrt(y @ y))


def reference_em_step(X, sample_weight, weights, means, covariances, covariance_type,
                      reg_covar, precision_factors=None):
    """One EM iteration by the reference: the weighted mean log-likelihood under the given
    parameters and the maximum-likelihood parameters after it (dense covariances; 'tied'
    pooled, 'diag' and 'spherical' reduced). ``precision_factors`` (K, D, D), when the
    parameters were given as precisions: factors with ``Sigma^-1 = F F^T`` that complete
    rows are scored by (see :func:`component_terms`).

    Rows with missing entries (NaN) are scored by their observed entries' marginal, and
    their statistics completed per component with the conditional mean of the missing
    entries and the conditional covariance of that block (Ghahramani and Jordan), pattern by
    pattern; moments are taken about the new means, so nothing cancels.

    Returns
    -------
    mean_log_lik : float
    weights, means : (K,), (K, D)
    covariances : (K, D, D)
    """
    X = np.asarray(X, dtype=np.float64)
    w = np.asarray(sample_weight, dtype=np.float64)
    w = w / w.max()  # only ratios matter; denormal weights would lose their digits in products
    ref = reference_scores(weights, means, covariances, X, precision_factors)
    positive = w > 0
    mean_log_lik = float(w[positive] @ ref["log_prob"][positive] / w.sum())
    wr = ref["resp"] * w[:, None]
    wr[~positive] = 0.0
    k, d = means.shape
    nk = wr.sum(axis=0)
    observed = ~np.isnan(X)
    keys, inverse = np.unique(observed, axis=0, return_inverse=True)

    def completed(rows, key, j):
        """The rows with component j's conditional means in their holes, and the
        conditional covariance of the holes (zero elsewhere)."""
        o, m = np.flatnonzero(key), np.flatnonzero(~key)
        s = covariances[j]
        filled = np.empty((len(rows), d))
        filled[:, o] = X[np.ix_(rows, o)]
        extra = np.zeros((d, d))
        if len(m):
            b = s[np.ix_(m, o)] @ np.linalg.inv(s[np.ix_(o, o)])
            filled[:, m] = means[j, m] + (X[np.ix_(rows, o)] - means[j, o]) @ b.T
            extra[np.ix_(m, m)] = s[np.ix_(m, m)] - b @ s[np.ix_(o, m)]
        return filled, extra

    groups = [np.flatnonzero(inverse.ravel() == p) for p in range(len(keys))]
    # Summed about a point amid the data, so that data far from the origin keep their digits.
    centre = np.nanmedian(X, axis=0)
    new_means = np.zeros((k, d))
    for rows, key in zip(groups, keys):
        for j in range(k):
            new_means[j] += wr[rows, j] @ (completed(rows, key, j)[0] - centre)
    # A component without mass keeps its mean and covariance (the estimator re-seeds it).
    kept = nk > 0
    new_means = np.where(kept[:, None], centre + new_means / np.where(kept, nk, 1.0)[:, None],
                         means)
    scatter = np.zeros((k, d, d))  # about the new means: nothing cancels
    for rows, key in zip(groups, keys):
        for j in range(k):
            filled, extra = completed(rows, key, j)
            diff = filled - new_means[j]
            r = wr[rows, j]
            scatter[j] += (diff * r[:, None]).T @ diff + r.sum() * extra
    scatter = np.where(kept[:, None, None], scatter / np.where(kept, nk, 1.0)[:, None, None],
                       covariances - reg_covar * np.eye(d))
    if covariance_type == "tied":
        scatter[:] = np.einsum("k,kij->ij", nk, scatter) / nk.sum()
    elif covariance_type == "diag":
        scatter = np.stack([np.diag(np.diag(c)) for c in scatter])
    elif covariance_type == "spherical":
        scatter = np.stack([np.trace(c) / d * np.eye(d) for c in scatter])
    return mean_log_lik, nk / nk.sum(), new_means, scatter + reg_covar * np.eye(d)
