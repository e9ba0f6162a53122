"""The :class:`BayesianGaussianMixture` estimator: scikit-learn's variational mixture on the
shared fit.

The variational E-step is the ordinary one under parameters whose log weights carry the
expected log weights and log-determinants (``variational``), so every input kind and backend
the :class:`~gaussmix.GaussianMixture` fit takes serves this one unchanged; the update after
each E-step is the posterior of the statistics and scikit-learn's evidence lower bound.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ._mathematics.em import Params
from ._estimator import MixtureEstimator
from ._fitting.init import initial_stats
from .mixture import FitProgress, GaussianMixture
from ._foundations.validation import (
    MAX_VARIANCE,
    as_array_of_shape,
    check_choice,
    check_positive_definite,
    check_random_state,
)
from ._mathematics.variational import (
    PRIOR_TYPES,
    Posterior,
    Variational,
    expected_params,
    mean_weights,
    resolve_priors,
)

__all__ = ["BayesianGaussianMixture"]


class BayesianGaussianMixture(MixtureEstimator):
    """Variational Bayesian estimation of a Gaussian mixture.

    A drop-in replacement for :class:`sklearn.mixture.BayesianGaussianMixture`: the same
    parameters, defaults, fitted attributes and lower bound, on gaussmix's fit (the fused,
    pruned E-step, memory O(chunk · K), sample weights, streams, Dask and tensors, the
    painless repairs). ``n_components`` is an upper bound: the weights of the components
    the data do not need fall towards zero; :meth:`active` keeps the others.

    Parameters
    ----------
    n_components : int, default=1
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
    tol : float, default=1e-3
        Convergence threshold on the change of the lower bound (a sum over the rows, as in
        scikit-learn).
    reg_covar : float, default=1e-6
    max_iter : int, default=100
    n_init : int, default=1
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, default='kmeans'
    weight_concentration_prior_type : {'dirichlet_process', 'dirichlet_distribution'}
    weight_concentration_prior : float or None
        None: ``1 / n_components``.
    mean_precision_prior : float or None
        None: 1.
    mean_prior : array-like of shape (n_features,) or None
        None: the data's weighted mean.
    degrees_of_freedom_prior : float or None
        None: ``n_features``; must exceed ``n_features - 1``.
    covariance_prior : float or array-like or None
        None: the data's covariance (ddof=1), its diagonal or their mean, by covariance type.
    random_state, warm_start, verbose, verbose_interval
        As scikit-learn's.
    chunk_size, callback, backend
        As :class:`~gaussmix.GaussianMixture`'s.

    Attributes
    ----------
    weights_, means_, covariances_, precisions_, precisions_cholesky_ : ndarray
        The posterior mean weights, the posterior means, ``W_k^-1 / nu_k`` and the expected
        precisions ``nu_k W_k`` (with their Cholesky factors).
    weight_concentration_ : ndarray of shape (K,), or a tuple of two (Dirichlet process)
    mean_precision_, degrees_of_freedom_ : ndarray of shape (K,) (a float for 'tied' dof)
    weight_concentration_prior_, mean_precision_prior_, mean_prior_,
    degrees_of_freedom_prior_, covariance_prior_
        The priors used.
    converged_, n_iter_, lower_bound_, lower_bounds_, n_regularized_, n_features_in_
    """

    _progress = FitProgress._make

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weight_concentration_prior_type="dirichlet_process",
        weight_concentration_prior=None,
        mean_precision_prior=None,
        mean_prior=None,
        degrees_of_freedom_prior=None,
        covariance_prior=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        chunk_size=None,
        callback=None,
        backend=None,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.mean_prior = mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.chunk_size = chunk_size
        self.callback = callback
        self.backend = backend

    # ----------------------------------------------------------------------------------------
    # Validation of the estimator's settings

    def _check_values(self):
        super()._check_values()
        check_choice(self.weight_concentration_prior_type, "weight_concentration_prior_type",
                     PRIOR_TYPES)
        for name in ("weight_concentration_prior", "mean_precision_prior"):
            value = getattr(self, name)
            if value is not None and not _positive_real(value):
                raise ValueError(f"{name} must be a positive number or None, got {value!r}.")
        dof = self.degrees_of_freedom_prior
        if dof is not None and not (_real(dof) and math.isfinite(dof)):
            raise ValueError(f"degrees_of_freedom_prior must be a number or None, got {dof!r}.")

    def _init_spec(self, n_features):
        """Validate the priors given as arrays against the data's width (loaded models too)."""
        self._user_priors(n_features)

    def _user_priors(self, n_features):
        """The priors given by the user, validated: ``(mean, covariance, dof)`` (None where
        the data decide)."""
        d = n_features
        dof = self.degrees_of_freedom_prior
        if dof is not None and not dof > d - 1.0:
            raise ValueError(f"The parameter 'degrees_of_freedom_prior' should be greater than "
                             f"{d - 1}, but got {dof:.3f}.")
        mean = None if self.mean_prior is None else as_array_of_shape(self.mean_prior, (d,),
                                                                      "mean_prior")
        covariance = None
        if self.covariance_prior is not None:
            shape = {"full": (d, d), "tied": (d, d), "diag": (d,), "spherical": ()}[
                self.covariance_type]
            covariance = as_array_of_shape(self.covariance_prior, shape, "covariance_prior")
            check_positive_definite(covariance if covariance.ndim else covariance[None],
                                    self.covariance_type if covariance.ndim else "diag",
                                    f"{self.covariance_type} covariance_prior")
        return mean, covariance, dof

    # ----------------------------------------------------------------------------------------
    # What the shared fit asks of this estimator

    def _priors(self, plan):
        """The priors in the plan's working coordinates (scikit-learn's defaults where
        None), refused with a sentence where they reach beyond what the posterior's
        covariances can hold."""
        mean, covariance, dof = self._user_priors(plan.n_features)
        priors = resolve_priors(
            covariance_type=self.covariance_type, n_features=plan.n_features,
            weight_concentration_type=self.weight_concentration_prior_type,
            weight_concentration=self.weight_concentration_prior,
            mean_precision=self.mean_precision_prior,
            mean=None if mean is None else mean - plan.shift,
            degrees_of_freedom=dof, covariance=covariance,
            n_components=self.n_components,
            data_moments=lambda: _data_moments(plan, self.covariance_type))
        check_prior_reach(priors, plan.dtype)
        return priors

    def _starts(self, plan, clusterings=None):
        update = Variational(self._priors(plan), plan.reg_covar, plan.jitter_floor)
        if self.warm_start and hasattr(self, "converged_"):
            self._check_warm(plan.n_features)
            posterior = self._posterior().shifted(-plan.shift)
            return ([lambda: (expected_params(posterior), posterior)], update,
                    float(self.lower_bound_))
        random_state = check_random_state(self.random_state)

        def start():
            rows = plan.initialisation_rows(self.n_components, random_state)
            stats = initial_stats(rows, self.n_components, self.covariance_type,
                                  self.init_params, random_state, variance=plan.variance)
            return update.start(stats)

        return [start] * self.n_init, update, -math.inf

    def _set_fitted(self, best, plan, update):
        posterior = best.posterior.shifted(plan.shift)
        priors = update.priors
        dtype = np.dtype(plan.dtype)
        self._set_params(Params(mean_weights(posterior), posterior.means,
                                posterior.precisions_cholesky, posterior.covariances,
                                posterior.covariance_type), dtype)
        concentration = posterior.weight_concentration
        self.weight_concentration_ = (tuple(c.astype(dtype) for c in concentration)
                                      if isinstance(concentration, tuple)
                                      else concentration.astype(dtype))
        self.mean_precision_ = posterior.mean_precision.astype(dtype)
        self.degrees_of_freedom_ = np.asarray(posterior.degrees_of_freedom, dtype=dtype)[()]
        self.weight_concentration_prior_ = priors.weight_concentration
        self.mean_precision_prior_ = priors.mean_precision
        self.mean_prior_ = (priors.mean + plan.shift).astype(dtype)
        self.degrees_of_freedom_prior_ = priors.degrees_of_freedom
        self.covariance_prior_ = (priors.covariance.astype(dtype) if priors.covariance.ndim
                                  else float(priors.covariance))

    def _posterior(self):
        """The fitted posterior (data coordinates, float64)."""
        concentration = self.weight_concentration_
        as64 = (lambda a: np.asarray(a, dtype=np.float64))
        return Posterior(
            tuple(as64(c) for c in concentration) if isinstance(concentration, tuple)
            else as64(concentration),
            as64(self.mean_precision_), as64(self.degrees_of_freedom_), as64(self.means_),
            as64(self.covariances_), as64(self.precisions_cholesky_),
            self._arrays_covariance_type)

    def _state_extra(self):
        concentration = self.weight_concentration_
        return {
            "weight_concentration": np.asarray(np.stack(concentration)
                                               if isinstance(concentration, tuple)
                                               else concentration),
            "mean_precision": np.asarray(self.mean_precision_),
            "degrees_of_freedom": np.asarray(self.degrees_of_freedom_),
            "mean_prior": np.asarray(self.mean_prior_),
            "covariance_prior": np.asarray(self.covariance_prior_),
        }

    def _restore_extra(self, extra, path):
        k, d = self.means_.shape
        covariance_type = self._arrays_covariance_type
        dp = self.weight_concentration_prior_type == "dirichlet_process"
        shapes = {
            "weight_concentration": (2, k) if dp else (k,),
            "mean_precision": (k,),
            "degrees_of_freedom": () if covariance_type == "tied" else (k,),
            "mean_prior": (d,),
            "covariance_prior": {"full": (d, d), "tied": (d, d), "diag": (d,),
                                 "spherical": ()}[covariance_type],
        }
        found = {name: np.shape(value) for name, value in extra.items()}
        if found != shapes:
            raise ValueError(f"Cannot load {path!r}: its posterior arrays have shapes {found}, "
                             f"expected {shapes}.")
        positive = (np.all(extra["weight_concentration"] > 0)
                    and np.all(extra["mean_precision"] > 0)
                    and np.all(extra["degrees_of_freedom"] > d - 1))
        if not positive:
            raise ValueError(f"Cannot load {path!r}: its posterior has concentrations, mean "
                             f"precisions or degrees of freedom (at most {d - 1}) that no fit "
                             "writes.")
        concentration = extra["weight_concentration"]
        self.weight_concentration_ = tuple(concentration) if dp else concentration
        self.mean_precision_ = extra["mean_precision"]
        self.degrees_of_freedom_ = extra["degrees_of_freedom"][()]
        self.mean_prior_ = extra["mean_prior"]
        covariance = extra["covariance_prior"]
        self.covariance_prior_ = covariance if covariance.ndim else float(covariance)

    def _scoring_params(self):
        """Rows are scored as scikit-learn scores them: under the variational E-step."""
        return expected_params(self._posterior())

    def _derived_class(self):
        return GaussianMixture

    # ----------------------------------------------------------------------------------------
    # Components the data use

    def active(self, min_weight=None):
        """The mixture of the components that carry weight, renormalised.

        Parameters
        ----------
        min_weight : float, optional
            Components whose posterior mean weight is below this are dropped; by default
            ``0.1 / n_components``, a tenth of a uniform share (a component the data do
            not need keeps the weight of about one row).

        Returns
        -------
        GaussianMixture
            The plug-in mixture (posterior mean weights, means and covariances) of the kept
            components, with this model's feature names.
        """
        params = self._fitted_params()
        threshold = 0.1 / params.n_components if min_weight is None else min_weight
        if not _real(threshold) or not 0 <= threshold < 1:
            raise ValueError(f"min_weight must lie in [0, 1), got {min_weight!r}.")
        kept = np.flatnonzero(params.weights >= threshold)
        if len(kept) == 0:
            kept = np.array([int(np.argmax(params.weights))])
        return self.subset(kept)

    def n_active(self, min_weight=None):
        """How many components :meth:`active` keeps."""
        return self.active(min_weight).n_components


