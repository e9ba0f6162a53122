"""Maximum a posteriori adaptation of a mixture to new data (Reynolds, Quatieri and Dunn, 2000):
the closed form that turns one E-step's statistics under a prior mixture (a universal
background model) into the adapted mixture.

With ``n_k`` the responsibility mass of component k in the new data, ``T`` their total weight
and the data-dependent coefficient ``a_k = n_k / (n_k + r)`` (``r`` the relevance factor):

- weights: ``w_k' ∝ a_k n_k / T + (1 - a_k) w_k``;
- means: ``mu_k' = mu_k + a_k (xbar_k - mu_k)``, ``xbar_k`` the data's mean under k;
- covariances: ``Sigma_k' = a_k (M_k / n_k + reg) + (1 - a_k) (Sigma_k + d_k d_k^T)``, where
  ``M_k`` is the data's scatter about the adapted mean and ``d_k = mu_k - mu_k'``: Reynolds'
  ``a_k E_k[x x^T] + (1 - a_k)(Sigma_k + mu_k mu_k^T) - mu_k' mu_k'^T`` rewritten about the
  adapted mean, so that nothing cancels. Diagonal and spherical covariances take its diagonal
  (averaged over the features); a tied covariance, shared by the components, is adapted with
  the coefficient of all the data, ``T / (T + r)``, from the scatter about every adapted mean
  and the weighted ``d_k d_k^T``.

``r = 0`` gives one M-step from the prior's responsibilities (with ``reg_covar``), ``r → ∞``
the prior itself; a component that no row reaches keeps its parameters.
"""

from __future__ import annotations

import numpy as np

from .._foundations.covariance import precision_cholesky
from .em import Params

PARAMETERS = "wmv"


def map_adapt(params, stats, relevance_factor, parameters, reg_covar, jitter_floor):
    """The adapted mixture.

    Parameters
    ----------
    params : Params
        The prior mixture, under which ``stats`` were computed.
    stats : Stats
        The new data's statistics (data coordinates).
    relevance_factor : float
        ``r >= 0`` (``inf``: no adaptation).
    parameters : str
        Which to adapt: any of ``'w'`` (weights), ``'m'`` (means), ``'v'`` (covariances).
    reg_covar : float
        Added to the diagonal of the data's covariances, as in the M-step.
    jitter_floor : float
        Least extra diagonal for a covariance that is not positive definite.

    Returns
    -------
    Params
    """
    cov_type = params.covariance_type
    n = stats.resp_sum
    with np.errstate(divide="ignore", invalid="ignore"):
        coefficient = np.where(n > 0, n / (n + relevance_factor), 0.0)
        data_offset = np.where(n[:, None] > 0, stats.x_sum / n[:, None], 0.0)
    data_means = stats.center + data_offset
    weights = params.weights
    if "w" in parameters:
        weights = coefficient * n / stats.weight_sum + (1 - coefficient) * params.weights
        weights = weights / weights.sum()
    means = params.means
    if "m" in parameters:
        means = params.means + coefficient[:, None] * (data_means - params.means)
    covariances = params.covariances
    if "v" in parameters:
        covariances = _adapted_covariances(params, stats, means, coefficient,
                                           relevance_factor, reg_covar)
    prec_chol, covariances, _, _ = precision_cholesky(covariances, cov_type, jitter_floor)
    return Params(weights, means, prec_chol, covariances, cov_type)


def _adapted_covariances(params, stats, means, coefficient, relevance_factor, reg_covar):
    cov_type = params.covariance_type
    scatter = stats.recentered(means).xx_sum  # about the adapted means
    shift = params.means - means
    d = means.shape[1]
    if cov_type == "full":
        return (_shrunk(scatter, stats.resp_sum, coefficient, reg_covar * np.eye(d))
                + (1 - coefficient)[:, None, None]
                * (params.covariances + shift[:, :, None] * shift[:, None, :]))
    if cov_type == "diag":
        return (_shrunk(scatter, stats.resp_sum, coefficient, reg_covar)
                + (1 - coefficient)[:, None] * (params.covariances + shift**2))
    if cov_type == "spherical":
        return (_shrunk(scatter / d, stats.resp_sum, coefficient, reg_covar)
                + (1 - coefficient) * (params.covariances + (shift**2).sum(axis=1) / d))
    # tied: one covariance, adapted with the coefficient of all the data
    total = stats.weight_sum
    shared = total / (total + relevance_factor) if np.isfinite(relevance_factor) else 0.0
    spread = (params.weights[:, None] * shift).T @ shift
    return (shared * (scatter / total + reg_covar * np.eye(d))
            + (1 - shared) * (params.covariances + spread))


def _shrunk(scatter, n, coefficient, reg):
    """``a_k (scatter_k / n_k + reg)``, zero where no row reaches component k."""
    shape = (-1,) + (1,) * (scatter.ndim - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_row = np.where(n.reshape(shape) > 0, scatter / n.reshape(shape), 0.0)
    return coefficient.reshape(shape) * (per_row + reg)
