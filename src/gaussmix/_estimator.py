"""What both mixture estimators share: fitting through the input adapters, the plan and the
shared loop, and scoring through the same adapters. Each estimator supplies its starts and
update (``_starts``), what a fit leaves behind (``_set_fitted``) and the parameters rows are
scored under (``_scoring_params``).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from sklearn.base import DensityMixin

from ._foundations import covariance as cov
from ._data import backends
from ._distribution import FittedMixture
from ._fitting.fit import Reporter, fit_best, plan_fit
from ._fitting.inference import Inference
from ._fitting.init import INIT_METHODS
from ._data.inputs import input_for
from ._foundations.validation import (
    FeatureChecker,
    check_choice,
    check_finite,
    check_int,
    check_real,
    user_stacklevel,
)
from .exceptions import (
    ConvergenceWarning,
    RegularizationWarning,
    compatible,
    not_fitted,
)


class MixtureEstimator(DensityMixin, FittedMixture):
    """Base of :class:`~gaussmix.GaussianMixture` and
    :class:`~gaussmix.BayesianGaussianMixture`."""

    #: Makes what a ``callback`` receives from ``(init, iteration, max_iter, lower_bound,
    #: change, params)`` (the estimators set ``FitProgress._make``).
    _progress = tuple

    def _check_parameters(self):
        self._check_values()
        backends.resolve(self.backend)

    def _check_values(self):
        """Refuse settings of the wrong kind or range (what a loaded model is checked for too;
        whether the chosen backend is installed matters only to a fit). Estimators add their
        own settings' checks."""
        check_int(self.n_components, "n_components", 1)
        check_choice(self.covariance_type, "covariance_type", cov.COVARIANCE_TYPES)
        check_real(self.tol, "tol", 0.0)
        check_real(self.reg_covar, "reg_covar", 0.0, finite=True)
        check_int(self.max_iter, "max_iter", 0)
        check_int(self.n_init, "n_init", 1)
        check_choice(self.init_params, "init_params", INIT_METHODS)
        check_int(self.verbose, "verbose", 0)
        check_int(self.verbose_interval, "verbose_interval", 1)
        check_int(self.chunk_size, "chunk_size", 1, allow_none=True)
        if self.backend not in (None, "auto", *backends.BACKENDS):
            backends.resolve(self.backend)  # says which values are allowed
        if self.callback is not None and not callable(self.callback):
            raise ValueError(f"callback must be callable or None, got {self.callback!r}.")

    def _check_rows(self, X, arr):
        """Refuse rows that do not suit the fitted model (feature count and names; NaN
        where the estimator does not take missing values)."""
        FeatureChecker.check(self, X, arr)
        if not self._allows_missing and isinstance(arr, np.ndarray):
            check_finite(arr)

    def _refuse_missing(self, data):
        """One sentence for data with holes given to an estimator that does not take them."""
        if data.n_missing and not self._allows_missing:
            raise ValueError(f"{type(self).__name__} does not take missing values (NaN) yet; "
                             "fill them with GaussianMixture(...).fit(X).impute(X) or drop "
                             "those rows.")

    # ----------------------------------------------------------------------------------------
    # Fitting

    def fit(self, X, y=None, sample_weight=None):
        """Estimate the parameters with EM (``n_init`` starts, the best kept).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), numpy memmap, path, callable,
                dask array, torch tensor or array-API array
            The data; NaN marks a missing value where the estimator takes them. A memory
            map (``np.load(path, mmap_mode='r')``) or the path of a ``.npy`` file is read
            chunk by chunk, never whole; so is a function that returns
            an iterable of chunks (arrays of shape (n_i, n_features), or ``(array, weights)``
            pairs), called once per pass. Such streams (and Dask arrays and tensors on an
            accelerator) are initialised from a sample of their rows.
        y : ignored
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each row; an integer weight acts like repeating the row.
            Routed by scikit-learn's metadata routing after ``set_fit_request(sample_weight=
            True)``.

        Returns
        -------
        self : GaussianMixture
        """
        self._fit(X, sample_weight)
        return self

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit, then return the most likely component of each row (any input ``fit``
        takes).

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        self._fit(X, sample_weight)
        return self.predict(X)

    def _fit(self, X, sample_weight):
        self._check_parameters()
        adapter = input_for(X)
        data, names = adapter.prepare(X, sample_weight, self.n_components, self.backend,
                                      self.chunk_size)
        self._fit_prepared(data, names, device=adapter.device(X))

    def _fit_prepared(self, data, names=None, clusterings=None, device=None):
        """Fit on training data an input adapter prepared (shared with model selection).

        ``clusterings``: k-means ``(labels, centres)`` of the data computed once for several
        fits (see ``fit.kmeans_clusterings``), or None.
        """
        self._refuse_missing(data)
        plan = plan_fit(data, self.n_components, backend=self.backend,
                        chunk_size=self.chunk_size, reg_covar=float(self.reg_covar))
        self._remember_features(data.n_features, names)
        starts, update, previous_bound = self._starts(plan, clusterings)
        self._fit_plan(plan, starts, device, previous_bound, update)

    def _check_warm(self, n_features):
        """Refuse a warm start that cannot continue the previous fit."""
        previous = (*self.means_.shape, self._fitted_covariance_type)
        wanted = (self.n_components, n_features, self.covariance_type)
        if previous != wanted:
            raise ValueError(
                "warm_start=True continues the previous fit ({} components, {} features, "
                "'{}' covariances), but this fit has {} components, {} features and '{}' "
                "covariances; set warm_start=False to start afresh.".format(*previous, *wanted))

    def _remember_features(self, n_features, names):
        self.n_features_in_ = n_features
        if names is not None:
            self.feature_names_in_ = names
        else:
            self.__dict__.pop("feature_names_in_", None)

    def _fit_plan(self, plan, starts, device=None, previous_bound=-math.inf, update=None):
        """Run the shared loop from ``starts`` and set the fitted attributes."""
        reporter = Reporter(self.verbose, self.verbose_interval, self.callback, self.max_iter,
                            self._progress)
        best = fit_best(plan, starts, tol=self.tol, max_iter=self.max_iter, reporter=reporter,
                        lower_bound=previous_bound, update=update)
        self._set_fitted(best, plan, update)
        self.converged_ = best.converged
        self.n_iter_ = best.n_iter
        self.lower_bound_ = best.lower_bound
        self.lower_bounds_ = list(best.lower_bounds)
        self.n_reseeded_ = best.n_reseeded
        self.n_regularized_ = best.n_regularized
        if device is None:
            self.__dict__.pop("_output_device", None)
        else:
            self._output_device = device
        self._warn_after_fit(best)

    def _warn_after_fit(self, best):
        """The fit's two warnings, once each: repaired covariances, no convergence."""
        if best.n_regularized:
            warnings.warn(
                f"{best.n_regularized} covariance(s) were not positive definite during the fit "
                f"and got up to {best.max_jitter:.3g} extra on the diagonal; increase reg_covar "
                f"(now {self.reg_covar:g}) or rescale the data to avoid this.",
                compatible(RegularizationWarning),
                stacklevel=user_stacklevel(),
            )
        if not self.converged_ and self.max_iter > 0:
            warnings.warn(  # scikit-learn's first sentence: users match on it
                "Best performing initialization did not converge. Try different init "
                "parameters, or increase max_iter, tol, or check for degenerate data. (Its "
                f"lower bound still changed by more than tol={self.tol:g} at "
                f"max_iter={self.max_iter}.)",
                compatible(ConvergenceWarning),
                stacklevel=user_stacklevel(),
            )

    # ----------------------------------------------------------------------------------------
    # Inference, through the input adapters

    def _inference(self):
        if not self.__sklearn_is_fitted__():
            raise not_fitted(self)
        return Inference(self._scoring_params(), self.means_.dtype, self.backend,
                         self.chunk_size, self._check_rows)

    def _scoring_params(self):
        """The parameters rows are scored under (data coordinates)."""
        return self._params()

    def score_samples(self, X):
        """Log-density of each row under the mixture.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or any input :meth:`fit` takes

        Returns
        -------
        log_prob : ndarray of shape (n_samples,)
            A tensor for a tensor, a dask array for a dask array.
        """
        return input_for(X).infer(X, self._inference(), "log_prob")

    def predict(self, X):
        """Most likely component of each row.

        Returns
        -------
        labels : ndarray of shape (n_samples,), int
        """
        return input_for(X).infer(X, self._inference(), "labels")

    def predict_proba(self, X):
        """Posterior probability of each component for each row.

        Returns
        -------
        resp : ndarray of shape (n_samples, n_components)
        """
        return input_for(X).infer(X, self._inference(), "resp")

    def adapt(self, X, relevance_factor=16.0, parameters="m", sample_weight=None, n_iter=1):
        """A new mixture adapted to ``X`` by maximum a posteriori estimation, with this one as
        the prior (a universal background model adapted to one speaker or clip: Reynolds,
        Quatieri and Dunn, 2000).

        One E-step of ``X`` under this mixture gives each component's responsibility mass
        ``n_k`` and moments; each adapted parameter moves from this mixture's towards the
        data's by the data-dependent coefficient ``n_k / (n_k + relevance_factor)``, so that
        components the data reach often move most and the others stay (the equations are in
        ``gaussmix._mathematics.adaptation``). Memory is that of an E-step:
        O(chunk_size * n_components).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Any input :meth:`fit` takes (arrays with NaN as missing values, DataFrames,
            memory maps, ``.npy`` paths, chunk functions, Dask arrays, tensors).
        relevance_factor : float, default=16.0
            ``r >= 0``, in units of rows (of sample weight): how much data a component needs
            before it moves halfway. 0 gives one M-step from this mixture's
            responsibilities; ``inf`` leaves it as it is.
        parameters : str, default='m'
            Which parameters to adapt: any of ``'w'`` (weights), ``'m'`` (means) and
            ``'v'`` (covariances), e.g. ``'m'`` (the usual choice for speakers) or
            ``'wmv'``.
        sample_weight : array-like of shape (n_samples,), optional
        n_iter : int, default=1
            E-steps: more than one iterates the adaptation (EM for the MAP estimate with
            this mixture as the prior), each E-step under the latest adapted mixture.

        Returns
        -------
        GaussianMixture
            A new fitted mixture with this one's settings (without a fit's history:
            ``converged_``, ``n_iter_``, ...); this one is unchanged. A
            ``BayesianGaussianMixture`` adapts its plug-in mixture (posterior mean weights,
            means and covariances of every component; ``active().adapt(X)`` keeps only
            those that carry weight) and returns a ``GaussianMixture``.

        Examples
        --------
        >>> import numpy as np
        >>> from gaussmix import GaussianMixture
        >>> rng = np.random.default_rng(0)
        >>> ubm = GaussianMixture(2, random_state=0).fit(
        ...     np.concatenate([rng.normal(-3, 1, (500, 1)), rng.normal(3, 1, (500, 1))]))
        >>> speaker = ubm.adapt(rng.normal(3.5, 1, (200, 1)), relevance_factor=16)
        >>> np.round(np.sort(speaker.means_.ravel()) - np.sort(ubm.means_.ravel()), 1)
        array([0. , 0.6])
        """
        from ._fitting.one_pass import one_pass
        from ._mathematics.adaptation import PARAMETERS, map_adapt

        if not self.__sklearn_is_fitted__():
            raise not_fitted(self)
        check_real(relevance_factor, "relevance_factor", 0.0)
        if (not isinstance(parameters, str) or not parameters
                or set(parameters) - set(PARAMETERS) or len(set(parameters)) < len(parameters)):
            raise ValueError(f"parameters must name the parameters to adapt with the letters "
                             f"'w' (weights), 'm' (means) and 'v' (covariances), e.g. 'm' or "
                             f"'wmv'; got {parameters!r}.")
        check_int(n_iter, "n_iter", 1)
        prior = self._fitted_params()
        rows = one_pass(X, sample_weight, self)
        adapted = prior
        for _ in range(n_iter):
            stats = rows.exact_statistics(adapted, float(relevance_factor))
            adapted = map_adapt(prior, stats, float(relevance_factor), parameters,
                                float(self.reg_covar), rows.jitter_floor(stats))
        return self._derived(adapted, getattr(self, "feature_names_in_", None))

    def _log_likelihood(self, X, sample_weight):
        """``(sum_n w_n log p(x_n), sum_n w_n)``."""
        adapter = input_for(X)
        return adapter.totals(adapter.infer(X, self._inference(), "log_prob"), sample_weight)

    def score(self, X, y=None, sample_weight=None):
        """Weighted mean log-likelihood of the rows of ``X``.

        Returns
        -------
        score : float
        """
        total, weight = self._log_likelihood(X, sample_weight)
        return total / weight