def _real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _positive_real(value):
    return _real(value) and value > 0 and math.isfinite(value)


def check_prior_reach(priors, dtype):
    """Refuse priors whose squares the posterior's covariances cannot hold (one sentence).

    The posterior covariance adds ``mean_precision_prior * |mean_prior - data|^2`` (shrunk)
    and the covariance prior, so both must stay within the spread ``check_scale`` allows the
    data (1e135 in float64, 1e18 in float32); beyond it a far ``mean_prior`` (1e200) would
    overflow to infinity, every covariance be repaired to the jitter floor and every row
    score -inf.
    """
    limit = MAX_VARIANCE.get(np.dtype(dtype), MAX_VARIANCE[np.dtype(np.float64)])
    with np.errstate(over="ignore"):
        reach = float(priors.mean_precision * np.max(np.square(priors.mean), initial=0.0))
        covariance = float(np.max(np.abs(priors.covariance), initial=0.0))
    if not reach <= limit:
        far = float(np.max(np.abs(priors.mean)))
        raise ValueError(
            f"mean_prior lies {far:.3g} from the data's centre, too far for the posterior's "
            f"covariances to hold its square (beyond {np.sqrt(limit):.0e} with "
            f"mean_precision_prior {priors.mean_precision:.3g}); give a mean_prior nearer the "
            "data, or rescale the data and the prior alike.")
    if not covariance <= limit:
        raise ValueError(
            f"covariance_prior holds values up to {covariance:.3g}, beyond the {limit:.0e} "
            "that the posterior's covariances can hold; rescale the data and the prior "
            "alike.")


def _data_moments(plan, covariance_type):
    """The data's weighted mean (working coordinates) and covariance with ddof=1 (weights as
    frequencies), in one pass of the plan's E-step under a single component: (D, D) for
    'full' and 'tied', the diagonal otherwise."""
    d = plan.n_features
    moments = "full" if covariance_type in ("full", "tied") else "diag"
    identity = np.eye(d)[np.newaxis] if moments == "full" else np.ones((1, d))
    one = Params(np.ones(1), np.zeros((1, d)), identity, identity, moments)
    with plan.threads():
        stats = plan.expectation(plan.source, one)
    total = stats.weight_sum
    mean = stats.x_sum[0] / total
    if moments == "full":
        scatter = stats.xx_sum[0] - total * np.outer(mean, mean)
    else:
        scatter = stats.xx_sum[0] - total * mean**2
    return mean, scatter / (total - 1.0 if total > 1.0 else total)
