"""Variational inference for a Bayesian Gaussian mixture, on the shared seam.

The model is scikit-learn's ``BayesianGaussianMixture`` (Bishop, 2006, ch. 10; Blei and
Jordan, 2006): a Dirichlet (or stick-breaking Dirichlet-process) prior on the weights and a
Gaussian-Wishart prior on each component's mean and precision. Its variational E-step
gives each row the responsibilities ``r_nk ~ exp(log rho_nk)`` with

    log rho_nk = E[log pi_k] + E[log |Lambda_k|] / 2 - D / (2 beta_k) - D log(2 pi) / 2
                 - nu_k (x_n - m_k)^T W_k (x_n - m_k) / 2,

a Gaussian log-density in x (mean ``m_k``, precision ``nu_k W_k``) plus a per-component
constant. So the E-step is the ordinary one on :class:`~gaussmix._mathematics.em.Params` whose
``log_weights`` carry the constants: the fused, pruned numba kernel, streams, Dask and torch
serve it unchanged. What differs is the update after it: the posterior from the additive
statistics (:func:`posterior_from_stats`) and the evidence lower bound (:func:`lower_bound`),
whose entropy term ``-sum r log r`` is itself a function of the statistics.

Everything is in the fit's working coordinates (the data minus a robust centre), as the
rest of the loop; the formulas are scikit-learn's, term for term, so that from the same
responsibilities every iteration equals its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy.special import betaln, digamma, gammaln

from .._foundations.covariance import (
    log_det_precision_cholesky,
    precision_cholesky,
    precisions_from_precision_cholesky,
)
from .em import MStepReport, Params, Step, empirical_moments, log_normaliser

PRIOR_TYPES = ("dirichlet_process", "dirichlet_distribution")


@dataclass(frozen=True)
class Priors:
    """The resolved priors (scikit-learn's fitted ``*_prior_`` attributes), working coordinates.

    Attributes
    ----------
    weight_concentration_type : {'dirichlet_process', 'dirichlet_distribution'}
    weight_concentration : float
    mean_precision : float
    mean : ndarray of shape (D,)
    degrees_of_freedom : float
    covariance : ndarray
        (D, D) for 'full' and 'tied', (D,) for 'diag', a float for 'spherical'.
    """

    weight_concentration_type: str
    weight_concentration: float
    mean_precision: float
    mean: np.ndarray
    degrees_of_freedom: float
    covariance: np.ndarray


@dataclass(frozen=True)
class Posterior:
    """The variational posterior (scikit-learn's fitted attributes of the same names).

    Attributes
    ----------
    weight_concentration : ndarray of shape (K,), or a pair of them (Dirichlet process)
    mean_precision : ndarray of shape (K,)
    degrees_of_freedom : ndarray of shape (K,), or a float for 'tied'
    means : ndarray of shape (K, D)
    covariances : ndarray
        ``W_k^-1 / nu_k``, shaped by covariance type.
    precisions_cholesky : ndarray
        Cholesky factors of ``nu_k W_k``, the expected precisions.
    covariance_type : str
    """

    weight_concentration: object
    mean_precision: np.ndarray
    degrees_of_freedom: object
    means: np.ndarray
    covariances: np.ndarray
    precisions_cholesky: np.ndarray
    covariance_type: str

    def shifted(self, offset):
        """The same posterior with the means moved by ``offset`` (priors are not moved)."""
        return replace(self, means=self.means + offset)


# --------------------------------------------------------------------------------------------
# Posterior updates


def posterior_from_stats(stats, priors, reg_covar, jitter_floor):
    """The posterior given the statistics of one E-step (scikit-learn's ``_m_step``).

    Parameters
    ----------
    stats : Stats
    priors : Priors
    reg_covar : float
        Added to the empirical covariances, as in scikit-learn.
    jitter_floor : float
        Least extra diagonal for a covariance that is still not positive definite.

    Returns
    -------
    posterior : Posterior
    report : MStepReport
        The covariances that needed repair (no component is ever re-seeded: a Bayesian
        mixture switches off the components it does not need).
    """
    cov_type = stats.covariance_type
    nk, xk, sk, _ = empirical_moments(stats, reg_covar)
    concentration = _weight_concentration(nk, priors)
    mean_precision = priors.mean_precision + nk
    means = (priors.mean_precision * priors.mean + nk[:, np.newaxis] * xk) \
        / mean_precision[:, np.newaxis]
    dof, covariances = _wishart(nk, xk, sk, mean_precision, priors, cov_type)
    prec_chol, covariances, n_fixed, max_jitter = precision_cholesky(
        covariances, cov_type, jitter_floor)
    posterior = Posterior(concentration, mean_precision, dof, means, covariances, prec_chol,
                          cov_type)
    return posterior, MStepReport(0, n_fixed, max_jitter)


def _weight_concentration(nk, priors):
    if priors.weight_concentration_type == "dirichlet_process":
        tail = np.hstack((np.cumsum(nk[::-1])[-2::-1], 0.0))
        return (1.0 + nk, priors.weight_concentration + tail)
    return priors.weight_concentration + nk


def _wishart(nk, xk, sk, mean_precision, priors, cov_type):
    """Degrees of freedom and ``W^-1 / nu`` (scikit-learn's ``_estimate_wishart_*``)."""
    diff = xk - priors.mean
    shrink = priors.mean_precision / mean_precision  # (K,)
    k = len(nk)
    if cov_type == "full":
        dof = priors.degrees_of_freedom + nk
        scatter = nk[:, None, None] * (sk + shrink[:, None, None]
                                       * diff[:, :, None] * diff[:, None, :])
        return dof, (priors.covariance + scatter) / dof[:, None, None]
    if cov_type == "tied":
        dof = priors.degrees_of_freedom + nk.sum() / k
        between = np.dot((nk / mean_precision) * diff.T, diff)
        covariance = priors.covariance + sk * nk.sum() / k + priors.mean_precision / k * between
        return dof, covariance / dof
    dof = priors.degrees_of_freedom + nk
    if cov_type == "diag":
        covariances = priors.covariance + nk[:, None] * (sk + shrink[:, None] * diff**2)
        return dof, covariances / dof[:, None]
    covariances = priors.covariance + nk * (sk + shrink * np.mean(diff**2, axis=1))
    return dof, covariances / dof


# --------------------------------------------------------------------------------------------
# The E-step's parameters


def expected_log_weights(posterior):
    """``E[log pi_k]`` under the posterior, shape (K,)."""
    concentration = posterior.weight_concentration
    if isinstance(concentration, tuple):
        a, b = concentration
        digamma_sum = digamma(a + b)
        return digamma(a) - digamma_sum + np.hstack((0.0, np.cumsum(digamma(b) - digamma_sum)[:-1]))
    return digamma(concentration) - digamma(np.sum(concentration))


def mean_weights(posterior):
    """The posterior mean of the weights (scikit-learn's ``weights_``), shape (K,)."""
    concentration = posterior.weight_concentration
    if isinstance(concentration, tuple):
        a, b = concentration
        total = a + b
        weights = a / total * np.hstack((1.0, np.cumprod(b / total)[:-1]))
        return weights / weights.sum()
    return concentration / concentration.sum()


def _log_lambda(posterior, n_features):
    """``E[log |Lambda_k|] - D log(nu_k)`` (the expected log-determinant of the precision
    beyond the expected precision's), shape (K,) or a float (tied)."""
    dof = np.asarray(posterior.degrees_of_freedom, dtype=np.float64)
    halves = 0.5 * (dof - np.arange(n_features)[:, np.newaxis])
    return n_features * math.log(2.0) + np.sum(digamma(halves), axis=0)


def expected_params(posterior):
    """:class:`~gaussmix._mathematics.em.Params` whose ordinary E-step is the variational one.

    The means and precision factors are the posterior's (``nu_k W_k`` as the precision);
    ``log_weights`` carry ``E[log pi_k] - D log(nu_k) / 2 + (E-log-det term - D / beta_k) / 2``,
    and ``weights`` the posterior mean weights (for display and sampling).
    """
    d = posterior.means.shape[1]
    dof = np.asarray(posterior.degrees_of_freedom, dtype=np.float64)
    constant = (-0.5 * d * np.log(dof)
                + 0.5 * (_log_lambda(posterior, d) - d / posterior.mean_precision))
    log_weights = expected_log_weights(posterior) + constant
    return Params(mean_weights(posterior), posterior.means, posterior.precisions_cholesky,
                  posterior.covariances, posterior.covariance_type, log_weights=log_weights)


# --------------------------------------------------------------------------------------------
# The evidence lower bound


def responsibility_entropy(stats, params):
    """``-sum_n w_n sum_k r_nk log r_nk`` from the statistics of an E-step under ``params``.

    ``log r_nk = c_k - q_nk / 2 - log Z_n`` with ``c_k`` the E-step's per-component constants
    and ``q_nk`` the quadratic form of row n under component k, so the sum is
    ``sum_k (c_k N_k - Q_k / 2) - sum_n w_n log Z_n`` with ``Q_k = sum_n w_n r_nk q_nk``, a
    function of the first and second moments.
    """
    constants = log_normaliser(params)
    quadratic = _weighted_quadratic_forms(stats, params)
    return -(float(constants @ stats.resp_sum) - 0.5 * quadratic - stats.log_likelihood)


def _weighted_quadratic_forms(stats, params):
    """``sum_k sum_n w_n r_nk (x_n - m_k)^T P_k (x_n - m_k)``, from moments about the
    statistics' centres (``o_k = m_k - center_k``)."""
    cov_type = stats.covariance_type
    o = params.means - stats.center
    nk, xs, xx = stats.resp_sum, stats.x_sum, stats.xx_sum
    precisions = precisions_from_precision_cholesky(params.precisions_cholesky, cov_type)
    if cov_type == "full":
        trace = np.einsum("kij,kji->", precisions, xx)
        cross = np.einsum("ki,kij,kj->", o, precisions, xs)
        square = np.einsum("k,ki,kij,kj->", nk, o, precisions, o)
    elif cov_type == "tied":
        trace = float(np.sum(precisions * xx))
        cross = np.einsum("ki,ij,kj->", o, precisions, xs)
        square = np.einsum("k,ki,ij,kj->", nk, o, precisions, o)
    elif cov_type == "diag":
        trace = float(np.sum(precisions * xx))
        cross = float(np.sum(precisions * o * xs))
        square = float(np.sum(nk[:, None] * precisions * o**2))
    else:
        trace = float(precisions @ xx)
        cross = float(precisions @ np.einsum("ki,ki->k", o, xs))
        square = float(precisions @ (nk * np.einsum("ki,ki->k", o, o)))
    return float(trace - 2.0 * cross + square)


def lower_bound(entropy, posterior, priors):
    """scikit-learn's evidence lower bound (its constant terms dropped, as there).

    Parameters
    ----------
    entropy : float
        :func:`responsibility_entropy` of the E-step before ``posterior``.
    posterior : Posterior
        The posterior updated from that E-step.
    priors : Priors
    """
    cov_type = posterior.covariance_type
    d = posterior.means.shape[1]
    dof = np.asarray(posterior.degrees_of_freedom, dtype=np.float64)
    log_det = (log_det_precision_cholesky(posterior.precisions_cholesky, cov_type, d)
               - 0.5 * d * np.log(dof))
    n_components = posterior.means.shape[0]
    log_wishart = _log_wishart_norm(dof, log_det, d)
    log_wishart = float(np.sum(log_wishart)) * (n_components if cov_type == "tied" else 1)
    concentration = posterior.weight_concentration
    if isinstance(concentration, tuple):
        log_norm_weight = -float(np.sum(betaln(*concentration)))
    else:
        log_norm_weight = float(gammaln(np.sum(concentration)) - np.sum(gammaln(concentration)))
    return (entropy - log_wishart - log_norm_weight
            - 0.5 * d * float(np.sum(np.log(posterior.mean_precision))))


def _log_wishart_norm(dof, log_det_precisions_chol, n_features):
    """The log normaliser of the Wishart distributions (without its log(pi) term)."""
    return -(dof * log_det_precisions_chol + dof * n_features * 0.5 * math.log(2.0)
             + np.sum(gammaln(0.5 * (dof - np.arange(n_features)[:, np.newaxis])), axis=0))


@dataclass(frozen=True)
class Variational:
    """The update of a Bayesian mixture: the posterior from the statistics, the bound from
    the E-step's entropy and the new posterior (``loop.run_em`` calls it)."""

    priors: Priors
    reg_covar: float
    jitter_floor: float

    def start(self, stats):
        """``(params, posterior)`` from initial statistics (scikit-learn's ``_initialize``)."""
        posterior, _ = posterior_from_stats(stats, self.priors, self.reg_covar,
                                            self.jitter_floor)
        return expected_params(posterior), posterior

    def __call__(self, stats, params):
        entropy = responsibility_entropy(stats, params)
        posterior, report = posterior_from_stats(stats, self.priors, self.reg_covar,
                                                 self.jitter_floor)
        bound = lower_bound(entropy, posterior, self.priors)
        return Step(expected_params(posterior), report, bound, posterior)


# --------------------------------------------------------------------------------------------
# Priors from the data


def resolve_priors(*, covariance_type, n_features, weight_concentration_type,
                   weight_concentration, mean_precision, mean, degrees_of_freedom, covariance,
                   n_components, data_moments):
    """scikit-learn's defaults for the priors left as None, in working coordinates.

    Parameters
    ----------
    mean : ndarray of shape (D,) or None
        In working coordinates (None: the data's weighted mean).
    covariance : ndarray, float or None
        In the shape of the covariance type (None: the data's covariance with ddof=1).
    data_moments : callable () -> (ndarray of shape (D,), ndarray of shape (D, D) or (D,))
        The data's weighted mean (working coordinates) and covariance (ddof=1): (D, D) for
        'full' and 'tied', its diagonal otherwise; called only when a prior is left to the
        data.
    """
    if weight_concentration is None:
        weight_concentration = 1.0 / n_components
    if mean_precision is None:
        mean_precision = 1.0
    moments = None
    if mean is None:
        moments = data_moments()
        mean = moments[0]
    if degrees_of_freedom is None:
        degrees_of_freedom = float(n_features)
    if covariance is None:
        scatter = (moments or data_moments())[1]
        covariance = scatter.mean() if covariance_type == "spherical" else scatter
    return Priors(weight_concentration_type, float(weight_concentration), float(mean_precision),
                  np.asarray(mean, dtype=np.float64), float(degrees_of_freedom),
                  np.asarray(covariance, dtype=np.float64))


__all__ = ["PRIOR_TYPES", "Posterior", "Priors", "Variational", "expected_params",
           "mean_weights", "resolve_priors"]
