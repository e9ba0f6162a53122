"""The :class:`GaussianMixture` estimator: a thin shell over the pure functions of ``_em``."""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from typing import NamedTuple

import numpy as np

from . import _algebra as algebra
from . import backends
from .backends.detect import is_dask_array, is_torch_tensor
from . import _covariance as cov
from ._base import EstimatorBase
from ._data import (
    ArrayChunks,
    CallableChunks,
    FitData,
    StreamData,
    default_chunk_size,
    load_npy,
    sample_size,
    stream_moments,
)
from ._em import (
    Params,
    e_step,
    expectation as chunked_expectation,
    m_step,
    log_prob_and_resp,
    params_from_precision_cholesky,
    plan_e_step,
    run_em,
    softmax_inplace,
    weighted_log_prob,
)
from ._init import INIT_METHODS, initial_params
from ._stats import sum_stats
from ._validation import (
    FeatureChecker,
    as_array_of_shape,
    check_dims,
    check_positive_definite,
    check_values,
    checked_weights,
    as_array_view,
    as_float_array,
    check_choice,
    check_finite,
    check_int,
    check_random_state,
    check_real,
    check_sample_weight,
)
from .exceptions import ConvergenceWarning, RegularizationWarning, compatible, not_fitted

# Rows per block when sampling (bounds the (rows, D, D) gather of covariance factors).
SAMPLE_BLOCK_ROWS = 65536
# score_samples and predict use the pruned kernel from this many (row, component) pairs on,
# in chunks of this many rows.
FUSED_INFERENCE_PAIRS = 2_000_000
FUSED_CHUNK_ROWS = 262_144


class FitProgress(NamedTuple):
    """What a ``callback`` receives after each EM iteration."""

    init: int
    iteration: int
    max_iter: int
    lower_bound: float
    change: float


