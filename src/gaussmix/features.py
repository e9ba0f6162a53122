"""Features from a fitted mixture: Fisher vectors and supervectors.

A set of rows (the descriptors of one picture, the frames of one clip) becomes one fixed-length
vector relative to a mixture fitted on many sets (a universal background model):

- :func:`fisher_vector`: the gradient of the set's mean log-likelihood with respect to the
  mixture's weights, means and variances, each normalised by its Fisher information
  (Perronnin and Dance, 2007; Perronnin, Sánchez and Mensink, 2010), exactly as
  ``skimage.feature.fisher_vector`` defines it for diagonal covariances;
- :func:`supervector`: the stacked means of a mixture (usually one adapted to the set by
  :meth:`GaussianMixture.adapt`), scaled so that Euclidean distances between supervectors
  bound the Kullback-Leibler divergence between the mixtures (Campbell et al., 2006).

Both are one E-step's statistics plus a closed form: no (n_rows, n_components) array is held.
"""

from __future__ import annotations

import numpy as np

from ._foundations.validation import check_real

__all__ = ["fisher_vector", "supervector"]


def fisher_vector(model, X, improved=False, alpha=0.5):
    """The Fisher vector of a set of rows, or of each of many sets.

    For component k with weight ``w_k``, mean ``mu_k`` and variances ``var_k``, over the N
    rows of a set with responsibilities ``g_nk``:

    - ``d_w_k = (sum_n g_nk / N - w_k) / sqrt(w_k)``, K values;
    - ``d_mu_k = sum_n g_nk (x_n - mu_k) / (N sqrt(w_k) sqrt(var_k))``, K x D values;
    - ``d_var_k = -sum_n g_nk ((x_n - mu_k)**2 / var_k - 1) / (N sqrt(2 w_k))``, K x D values,

    concatenated in that order: ``K + 2 K D`` values, the definition of
    ``skimage.feature.fisher_vector`` for ``'diag'`` covariances (equal to it to rounding).
    Other covariance types take the same form in each component's whitened coordinates
    ``z = (x - mu_k) U_k`` (``U_k`` its precision's Cholesky factor, ``var = 1``): for
    ``'full'`` and ``'tied'``, ``d_mu_k`` is ``sum g_nk z_nk / (N sqrt(w_k))`` and
    ``d_var_k`` the same expression with ``z**2``, the gradient with respect to the scales
    along the whitened axes; for ``'spherical'`` ``d_mu_k`` has D values and ``d_var_k`` is
    one value per component, ``-sum g_nk (|x_n - mu_k|**2 / var_k - D) / (N sqrt(2 D w_k))``
    (``K + K D + K`` values in all).

    Parameters
    ----------
    model : GaussianMixture
        Fitted (a ``BayesianGaussianMixture`` too: its posterior mean parameters).
    X : array-like of shape (n_rows, n_features), or a list of them
        One set of rows (any input :meth:`GaussianMixture.fit` takes), or a list of sets
        (arrays), each giving one vector.
    improved : bool, default=False
        The improved Fisher vector: ``sign(f) |f|**alpha``, then divided by its Euclidean
        norm (a vector of zeros stays zeros).
    alpha : float in [0, 1], default=0.5

    Returns
    -------
    ndarray of shape (n_values,), or (n_sets, n_values) for a list of sets
    """
    check_fitted_mixture(model)
    if not isinstance(improved, (bool, np.bool_)):
        raise ValueError(f"improved must be True or False, got {improved!r}.")
    check_real(alpha, "alpha", 0.0, finite=True)
    if alpha > 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}.")
    from ._fitting.one_pass import one_pass, statistics_of_sets

    params = _whitenable(model._params())
    cov_type = model._arrays_covariance_type
    if isinstance(X, (list, tuple)):
        if not X:
            raise ValueError("Pass at least one set of rows: the list of sets is empty.")
        vectors = np.stack([_fisher_vector(stats, params, cov_type)
                            for stats in statistics_of_sets(X, model, params)])
    else:
        vectors = _fisher_vector(one_pass(X, None, model).statistics(params), params, cov_type)
    return _improved(vectors, alpha) if improved else vectors


