"""The :class:`GaussianMixture` estimator: scikit-learn's API over the shared fit.

This module is the API shell: parameters, validation of the estimator's own settings, its
starts and stepwise EM; what both estimators share is ``_estimator``. A fit is an input adapter
chosen at the door (``_data.inputs``), a plan (``_fitting.fit.plan_fit``) and the shared loop
(``fit.fit_best`` over ``loop.run_em``); scoring goes through the same adapters (``inference``
for rows in memory).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ._foundations import covariance as cov
from ._mathematics.em import m_step
from ._estimator import MixtureEstimator
from ._fitting.fit import (
    InitSpec,
    initial_starts,
    starts_from_clusterings,
    warm_start,
)
from ._fitting.one_pass import one_pass
from ._foundations.stats import Stats
from ._foundations.validation import (
    as_array_of_shape,
    check_positive_definite,
    check_random_state,
    check_real,
    checked_weights,
)

__all__ = ["FitProgress", "GaussianMixture"]


class FitProgress(NamedTuple):
    """What a ``callback`` receives after each EM iteration: the initialisation, the
    iteration, ``max_iter``, the lower bound, its change, and the parameters so far (see
    :meth:`mixture`)."""

    init: int
    iteration: int
    max_iter: int
    lower_bound: float
    change: float
    params: object = None

    def mixture(self):
        """The mixture after this iteration, as a fitted
        :class:`~gaussmix.GaussianMixture` (a preview: e.g. to draw while EM runs)."""
        p = self.params
        return GaussianMixture.from_params(p.weights, p.means, p.covariances,
                                           p.covariance_type)


class GaussianMixture(MixtureEstimator):
    """Gaussian mixture model fitted by a robust, memory-bounded EM.

    A drop-in replacement for :class:`sklearn.mixture.GaussianMixture` (same parameters,
    defaults, attributes and methods) that never allocates an (n_samples, n_components) array
    while fitting, never produces NaN on degenerate data, and accepts sample weights.

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
        'full': each component has its own covariance matrix; 'tied': all components share
        one; 'diag': each has a diagonal covariance; 'spherical': each has one variance.
    tol : float, default=1e-3
        EM stops when the per-sample mean log-likelihood improves by less than this.
    reg_covar : float, default=1e-6
        Non-negative value added to the diagonal of every covariance.
    max_iter : int, default=100
        Maximum number of EM iterations per initialisation.
    n_init : int, default=1
        Number of initialisations; the best (highest lower bound) is kept.
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, default='kmeans'
        How initial responsibilities are chosen: k-means labels, k-means++ seeds, random
        soft assignments, or random rows.
    weights_init : array-like of shape (n_components,), default=None
        Initial weights (override those from ``init_params``).
    means_init : array-like of shape (n_components, n_features), default=None
        Initial means.
    precisions_init : array-like, default=None
        Initial precisions (inverse covariances); shape by ``covariance_type``:
        (n_components, n_features, n_features) 'full', (n_features, n_features) 'tied',
        (n_components, n_features) 'diag', (n_components,) 'spherical'.
    random_state : int, RandomState instance or None, default=None
        Seed of the initialisation and of :meth:`sample`.
    warm_start : bool, default=False
        If True, each ``fit`` starts from the previous solution (``n_init`` is ignored).
    verbose : int, default=0
        1 prints each initialisation, 2 also the lower bound every ``verbose_interval``
        iterations.
    verbose_interval : int, default=10
        Iterations between verbose messages.
    chunk_size : int or None, default=None
        Rows per E-step chunk. None chooses it so that a chunk's (rows x n_components) work
        arrays stay within a few tens of MB. Memory of fit, score and predict is
        O(chunk_size * n_components + n_components * n_features**2), independent of
        n_samples.
    callback : callable or None, default=None
        Called after every EM iteration with a :class:`FitProgress` (initialisation index,
        iteration, ``max_iter``, lower bound, change, and the parameters so far, as a mixture
        by ``progress.mixture()``): progress bars, logging, early looks.
    backend : {None, 'numpy', 'numba', 'torch'}, default=None
        E-step implementation. None uses the fused, multi-threaded numba kernel when numba is
        installed and the problem is large enough to gain from it (it skips components that
        cannot matter to a tile of rows, exactly), numpy matrix products otherwise; tensors
        on an accelerator use torch on their device (CPU tensors are zero-copy arrays for
        the kernels). 'torch' runs the torch E-step on a CPU tensor too. Results agree to
        rounding.
    learning_decay, learning_offset : float, default=0.7 and 10.0
        Step sizes of :meth:`partial_fit`: step t (from 1) blends a chunk's statistics in with
        weight ``(learning_offset + t) ** -learning_decay``; a decay in (0.5, 1] makes the
        running statistics converge (stepwise EM, Cappe and Moulines 2009).

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    means_ : ndarray of shape (n_components, n_features)
    covariances_ : ndarray
        Shape by ``covariance_type`` as for ``precisions_init``.
    precisions_ : ndarray
        Inverses of the covariances, same shape.
    precisions_cholesky_ : ndarray
        Upper Cholesky factors ``U`` of the precisions (``precision = U @ U.T``).
    converged_ : bool
    n_iter_ : int
        EM iterations of the best initialisation.
    lower_bound_ : float
        Weighted mean log-likelihood of the training data at the last E-step.
    lower_bounds_ : list of float
        The lower bound after every iteration of the best initialisation.
    n_reseeded_ : int
        Dead components (no responsibility left) moved to the worst-explained rows during the
        best initialisation's EM.
    n_regularized_ : int
        Covariances that were not positive definite and got extra diagonal.
    n_steps_ : int
        Chunks seen by :meth:`partial_fit` since the last :meth:`fit`.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features,)
        Column names, when ``X`` was a DataFrame with string column names.

    Examples
    --------
    >>> import numpy as np
    >>> from gaussmix import GaussianMixture
    >>> X = np.array([[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]])
    >>> gm = GaussianMixture(n_components=2, random_state=0).fit(X)
    >>> np.round(np.sort(gm.means_[:, 0]), 3)
    array([ 1., 10.])
    >>> gm.predict([[0, 0], [12, 3]]).tolist() in ([0, 1], [1, 0])
    True
    """

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
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        chunk_size=None,
        callback=None,
        backend=None,
        learning_decay=0.7,
        learning_offset=10.0,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.chunk_size = chunk_size
        self.callback = callback
        self.backend = backend
        self.learning_decay = learning_decay
        self.learning_offset = learning_offset


    # ----------------------------------------------------------------------------------------
    # Validation of the estimator's settings

    _allows_missing = True
    _progress = FitProgress._make

    def _check_values(self):
        super()._check_values()
        check_real(self.learning_offset, "learning_offset", 0.0)
        check_real(self.learning_decay, "learning_decay", 0.0)
        if not 0.5 < self.learning_decay <= 1.0:
            raise ValueError(f"learning_decay must lie in (0.5, 1], got {self.learning_decay!r}; "
                             "0.7 is a good default.")

    def _init_spec(self, n_features):
        """:class:`~gaussmix._fitting.fit.InitSpec` with the validated ``weights_init``,
        ``means_init`` and precision factors (float64)."""
        k = self.n_components
        weights = means = prec_chol = None
        if self.weights_init is not None:
            weights = as_array_of_shape(self.weights_init, (k,), "weights_init")
            if (weights > 1).any():
                raise ValueError(
                    "weights_init must lie in [0, 1], got values up to "
                    f"{weights.max():.5g}; pass proportions."
                )
            weights = checked_weights(weights, "weights_init")
        if self.means_init is not None:
            means = as_array_of_shape(self.means_init, (k, n_features), "means_init")
        if self.precisions_init is not None:
            shape = cov.covariance_shape(k, n_features, self.covariance_type)
            precisions = as_array_of_shape(self.precisions_init, shape, "precisions_init")
            check_positive_definite(precisions, self.covariance_type, "precisions_init")
            prec_chol = cov.precision_cholesky_from_precisions(precisions, self.covariance_type)
        return InitSpec(k, self.covariance_type, self.init_params, weights, means, prec_chol)

    def _starts(self, plan, clusterings=None):
        """The starts of a fit, its update (None: EM's M-step) and the bound a warm start
        continues from."""
        spec = self._init_spec(plan.n_features)
        if self.warm_start and hasattr(self, "converged_"):
            self._check_warm(plan.n_features)
            return (warm_start(plan, self._params()), None,
                    float(getattr(self, "lower_bound_", -math.inf)))
        if clusterings is not None:
            return starts_from_clusterings(plan, clusterings, spec), None, -math.inf
        return (initial_starts(plan, spec, check_random_state(self.random_state), self.n_init),
                None, -math.inf)

    def _set_fitted(self, best, plan, update=None):
        self._set_params(best.params, plan.dtype)
        self.n_missing_ = int(plan.data.n_missing)
        for stale in ("n_steps_", "_running", "_stream_floor"):  # a fit restarts any stream
            self.__dict__.pop(stale, None)

    # ----------------------------------------------------------------------------------------
    # Streaming: stepwise EM

    def partial_fit(self, X, y=None, sample_weight=None):
        """Update the model with one chunk of a stream (stepwise EM).

        The first call fits the chunk as :meth:`fit` does. Each later call computes the
        chunk's sufficient statistics under the current parameters, blends them into running
        averages with the step size ``(learning_offset + t) ** -learning_decay`` (t counts the
        steps), and re-estimates the parameters from the averages. Memory is one chunk; a
        chunk may be any input :meth:`fit` takes.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : GaussianMixture
        """
        if not self.__sklearn_is_fitted__():
            self._fit(X, sample_weight)
        self._check_parameters()
        chunk, floor, dtype = self._chunk_statistics(X, sample_weight)
        if not hasattr(self, "n_steps_"):
            # Start the running statistics from this chunk under the current parameters.
            self._running = chunk.scaled(1.0 / chunk.weight_sum)
            self._stream_floor = floor
            self.n_steps_ = 1
            return self
        step = (self.learning_offset + self.n_steps_) ** -self.learning_decay
        running = self._running.recentered(chunk.center).scaled(1.0 - step)
        running = running + chunk.scaled(step / chunk.weight_sum)
        params, report = m_step(running, float(self.reg_covar), self._stream_floor)
        self._set_params(params, dtype)
        self._running = running
        self.n_steps_ += 1
        self.n_iter_ = self.n_steps_
        self.lower_bound_ = (1.0 - step) * self.lower_bound_ + step * (
            chunk.log_likelihood / chunk.weight_sum)
        self.lower_bounds_.append(self.lower_bound_)
        self.n_reseeded_ += report.n_reseeded
        self.n_regularized_ += report.n_regularized
        return self

    def _state_extra(self):
        """A stream's running statistics and jitter floor, so that a loaded model's
        :meth:`partial_fit` continues as this one's would (none before the second chunk)."""
        if not hasattr(self, "n_steps_"):
            return {}
        running = self._running
        finite = np.isfinite(running.worst_log_prob)  # re-seeding candidates: finite ones
        return {"stream_center": running.center, "stream_resp_sum": running.resp_sum,
                "stream_x_sum": running.x_sum, "stream_xx_sum": running.xx_sum,
                "stream_worst_log_prob": running.worst_log_prob[finite],
                "stream_worst_points": running.worst_points[finite],
                "stream_totals": np.array([running.log_likelihood, running.weight_sum,
                                           running.n_rows, self._stream_floor])}

    def _restore_extra(self, extra, path):
        """Rebuild a stream's running statistics from :meth:`_state_extra`'s arrays (checked
        for the shapes the model's have), or refuse arrays a mixture does not have."""
        if not extra and not hasattr(self, "n_steps_"):
            return
        k, d = self.means_.shape
        covariance_type = self._arrays_covariance_type
        m = len(extra.get("stream_worst_log_prob", ()))
        shapes = {"stream_center": (k, d), "stream_resp_sum": (k,), "stream_x_sum": (k, d),
                  "stream_xx_sum": cov.covariance_shape(k, d, covariance_type),
                  "stream_worst_log_prob": (m,), "stream_worst_points": (m, d),
                  "stream_totals": (4,)}
        found = {name: np.shape(value) for name, value in extra.items()}
        if found != shapes or not hasattr(self, "n_steps_"):
            raise ValueError(f"Cannot load {path!r}: it holds arrays {found} where a stream's "
                             f"running statistics would be {shapes} (with n_steps_).")
        log_likelihood, weight_sum, n_rows, floor = extra["stream_totals"]
        if not (weight_sum > 0 and n_rows >= 1 and floor > 0
                and np.all(extra["stream_resp_sum"] >= 0)):
            raise ValueError(f"Cannot load {path!r}: its stream's running statistics hold "
                             "weights or counts that no stream writes.")
        self._running = Stats(covariance_type=covariance_type,
                              center=extra["stream_center"],
                              resp_sum=extra["stream_resp_sum"], x_sum=extra["stream_x_sum"],
                              xx_sum=extra["stream_xx_sum"], log_likelihood=log_likelihood,
                              weight_sum=weight_sum, n_rows=int(n_rows),
                              worst_log_prob=extra["stream_worst_log_prob"],
                              worst_points=extra["stream_worst_points"])
        self._stream_floor = float(floor)

    def _chunk_statistics(self, X, sample_weight):
        """Statistics of a chunk under the current parameters (data coordinates), the
        chunk's jitter floor and dtype (``_fitting.one_pass``)."""
        rows = one_pass(X, sample_weight, self)
        stats = rows.statistics(self._params())
        return stats, rows.jitter_floor(stats), rows.dtype


    def bic(self, X, sample_weight=None):
        """Bayesian information criterion on ``X`` (lower is better).

        Returns
        -------
        bic : float
        """
        total, weight = self._log_likelihood(X, sample_weight)
        return -2.0 * total + self._n_parameters() * math.log(weight)

    def aic(self, X, sample_weight=None):
        """Akaike information criterion on ``X`` (lower is better).

        Returns
        -------
        aic : float
        """
        total, _ = self._log_likelihood(X, sample_weight)
        return -2.0 * total + 2 * self._n_parameters()
