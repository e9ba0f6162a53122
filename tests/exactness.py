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
    """Every covariance as a (K, D, D) float64 array."""
    cov = np.asarray(covariances, dtype=np.float64)
    if covariance_type == "full":
        return cov
    if covariance_type == "tied":
        return np.broadcast_to(cov, (n_components, n_features, n_features))
    if covariance_type == "diag":
        return np.stack([np.diag(c) for c in cov])
    return np.stack([np.eye(n_features) * c for c in cov.reshape(-1)])


def component_terms(X, weights, means, covariances):
    """Per row and component: the log-weight plus normaliser and the squared Mahalanobis
    distance, in difference form, over the observed (not NaN) entries of each row.

    Parameters
    ----------
    X : ndarray of shape (n, D); NaN marks a missing entry (the marginal is used)
    weights : ndarray of shape (K,)
    means : ndarray of shape (K, D)
    covariances : ndarray of shape (K, D, D)

    Returns
    -------
    log_norm : ndarray of shape (n, K)
        ``log w_k - log det L_k - o log(2 pi) / 2`` (o observed entries).
    maha : ndarray of shape (n, K)
        ``|L_k^-1 (x_o - mu_k,o)|^2`` (inf where it overflows).
    """
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    k = len(weights)
    log_norm = np.empty((n, k))
    maha = np.empty((n, k))
    observed = ~np.isnan(X)
    keys, inverse = np.unique(observed, axis=0, return_inverse=True)
    with np.errstate(divide="ignore"):
        log_weights = np.log(np.asarray(weights, dtype=np.float64))
    for p, key in enumerate(keys):
        rows = np.flatnonzero(inverse.ravel() == p)
        o = np.flatnonzero(key)
        for j in range(k):
            if len(o) == 0:
                log_norm[rows, j], maha[rows, j] = log_weights[j], 0.0
                continue
            chol = cholesky(covariances[j][np.ix_(o, o)], lower=True)
            diff = X[np.ix_(rows, o)] - means[j, o]
            with np.errstate(over="ignore", invalid="ignore"):
                y = solve_triangular(chol, diff.T, lower=True)
                maha[rows, j] = np.einsum("ij,ij->j", y, y)
            log_norm[rows, j] = (log_weights[j] - np.log(np.diag(chol)).sum()
                                 - 0.5 * len(o) * LOG_2PI)
    maha[np.isnan(maha)] = np.inf  # inf - inf inside an overflowing solve
    return log_norm, maha


def model_arrays(model):
    """A fitted model's weights, means and dense covariances in float64."""
    k, d = model.means_.shape
    return (np.asarray(model.weights_, dtype=np.float64),
            np.asarray(model.means_, dtype=np.float64),
            dense_covariances(model.covariances_, model.covariance_type, k, d))


def reference_scores(weights, means, covariances, X):
    """Log-densities, responsibilities, labels and the tolerance scale of rows ``X``.

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
    """
    log_norm, maha = component_terms(X, weights, means, covariances)
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
                scale=1.0 + terms.sum(axis=1), logits=logits)


def reference_of(model, X):
    """:func:`reference_scores` of a fitted estimator."""
    return reference_scores(*model_arrays(model), X)


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


def reference_em_step(X, sample_weight, weights, means, covariances, covariance_type,
                      reg_covar):
    """One EM iteration on complete rows by the reference: the weighted mean log-likelihood
    under the given parameters and the maximum-likelihood parameters after it (dense
    covariances; 'tied' pooled, 'diag' and 'spherical' reduced).

    Returns
    -------
    mean_log_lik : float
    weights, means : (K,), (K, D)
    covariances : (K, D, D)
    """
    X = np.asarray(X, dtype=np.float64)
    w = np.asarray(sample_weight, dtype=np.float64)
    ref = reference_scores(weights, means, covariances, X)
    positive = w > 0
    mean_log_lik = float(w[positive] @ ref["log_prob"][positive] / w.sum())
    wr = ref["resp"] * w[:, None]
    wr[~positive] = 0.0
    nk = wr.sum(axis=0)
    new_means = (wr.T @ X) / nk[:, None]
    k, d = means.shape
    scatter = np.empty((k, d, d))
    for j in range(k):
        diff = X - new_means[j]
        scatter[j] = (diff * wr[:, j, None]).T @ diff / nk[j]
    if covariance_type == "tied":
        scatter[:] = np.einsum("k,kij->ij", nk, scatter) / nk.sum()
    elif covariance_type == "diag":
        scatter = np.stack([np.diag(np.diag(s)) for s in scatter])
    elif covariance_type == "spherical":
        scatter = np.stack([np.trace(s) / d * np.eye(d) for s in scatter])
    return mean_log_lik, nk / nk.sum(), new_means, scatter + reg_covar * np.eye(d)


def whitened_error(covariance, reference):
    """How far ``covariance`` is from ``reference`` in the reference's own units: the
    largest eigenvalue in absolute value of ``L^-1 (C - R) L^-T`` (``R = L L^T``)."""
    chol = cholesky(reference, lower=True)
    diff = solve_triangular(chol, solve_triangular(chol, covariance - reference, lower=True).T,
                            lower=True)
    return float(np.max(np.abs(np.linalg.eigvalsh(0.5 * (diff + diff.T)))))


def mean_error(mean, reference_mean, reference_covariance):
    """The Mahalanobis length of ``mean - reference_mean`` under the reference covariance."""
    chol = cholesky(reference_covariance, lower=True)
    y = solve_triangular(chol, mean - reference_mean, lower=True)
    return float(np.sqrt(y @ y))