def _fisher_vector(stats, params, cov_type):
    """The Fisher vector of one set's statistics under ``params`` (tied as full)."""
    n = stats.weight_sum
    if not n > 0:
        raise ValueError("A set of rows is empty; every set needs at least one row.")
    w = params.weights
    share = stats.resp_sum / n
    about_means = stats.recentered(params.means)
    first, second = about_means.x_sum, about_means.xx_sum  # sum g (x - mu), its square by type
    d_w = (share - w) / np.sqrt(w)
    if cov_type == "diag":
        var = params.covariances
        d_mu = first / (n * np.sqrt(w)[:, None] * np.sqrt(var))
        d_var = -(second / var - stats.resp_sum[:, None]) / (n * np.sqrt(2 * w)[:, None])
    elif cov_type == "spherical":
        var, d = params.covariances, first.shape[1]
        d_mu = first / (n * np.sqrt(w * var)[:, None])
        d_var = -(second / var - d * stats.resp_sum) / (n * np.sqrt(2 * d * w))
    else:  # full and tied (expanded to full): whitened coordinates
        u = params.precisions_cholesky
        d_mu = np.einsum("kd,kde->ke", first, u) / (n * np.sqrt(w)[:, None])
        whitened = np.einsum("kde,kdf,kfe->ke", u, second, u)  # diag(U^T M U)
        d_var = -(whitened - stats.resp_sum[:, None]) / (n * np.sqrt(2 * w)[:, None])
    return np.concatenate([d_w, d_mu.ravel(), d_var.ravel()])


def _whitenable(params):
    """Tied parameters as full ones (each component's own moments are needed)."""
    if params.covariance_type != "tied":
        return params
    from dataclasses import replace

    k = params.n_components
    return replace(params, covariance_type="full",
                   covariances=np.broadcast_to(params.covariances, (k, *params.covariances.shape))
                   .copy(),
                   precisions_cholesky=np.broadcast_to(
                       params.precisions_cholesky, (k, *params.precisions_cholesky.shape)).copy())


def _improved(vectors, alpha):
    powered = np.sign(vectors) * np.abs(vectors) ** alpha
    norms = np.linalg.norm(powered, axis=-1, keepdims=True)
    return np.divide(powered, norms, out=np.zeros_like(powered), where=norms > 0)


def supervector(model, normalized=True):
    """The means of a mixture stacked into one vector.

    Parameters
    ----------
    model : GaussianMixture
        Fitted; usually adapted from a background model by :meth:`GaussianMixture.adapt`
        (means only), so that every speaker's or clip's supervector lives in one space.
    normalized : bool, default=True
        Scale each mean as ``sqrt(w_k) Sigma_k^(-1/2) mu_k`` (with the Cholesky factor of
        the precision), so that the squared distance between two supervectors adapted from
        one background model is twice an upper bound of the Kullback-Leibler divergence
        between the two mixtures (Campbell, Sturim and Reynolds, 2006); False: the plain
        means.

    Returns
    -------
    ndarray of shape (n_components * n_features,)
    """
    check_fitted_mixture(model)
    params = _whitenable(model._params())
    if not normalized:
        return params.means.ravel().copy()
    w, u = params.weights, params.precisions_cholesky
    if params.covariance_type == "full":
        scaled = np.einsum("kd,kde->ke", params.means, u)
    elif params.covariance_type == "diag":
        scaled = params.means * u
    else:
        scaled = params.means * u[:, None]
    return (np.sqrt(w)[:, None] * scaled).ravel()


def check_fitted_mixture(model):
    from ._estimator import MixtureEstimator
    from .exceptions import not_fitted

    if not isinstance(model, MixtureEstimator):
        raise ValueError(f"model must be a fitted gaussmix GaussianMixture, got "
                         f"{type(model).__name__}; fit one first (GaussianMixture(...).fit).")
    if not model.__sklearn_is_fitted__():
        raise not_fitted(model)