class GaussianMixture(EstimatorBase):
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
        iteration, ``max_iter``, lower bound, change): progress bars, logging, early looks.
    backend : {None, 'numpy', 'numba'}, default=None
        E-step implementation. None uses the fused, multi-threaded numba kernel when numba is
        installed and the problem is large enough to gain from it (it skips components that
        cannot matter to a tile of rows, exactly), numpy matrix products otherwise. Results
        agree to rounding.
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
    feature_names_in_ : ndarray of shape (n_features_in_,)
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
    # Validation

    def _check_parameters(self):
        check_int(self.n_components, "n_components", 1)
        check_choice(self.covariance_type, "covariance_type", cov.COVARIANCE_TYPES)
        check_real(self.tol, "tol", 0.0)
        check_real(self.reg_covar, "reg_covar", 0.0)
        check_int(self.max_iter, "max_iter", 0)
        check_int(self.n_init, "n_init", 1)
        check_choice(self.init_params, "init_params", INIT_METHODS)
        check_int(self.verbose, "verbose", 0)
        check_int(self.verbose_interval, "verbose_interval", 1)
        check_int(self.chunk_size, "chunk_size", 1, allow_none=True)
        backends.resolve(self.backend)
        check_real(self.learning_offset, "learning_offset", 0.0)
        if not 0.5 < self.learning_decay <= 1.0:
            raise ValueError(f"learning_decay must lie in (0.5, 1], got {self.learning_decay!r}; "
                             "0.7 is a good default.")
        if self.callback is not None and not callable(self.callback):
            raise ValueError(f"callback must be callable or None, got {self.callback!r}.")

    def _validate_fit_data(self, X, sample_weight):
        arr = as_float_array(X)
        check_finite(arr)
        weights = check_sample_weight(sample_weight, arr.shape[0])
        self._accept_data(X, arr, weights, sample_weight is not None)
        return arr, weights

    def _accept_data(self, X, arr, weights, weighted):
        """Check that the validated data suit this model and remember its features."""
        n_positive = int((weights > 0).sum())
        if self.n_components > n_positive:
            rows = "samples with a positive weight" if weighted else "samples"
            raise ValueError(
                f"n_components={self.n_components} is larger than the number of {rows} "
                f"(n_samples = {n_positive}); reduce n_components or provide more data."
            )
        FeatureChecker.remember(self, X, arr)

    def _validate_data(self, X):
        if not self.__sklearn_is_fitted__():
            raise not_fitted(self)
        arr = as_float_array(X)
        FeatureChecker.check(self, X, arr)
        check_finite(arr)
        return arr

    def _user_init(self, n_features):
        """Validated ``weights_init``, ``means_init`` and precision factors (float64)."""
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
        return weights, means, prec_chol

    # ----------------------------------------------------------------------------------------
    # Fitting

    def fit(self, X, y=None, sample_weight=None):
        """Estimate the parameters with EM (``n_init`` starts, the best kept).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), numpy memmap, path or callable
            The data. A memory map (``np.load(path, mmap_mode='r')``) or the path of a
            ``.npy`` file is read chunk by chunk, never whole; so is a function that returns
            an iterable of chunks (arrays of shape (n_i, n_features), or ``(array, weights)``
            pairs), called once per pass. Such streams are initialised from a sample of their
            rows.
        y : ignored
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each row; an integer weight acts like repeating the row.

        Returns
        -------
        self : GaussianMixture
        """
        self._fit(X, sample_weight)
        return self

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit, then return the most likely component of each row.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        self._fit(X, sample_weight)
        if callable(X) and not hasattr(X, "shape"):
            return np.concatenate([self.predict(x) for x, _ in CallableChunks(X).raw_chunks()])
        return self.predict(X)

    def _fit(self, X, sample_weight):
        self._check_parameters()
        if is_torch_tensor(X):
            from .backends import torch_backend

            torch_backend.fit(self, X, sample_weight)
            return
        if is_dask_array(X):
            from .backends import dask_backend

            data = dask_backend.prepare(X, sample_weight, self.n_components, self.backend)
            self.n_features_in_ = data.n_features
            self.__dict__.pop("feature_names_in_", None)
            with self._threads(data):
                self._fit_data(data, self._starts(data))
            return
        data = self._prepare_stream(X, sample_weight)
        if data is None:
            arr, weights = self._validate_fit_data(X, sample_weight)
            data = FitData.prepare(arr, weights, self._chunk_size(arr.shape[1]))
        with self._threads(data):
            self._fit_data(data, self._starts(data))

    def _prepare_stream(self, X, sample_weight):
        """:class:`StreamData` for data read chunk by chunk (a memory map, a ``.npy`` path, a
        function yielding chunks), or None for in-memory arrays."""
        if isinstance(X, (str, os.PathLike)):
            X = load_npy(X)
        if isinstance(X, np.memmap):
            arr = as_array_view(X)
            check_finite(arr)
            weights = (None if sample_weight is None
                       else check_sample_weight(sample_weight, arr.shape[0]))
            source = ArrayChunks(arr, weights, np.zeros(arr.shape[1]),
                                 self._chunk_size(arr.shape[1]))
            dtype = arr.dtype if arr.dtype in (np.float32, np.float64) else np.dtype(np.float64)
        elif callable(X):
            if sample_weight is not None:
                raise ValueError("With a function that yields chunks, yield (rows, weights) "
                                 "pairs instead of passing sample_weight.")
            source = CallableChunks(X)
            dtype = np.dtype(np.float64)
        else:
            return None
        n_rows, n_positive, total, mean, variance = stream_moments(source)
        n_features = source.n_features
        if self.n_components > n_positive:
            raise ValueError(
                f"n_components={self.n_components} is larger than the number of samples with "
                f"a positive weight (n_samples = {n_positive}); reduce n_components or provide "
                "more data.")
        self.n_features_in_ = n_features
        if hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        shifted = (ArrayChunks(source.X, source.sample_weight, mean, source.chunk_size)
                   if isinstance(source, ArrayChunks) else source.with_shift(mean))
        return StreamData(n_rows=n_rows, n_positive=n_positive, n_features=n_features,
                          dtype=dtype, total_weight=total, shift=mean, variance=variance,
                          source=shifted)

    def _threads(self, data):
        """BLAS on one thread while numba's kernels use the cores."""
        if self._backend_for(data) == "numba":
            return backends.kernel_threads()
        return contextlib.nullcontext()

    def _backend_for(self, data):
        return backends.resolve(self.backend, data.n_rows * self.n_components)

    # ----------------------------------------------------------------------------------------
    # Streaming: stepwise EM

    def partial_fit(self, X, y=None, sample_weight=None):
        """Update the model with one chunk of a stream (stepwise EM).

        The first call fits the chunk as :meth:`fit` does. Each later call computes the
        chunk's sufficient statistics under the current parameters, blends them into running
        averages with the step size ``(learning_offset + t) ** -learning_decay`` (t counts the
        steps), and re-estimates the parameters from the averages. Memory is one chunk.

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
        if not hasattr(self, "n_steps_"):
            # Start the running statistics from this chunk under the current parameters.
            arr = self._validate_data(X)
            weights = check_sample_weight(sample_weight, arr.shape[0])
            self._running = self._chunk_stats(arr, weights).scaled(1.0 / weights.sum())
            self._stream_floor = FitData.prepare(arr, weights, len(arr)).jitter_floor(
                self.reg_covar)
            self.n_steps_ = 1
            return self
        self._check_parameters()
        arr = self._validate_data(X)
        weights = check_sample_weight(sample_weight, arr.shape[0])
        chunk = self._chunk_stats(arr, weights)
        step = (self.learning_offset + self.n_steps_) ** -self.learning_decay
        running = self._running.recentered(chunk.center).scaled(1.0 - step)
        running = running + chunk.scaled(step / chunk.weight_sum)
        params, report = m_step(running, float(self.reg_covar), self._stream_floor)
        self._set_params(params, arr.dtype)
        self._running = running
        self.n_steps_ += 1
        self.n_iter_ = self.n_steps_
        self.lower_bound_ = (1.0 - step) * self.lower_bound_ + step * (
            chunk.log_likelihood / chunk.weight_sum)
        self.lower_bounds_.append(self.lower_bound_)
        self.n_reseeded_ += report.n_reseeded
        self.n_regularized_ += report.n_regularized
        return self

    def _chunk_stats(self, arr, weights):
        """Statistics of validated rows under the current parameters, about the means."""
        params = self._params()
        n_pairs = arr.shape[0] * self.n_components
        x = np.asarray(arr, dtype=np.float64)
        if backends.resolve(self.backend, n_pairs) == "numba":
            from .backends.numba_backend import streaming_fused_expectation

            with backends.kernel_threads():
                return streaming_fused_expectation([(x, weights)], params)
        plan = plan_e_step(params, exact=True)
        chunk_size = self._chunk_size(arr.shape[1])
        return sum_stats(e_step(x[s:s + chunk_size], weights[s:s + chunk_size], params, plan)
                         for s in range(0, len(x), chunk_size))

    def _chunk_size(self, n_features):
        return self.chunk_size or default_chunk_size(self.n_components, n_features)

    def _starts(self, data):
        """One zero-argument function per initialisation, each returning starting
        :class:`Params` in working coordinates."""
        if self.warm_start and hasattr(self, "converged_"):
            return [lambda: self._params().shifted(-data.shift)]
        user = self._user_init(data.n_features)
        source = data.fit_source(self._backend_for(data), self._chunk_size(data.n_features))
        random_state = check_random_state(self.random_state)
        sampled = hasattr(data, "sample")

        def start():
            # Data not held in memory is initialised from a fresh sample of its rows.
            rows = data.sample(sample_size(self.n_components), random_state) if sampled else source
            return self._initial_params(rows, random_state, data, *user)

        return [start] * self.n_init

    def _fit_data(self, data, starts):
        """EM from each start on prepared data; keep the best; set the fitted attributes."""
        backend = self._backend_for(data)
        source = data.fit_source(backend, self._chunk_size(data.n_features))
        if hasattr(data, "expectation"):  # dask: per-block E-steps on the workers
            expectation = data.expectation
        elif backend == "numba":
            from .backends import numba_backend

            expectation = (numba_backend.streaming_fused_expectation
                           if isinstance(data, StreamData) else numba_backend.fused_expectation)
        else:
            expectation = chunked_expectation
        best = None
        for init, make_start in enumerate(starts):
            self._verbose_init_begin(init)
            result = run_em(
                source,
                make_start(),
                reg_covar=float(self.reg_covar),
                jitter_floor=data.jitter_floor(self.reg_covar),
                tol=self.tol,
                max_iter=self.max_iter,
                expectation=expectation,
                on_iteration=self._iteration_reporter(init),
            )
            self._verbose_init_end(result)
            if best is None or result.lower_bound > best.lower_bound:
                best = result

        self._set_fit_result(best, best.params.shifted(data.shift), data.dtype)

    def _set_fit_result(self, best, params, dtype, torch_device=None):
        """The fitted attributes from the best EM run (``params`` in data coordinates)."""
        self._set_params(params, dtype)
        for stale in ("n_steps_", "_running", "_stream_floor"):  # a fit restarts any stream
            self.__dict__.pop(stale, None)
        self.converged_ = best.converged
        self.n_iter_ = best.n_iter
        self.lower_bound_ = best.lower_bound
        self.lower_bounds_ = list(best.lower_bounds)
        self.n_reseeded_ = best.n_reseeded
        self.n_regularized_ = best.n_regularized
        if torch_device is None:
            self.__dict__.pop("_torch_device", None)
        else:
            self._torch_device = torch_device
        self._warn_after_fit(best)

    def _warn_after_fit(self, best):
        """The fit's two warnings, once each: repaired covariances, no convergence."""
        if best.n_regularized:
            warnings.warn(
                f"{best.n_regularized} covariance(s) were not positive definite during the fit "
                f"and got up to {best.max_jitter:.3g} extra on the diagonal; increase reg_covar "
                f"(now {self.reg_covar:g}) or rescale the data to avoid this.",
                compatible(RegularizationWarning),
                stacklevel=6,
            )
        if not self.converged_ and self.max_iter > 0:
            warnings.warn(
                f"EM did not converge within max_iter={self.max_iter} iterations (the best "
                f"initialisation's lower bound still changed by more than tol={self.tol:g}); "
                "increase max_iter or tol, or check for degenerate data.",
                compatible(ConvergenceWarning),
                stacklevel=6,
            )

    def _initial_params(self, source, random_state, data, user_weights, user_means,
                        user_prec_chol):
        shift = data.shift
        if user_weights is not None and user_means is not None and user_prec_chol is not None:
            return params_from_precision_cholesky(
                user_weights, user_means - shift, user_prec_chol, self.covariance_type
            )
        params = initial_params(
            source, self.n_components, self.covariance_type, self.init_params, random_state,
            reg_covar=float(self.reg_covar), jitter_floor=data.jitter_floor(self.reg_covar),
            variance=data.variance,
        )
        return self._with_user_init(params, shift, user_weights, user_means, user_prec_chol)

    def _with_user_init(self, params, shift, user_weights, user_means, user_prec_chol):
        """``params`` with any user-given initial weights, means or precisions put in."""
        weights = params.weights if user_weights is None else user_weights
        means = params.means if user_means is None else user_means - shift
        if user_prec_chol is None:
            return Params(weights, means, params.precisions_cholesky, params.covariances,
                          self.covariance_type)
        return params_from_precision_cholesky(weights, means, user_prec_chol, self.covariance_type)

    def _set_params(self, params, dtype):
        self.weights_ = params.weights.astype(dtype)
        self.means_ = params.means.astype(dtype)
        self.covariances_ = params.covariances.astype(dtype)
        self.precisions_cholesky_ = params.precisions_cholesky.astype(dtype)
        self.precisions_ = cov.precisions_from_precision_cholesky(
            params.precisions_cholesky, self.covariance_type
        ).astype(dtype)

    def _params(self):
        """The fitted parameters as float64 :class:`Params` in data coordinates."""
        return Params(
            weights=np.asarray(self.weights_, dtype=np.float64),
            means=np.asarray(self.means_, dtype=np.float64),
            precisions_cholesky=np.asarray(self.precisions_cholesky_, dtype=np.float64),
            covariances=np.asarray(self.covariances_, dtype=np.float64),
            covariance_type=self.covariance_type,
        )

    # ----------------------------------------------------------------------------------------
    # Verbosity (as scikit-learn)

    def _verbose_init_begin(self, init):
        if self.verbose:
            print(f"Initialization {init}")
            self._init_start = self._iter_start = time.perf_counter()

    def _iteration_reporter(self, init):
        """What ``run_em`` calls after each iteration: verbosity and the user's callback."""
        if not self.verbose and self.callback is None:
            return None

        def report(n_iter, lower_bound, change):
            if self.verbose:
                self._verbose_iteration(n_iter, lower_bound, change)
            if self.callback is not None:
                self.callback(FitProgress(init, n_iter, self.max_iter, lower_bound, change))

        return report

    def _verbose_iteration(self, n_iter, lower_bound, change):
        if n_iter % self.verbose_interval:
            return
        if self.verbose == 1:
            print(f"  Iteration {n_iter}")
        else:
            now = time.perf_counter()
            print(f"  Iteration {n_iter}\t time lapse {now - self._iter_start:.5f}s\t "
                  f"ll change {change:.5f}")
            self._iter_start = now

    def _verbose_init_end(self, result):
        if not self.verbose:
            return
        status = "converged" if result.converged else "did not converge"
        if self.verbose == 1:
            print(f"Initialization {status}.")
        else:
            elapsed = time.perf_counter() - self._init_start
            print(f"Initialization {status}. time lapse {elapsed:.5f}s\t lower bound "
                  f"{result.lower_bound:.5f}.")

    # ----------------------------------------------------------------------------------------
    # Inference, chunk by chunk

    def _chunks(self, arr, chunk_size=None):
        """Chunks of validated data with the matching parameters, both centred on the mixture.

        Centring the rows and the means on the mixture's mean keeps the expanded quadratic
        forms of the E-step free of cancellation for data far from the origin.
        """
        params = self._params()
        centre = params.weights @ params.means / params.weights.sum()
        params = params.shifted(-centre)
        chunk_size = chunk_size or self.chunk_size or default_chunk_size(self.n_components,
                                                                         arr.shape[1])
        source = ArrayChunks(arr, np.ones(arr.shape[0]), centre, chunk_size)
        return params, source

    def score_samples(self, X):
        """Log-density of each row under the mixture.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        log_prob : ndarray of shape (n_samples,)
        """
        if is_dask_array(X):
            return self._map_dask(X, "score_samples")
        if is_torch_tensor(X):
            return self._torch(X)[0]
        arr = self._validate_data(X)
        return self._log_prob_and_labels(arr)[0].astype(arr.dtype)

    def _torch(self, X, want_resp=False):
        """(log p, labels[, responsibilities]) of a tensor, computed on its device."""
        from .backends import torch_backend

        if not self.__sklearn_is_fitted__():
            raise not_fitted(self)
        return torch_backend.log_prob_and_resp(self, X, want_resp)

    def _map_dask(self, X, method, n_columns=None):
        """``method`` block by block over a dask array, lazily (a dask array back)."""
        from .backends.dask_backend import map_rows

        if not self.__sklearn_is_fitted__():
            raise not_fitted(self)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[-1]} features, but {type(self).__name__} is "
                             f"expecting {self.n_features_in_} features as input; pass data "
                             "with the same columns as during fit.")
        dtype = np.intp if method == "predict" else self.means_.dtype
        return map_rows(self, X, method, n_columns, dtype)

    def _log_prob_and_labels(self, arr):
        """Log-density and most likely component of validated rows, in one pass.

        Large problems go through the pruned numba kernel when that backend is active.
        """
        n = arr.shape[0]
        fused = n * self.n_components >= FUSED_INFERENCE_PAIRS and (
            backends.resolve(self.backend, n * self.n_components) == "numba")
        # The pruned kernel holds no (rows, K) block, so its chunks can be large.
        params, source = self._chunks(arr, FUSED_CHUNK_ROWS if fused else None)
        log_prob = np.empty(n)
        labels = np.empty(n, dtype=np.intp)
        if fused:
            from .backends.numba_backend import fused_log_prob

            with backends.kernel_threads():
                for start, stop in source.bounds():
                    x, _ = source.chunk(start, stop)
                    log_prob[start:stop], labels[start:stop] = fused_log_prob(x, params)
            return log_prob, labels
        plan = plan_e_step(params)
        for start, stop in source.bounds():
            x, _ = source.chunk(start, stop)
            logits = weighted_log_prob(x, params, plan)
            labels[start:stop] = logits.argmax(axis=1)
            log_prob[start:stop] = softmax_inplace(logits)
        return log_prob, labels

    def score(self, X, y=None, sample_weight=None):
        """Weighted mean log-likelihood of the rows of ``X``.

        Returns
        -------
        score : float
        """
        log_prob = self.score_samples(X)
        if is_torch_tensor(log_prob):
            log_prob = log_prob.detach().cpu().numpy()
        if is_dask_array(log_prob):
            if sample_weight is None:
                return float(log_prob.mean().compute())
            import dask.array as da

            weights = da.asarray(sample_weight)
            if weights.shape != log_prob.shape:
                raise ValueError(f"sample_weight has shape {weights.shape} but X has "
                                 f"{log_prob.shape[0]} rows; pass one weight per row.")
            return float(((log_prob * weights).sum() / weights.sum()).compute())
        if sample_weight is None:
            return float(np.mean(log_prob, dtype=np.float64))
        weights = check_sample_weight(sample_weight, log_prob.shape[0])
        return float(weights @ log_prob / weights.sum())

    def predict(self, X):
        """Most likely component of each row.

        Returns
        -------
        labels : ndarray of shape (n_samples,), int
        """
        if is_dask_array(X):
            return self._map_dask(X, "predict")
        if is_torch_tensor(X):
            return self._torch(X)[1]
        arr = self._validate_data(X)
        return self._log_prob_and_labels(arr)[1]

    def predict_proba(self, X):
        """Posterior probability of each component for each row.

        Returns
        -------
        resp : ndarray of shape (n_samples, n_components)
        """
        if is_dask_array(X):
            return self._map_dask(X, "predict_proba", self.n_components)
        if is_torch_tensor(X):
            return self._torch(X, want_resp=True)[2]
        arr = self._validate_data(X)
        params, source = self._chunks(arr)
        plan = plan_e_step(params)
        out = np.empty((arr.shape[0], self.n_components), dtype=arr.dtype)
        for start, stop in source.bounds():
            x, _ = source.chunk(start, stop)
            out[start:stop] = log_prob_and_resp(x, params, plan)[1]
        return out

    def sample(self, n_samples=1):
        """Draw rows from the fitted mixture.

        Parameters
        ----------
        n_samples : int, default=1

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        labels : ndarray of shape (n_samples,)
            Component of each row (rows are grouped by component, as in scikit-learn).
        """
        if not self.__sklearn_is_fitted__():
            raise not_fitted(self)
        check_int(n_samples, "n_samples", 1)
        if hasattr(self, "_torch_device"):  # fitted on a tensor: draw on its device
            from .backends import torch_backend

            return torch_backend.sample(self, n_samples, self._torch_device)
        params = self._params()
        rng = check_random_state(self.random_state)
        counts = rng.multinomial(n_samples, params.weights / params.weights.sum())
        labels = np.repeat(np.arange(self.n_components), counts)
        factors = cov.covariance_cholesky_from_precision_cholesky(
            params.precisions_cholesky, self.covariance_type
        )
        out = np.empty((n_samples, params.n_features), dtype=np.float64)
        for start in range(0, n_samples, SAMPLE_BLOCK_ROWS):
            lab = labels[start : start + SAMPLE_BLOCK_ROWS]
            z = rng.standard_normal((len(lab), params.n_features))
            out[start : start + len(lab)] = params.means[lab] + _scale_noise(
                z, factors, lab, self.covariance_type
            )
        return out, labels

    def _n_parameters(self):
        return cov.n_parameters(self.n_components, self.means_.shape[1], self.covariance_type)

    def bic(self, X, sample_weight=None):
        """Bayesian information criterion on ``X`` (lower is better).

        Returns
        -------
        bic : float
        """
        n = _total_weight(X, sample_weight)
        return -2.0 * self.score(X, sample_weight=sample_weight) * n + (
            self._n_parameters() * math.log(n)
        )

    def aic(self, X, sample_weight=None):
        """Akaike information criterion on ``X`` (lower is better).

        Returns
        -------
        aic : float
        """
        n = _total_weight(X, sample_weight)
        return -2.0 * self.score(X, sample_weight=sample_weight) * n + 2 * self._n_parameters()


    # ----------------------------------------------------------------------------------------
    # Construction from parameters, algebra, saving

    @classmethod
    def from_params(cls, weights, means, covariances, covariance_type="full", **params):
        """A fitted mixture with the given parameters (no data needed).

        Parameters
        ----------
        weights : array-like of shape (n_components,)
            Non-negative, summing to one.
        means : array-like of shape (n_components, n_features)
        covariances : array-like
            Shape by ``covariance_type``: (n_components, n_features, n_features) 'full',
            (n_features, n_features) 'tied', (n_components, n_features) 'diag',
            (n_components,) 'spherical'; symmetric positive definite (or positive).
        covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
        **params
            Other constructor parameters (``random_state`` for :meth:`sample`, ...).

        Returns
        -------
        GaussianMixture
            Supports every inference and algebra method; fit history attributes
            (``converged_``, ``n_iter_``, ...) are absent.

        Examples
        --------
        >>> gm = GaussianMixture.from_params([0.25, 0.75], [[0.0], [4.0]], [1.0, 0.5],
        ...                                  covariance_type="spherical")
        >>> round(float(gm.mean()[0]), 6)
        3.0
        """
        check_choice(covariance_type, "covariance_type", cov.COVARIANCE_TYPES)
        means = as_array_of_shape(means, np.shape(means), "means")
        if means.ndim != 2:
            raise ValueError(f"means must have shape (n_components, n_features), got {means.shape}.")
        k, d = means.shape
        weights = checked_weights(as_array_of_shape(weights, (k,), "weights"), "weights")
        covariances = as_array_of_shape(
            covariances, cov.covariance_shape(k, d, covariance_type), "covariances"
        )
        check_positive_definite(covariances, covariance_type, "covariances")
        prec_chol = cov.precision_cholesky(covariances, covariance_type, 1e-300)[0]
        model = cls(n_components=k, covariance_type=covariance_type, **params)
        model.n_features_in_ = d
        model._set_params(Params(weights, means, prec_chol, covariances, covariance_type),
                          np.float64)
        return model

    def _derived(self, params, feature_names=None):
        """A new fitted mixture holding ``params`` with this one's hyper-parameters."""
        if not self.__sklearn_is_fitted__():
            raise not_fitted(self)
        keep = {name: value for name, value in self.get_params().items()
                if name not in ("n_components", "weights_init", "means_init", "precisions_init",
                                "covariance_type")}
        model = type(self)(n_components=params.n_components,
                           covariance_type=params.covariance_type, **keep)
        model.n_features_in_ = params.n_features
        if feature_names is not None:
            model.feature_names_in_ = feature_names
        model._set_params(params, self.means_.dtype)
        return model

    def _fitted_params(self):
        if not self.__sklearn_is_fitted__():
            raise not_fitted(self)
        return self._params()

    def _feature_subset(self, dims):
        names = getattr(self, "feature_names_in_", None)
        return None if names is None else names[dims]

    def mean(self):
        """Mean of the mixture, ``sum_k w_k mu_k``.

        Returns
        -------
        mean : ndarray of shape (n_features,)
        """
        return algebra.mixture_mean(self._fitted_params()).astype(self.means_.dtype)

    def covariance(self):
        """Covariance of the whole mixture (within- plus between-component).

        Returns
        -------
        covariance : ndarray of shape (n_features, n_features)
        """
        return algebra.mixture_covariance(self._fitted_params()).astype(self.means_.dtype)

    def marginal(self, dims):
        """The mixture of the features ``dims`` (the others integrated out).

        Parameters
        ----------
        dims : sequence of int
            Distinct feature indices, in the order wanted.

        Returns
        -------
        GaussianMixture
            Same weights and covariance type, over ``len(dims)`` features.
        """
        params = self._fitted_params()
        dims = check_dims(dims, params.n_features, "dims")
        return self._derived(algebra.marginal(params, dims), self._feature_subset(dims))

    def condition(self, given, values):
        """The mixture of the other features given ``x[given] = values``.

        Parameters
        ----------
        given : sequence of int
            Distinct feature indices (fewer than ``n_features``).
        values : array-like of shape (len(given),)

        Returns
        -------
        GaussianMixture
            Over the remaining features in increasing order, weights proportional to
            ``w_k N(values; mu_k[given], Sigma_k[given, given])``; the covariance type is kept.
        """
        params = self._fitted_params()
        given = check_dims(given, params.n_features, "given", proper=True)
        values = check_values(values, len(given), single=True)
        rest = np.setdiff1d(np.arange(params.n_features), given)
        return self._derived(algebra.condition(params, given, values[0]),
                             self._feature_subset(rest))

    def conditional_mean(self, given, values, *, return_covariance=False, return_weights=False,
                         chunk_size=None):
        """``E[x_rest | x[given] = v]`` for many query rows ``v`` at once.

        Vectorised over components and chunked over queries like the E-step: memory stays
        O(chunk_size * n_components).

        Parameters
        ----------
        given : sequence of int
            Distinct feature indices (fewer than ``n_features``).
        values : array-like of shape (n_queries, len(given)), or (len(given),) for one query
        return_covariance : bool, default=False
            Also return ``Cov[x_rest | v]``, shape (n_queries, n_rest, n_rest).
        return_weights : bool, default=False
            Also return each query's component weights given ``v``, shape
            (n_queries, n_components).
        chunk_size : int, optional
            Queries per chunk.

        Returns
        -------
        mean : ndarray of shape (n_queries, n_rest), or (n_rest,) for one query
        covariance, weights : ndarrays, when requested (in that order)
        """
        params = self._fitted_params()
        given = check_dims(given, params.n_features, "given", proper=True)
        if is_torch_tensor(values):
            from .backends import torch_backend

            queries = values if values.ndim == 2 else values[None]
            if queries.shape[1] != len(given):
                raise ValueError(f"values must have shape (n_queries, {len(given)}), one value "
                                 f"per given feature; got shape {tuple(values.shape)}.")
            out = torch_backend.conditional_mean(self, given, queries)
            return out if values.ndim == 2 else out[0]
        single = np.ndim(values) == 1
        values = check_values(values, len(given), single=single)
        check_int(chunk_size, "chunk_size", 1, allow_none=True)
        outputs = algebra.conditional_mean(
            params, given, values, chunk_size=chunk_size, return_covariance=return_covariance,
            return_weights=return_weights,
        )
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        dtype = self.means_.dtype
        outputs = tuple((o[0] if single else o).astype(dtype) for o in outputs)
        return outputs[0] if len(outputs) == 1 else outputs

    def scale_covariances(self, factor):
        """A copy with every covariance multiplied by ``factor`` (< 1 sharpens).

        Parameters
        ----------
        factor : float, > 0

        Returns
        -------
        GaussianMixture
        """
        check_real(factor, "factor", 0.0)
        if not factor > 0:
            raise ValueError("factor must be positive; pass a number above 0 (0.6 sharpens).")
        params = self._fitted_params()
        return self._derived(algebra.scale_covariances(params, float(factor)),
                             getattr(self, "feature_names_in_", None))

    def subset(self, components):
        """A copy keeping only ``components``, their weights renormalised to sum to one.

        Parameters
        ----------
        components : sequence of int
            Distinct component indices.

        Returns
        -------
        GaussianMixture
        """
        params = self._fitted_params()
        components = check_dims(components, params.n_components, "components")
        if not params.weights[components].sum() > 0:
            raise ValueError("The chosen components all have zero weight; keep at least one "
                             "component with a positive weight.")
        return self._derived(algebra.subset(params, components),
                             getattr(self, "feature_names_in_", None))

    def save(self, path):
        """Write the fitted mixture to ``path`` (see :func:`gaussmix.io.save`)."""
        from .io import save

        save(self, path)


def _scale_noise(z, factors, labels, covariance_type):
    """``A_k @ z`` for standard normal rows ``z`` and covariance factors ``A``."""
    if covariance_type == "full":
        return np.einsum("nij,nj->ni", factors[labels], z)
    if covariance_type == "tied":
        return z @ factors.T
    if covariance_type == "diag":
        return z * factors[labels]
    return z * factors[labels, np.newaxis]


def _total_weight(X, sample_weight):
    n = len(X) if not hasattr(X, "shape") else X.shape[0]
    if sample_weight is None:
        return float(n)
    return float(check_sample_weight(sample_weight, n).sum())
