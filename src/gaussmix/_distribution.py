"""What a fitted Gaussian mixture is as a distribution, whatever fitted it: its parameters,
construction from parameters, sampling, algebra (moments, marginals, conditioning,
conditional means, scaling, subsets) and saving. Estimators of a model family derive from
:class:`FittedMixture` and add their fit.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np

from ._fitting import inference
from ._mathematics import algebra
from ._foundations import covariance as cov
from ._base import EstimatorBase
from ._mathematics.em import Params
from ._data import missing as _missing
from ._data.inputs import host_view, runs_on_device
from ._foundations.validation import (
    as_array_of_shape,
    as_float_array,
    check_choice,
    check_dims,
    check_int,
    check_positive_definite,
    check_random_state,
    check_real,
    check_values,
    checked_weights,
    has_missing,
    user_stacklevel,
)
from ._foundations.arrays import is_torch_tensor
from .exceptions import not_fitted
from .io import FITTED_SCALARS, ModelState, save_state

# Rows per block when sampling (bounds the (rows, D, D) gather of covariance factors).
SAMPLE_BLOCK_ROWS = 65536


class FittedMixture(EstimatorBase):
    """Base of the mixture estimators: the fitted parameters (``weights_``, ``means_``,
    ``covariances_``, ``precisions_``, ``precisions_cholesky_``) and what they allow."""

    def _set_params(self, params, dtype):
        # The arrays' covariance type, kept apart from the parameter (set_params may change
        # it before a warm refit).
        cov_type = self._fitted_covariance_type = params.covariance_type
        self.weights_ = params.weights.astype(dtype)
        self.means_ = params.means.astype(dtype)
        self.covariances_ = cov.positive_definite_in(params.covariances, cov_type, dtype)
        self.precisions_cholesky_ = params.precisions_cholesky.astype(dtype)
        self.precisions_ = cov.precisions_from_precision_cholesky(
            params.precisions_cholesky, cov_type).astype(dtype)

    def _params(self):
        """The fitted parameters as float64 :class:`Params` in data coordinates."""
        return Params(
            weights=np.asarray(self.weights_, dtype=np.float64),
            means=np.asarray(self.means_, dtype=np.float64),
            precisions_cholesky=np.asarray(self.precisions_cholesky_, dtype=np.float64),
            covariances=np.asarray(self.covariances_, dtype=np.float64),
            covariance_type=self._arrays_covariance_type,
        )

    @property
    def _arrays_covariance_type(self):
        """The covariance type of the fitted arrays (the parameter may since have changed;
        arrays set by hand follow the parameter)."""
        return getattr(self, "_fitted_covariance_type", self.covariance_type)

    def _n_parameters(self):
        return cov.n_parameters(*self.means_.shape, self._arrays_covariance_type)

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
        if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral) or (
                n_samples < 1):
            raise ValueError(f"Invalid value for 'n_samples': {n_samples!r}. The sampling "
                             "requires at least one sample; pass n_samples >= 1.")
        params = self._params()
        rng = check_random_state(self.random_state)
        device = getattr(self, "_output_device", None)  # fitted on a tensor
        if device is not None and runs_on_device(device.split(":")[0], self.backend):
            import torch

            from ._data import torch_tensors as torch_backend  # imports torch

            return torch_backend.sample(params, n_samples, torch.device(device), rng,
                                        torch_backend.torch_dtype(self.means_.dtype))
        counts = rng.multinomial(n_samples, params.weights / params.weights.sum())
        labels = np.repeat(np.arange(self.n_components), counts)
        factors = cov.covariance_cholesky_from_precision_cholesky(
            params.precisions_cholesky, params.covariance_type
        )
        out = np.empty((n_samples, params.n_features), dtype=np.float64)
        for start in range(0, n_samples, SAMPLE_BLOCK_ROWS):
            lab = labels[start : start + SAMPLE_BLOCK_ROWS]
            z = rng.standard_normal((len(lab), params.n_features))
            out[start : start + len(lab)] = params.means[lab] + _scale_noise(
                z, factors, lab, params.covariance_type
            )
        if device == "cpu":
            import torch

            return torch.from_numpy(out), torch.from_numpy(labels)
        return out, labels

    # ----------------------------------------------------------------------------------------
    # Construction from parameters, algebra

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
        >>> from gaussmix import GaussianMixture
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
        cls = self._derived_class()
        accepted = set(cls._get_param_names()) - {
            "n_components", "weights_init", "means_init", "precisions_init", "covariance_type"}
        keep = {name: value for name, value in self.get_params().items() if name in accepted}
        model = cls(n_components=params.n_components, covariance_type=params.covariance_type,
                    **keep)
        model.n_features_in_ = params.n_features
        if feature_names is not None:
            model.feature_names_in_ = feature_names
        model._set_params(params, self.means_.dtype)
        return model

    def _derived_class(self):
        """The class of the mixtures the algebra returns (a plain mixture of parameters)."""
        return type(self)

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
            return self._tensor_conditional_mean(params, given, values)
        single = np.ndim(values) == 1
        values = check_values(values, len(given), single=single)
        check_int(chunk_size, "chunk_size", 1, allow_none=True)
        outputs = inference.conditional_mean(
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

    def impute(self, X, method="mean", random_state=None):
        """``X`` with every missing value (NaN) filled from the mixture.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        method : {'mean', 'sample'}
            'mean': ``E[x_m | x_o]``, the conditional mean of the missing entries given the
            observed ones; 'sample': one draw from that conditional mixture (for multiple
            imputation, call it once per imputation with different seeds).
        random_state : int, RandomState or None
            For 'sample'.

        Returns
        -------
        ndarray of shape (n_samples, n_features), float64
            Observed entries unchanged; a row with nothing observed gets the mixture's mean
            ('mean') or a draw from the mixture ('sample').
        """
        params = self._fitted_params()
        if method not in ("mean", "sample"):
            raise ValueError(f"method must be 'mean' or 'sample', got {method!r}.")
        if is_torch_tensor(X):  # on the CPU through a numpy view, a tensor back
            import torch

            if X.device.type != "cpu":
                raise ValueError("impute fills missing values on the CPU; pass X.cpu() (missing "
                                 "values are not fitted on a device yet).")
            return torch.from_numpy(self.impute(host_view(X), method, random_state))
        arr = as_float_array(X)
        self._check_rows(X, arr)
        has_missing(arr)
        return _missing.impute(arr, params, method, check_random_state(random_state))

    def _tensor_conditional_mean(self, params, given, values):
        """:meth:`conditional_mean` of a query tensor: on its device, or through a numpy
        view on the CPU; a tensor back."""
        queries = values if values.ndim == 2 else values[None]
        if queries.shape[1] != len(given):
            raise ValueError(f"values must have shape (n_queries, {len(given)}), one value "
                             f"per given feature; got shape {tuple(values.shape)}.")
        if not runs_on_device(values.device.type, self.backend):
            import torch

            out = torch.from_numpy(np.asarray(self.conditional_mean(given, host_view(values))))
        else:
            from ._data import torch_tensors as torch_backend  # imports torch

            out = torch_backend.conditional_mean(params, given, queries)
            out = out if values.ndim == 2 else out[0]
        return out

    # ----------------------------------------------------------------------------------------
    # Saving

    def save(self, path):
        """Write the fitted mixture to ``path``: a ``.npz`` archive with JSON metadata, never
        pickled, written atomically (see ``gaussmix.io`` for the format).

        Parameters that are neither plain values nor arrays of numbers (a ``RandomState``
        as ``random_state``, a ``callback``) are not saved: a warning names them, and the
        loaded model has their defaults."""
        unsaved = save_state(self._state(), path)
        if unsaved:
            warnings.warn(f"{', '.join(unsaved)} {'is' if len(unsaved) == 1 else 'are'} not "
                          "saved (not a plain value or an array of numbers); the loaded model "
                          "has the default instead.", UserWarning, stacklevel=user_stacklevel())

    def _state(self):
        """The fitted mixture as a plain :class:`~gaussmix.io.ModelState`."""
        if not self.__sklearn_is_fitted__():
            raise not_fitted(self)
        names = getattr(self, "feature_names_in_", None)
        covariance_type = self._arrays_covariance_type
        return ModelState(
            covariance_type=covariance_type,
            n_features=int(self.n_features_in_),
            dtype=str(self.means_.dtype),
            params={**self.get_params(), "covariance_type": covariance_type,
                    "n_components": int(self.means_.shape[0])},
            arrays={"weights": self.weights_, "means": self.means_,
                    "covariances": self.covariances_, "precisions": self.precisions_,
                    "precisions_cholesky": self.precisions_cholesky_},
            fitted={k: _plain_scalar(getattr(self, k)) for k in FITTED_SCALARS
                    if hasattr(self, k)},
            feature_names=None if names is None else [str(n) for n in names],
            estimator=type(self).__name__,
            extra=self._state_extra(),
        )

    def _state_extra(self):
        """Further fitted arrays a model file keeps (none for a plain mixture)."""
        return {}

    def _restore_extra(self, extra, path):
        """Set the further fitted arrays read from ``path`` (refusing any a plain mixture
        does not have)."""
        if extra:
            raise ValueError(f"Cannot load {path!r}: it holds arrays ({', '.join(extra)}) that a "
                             f"{type(self).__name__} does not have.")

    def _check_loaded(self, state, path):
        """Refuse a loaded state whose settings no fit of this class writes: values out of
        range, initial arrays of the wrong shape, a component count or covariance type that
        differs from the arrays'."""
        k = state.arrays["means"].shape[0]
        if self.n_components != k or self.covariance_type != state.covariance_type:
            raise ValueError(
                f"Cannot load {path!r}: its settings (n_components={self.n_components!r}, "
                f"covariance_type={self.covariance_type!r}) disagree with its arrays "
                f"({k} components, {state.covariance_type!r}).")
        try:
            self._check_values()
            self._init_spec(state.n_features)
        except ValueError as exc:
            raise ValueError(f"Cannot load {path!r}: its settings are invalid ({exc})") from None

    @classmethod
    def _from_state(cls, state, path):
        """A fitted mixture from a :class:`~gaussmix.io.ModelState` read from ``path``."""
        try:
            model = cls(**state.params)
        except TypeError:
            raise ValueError(f"Cannot load {path!r}: its parameters do not match this "
                             "gaussmix version.") from None
        model._check_loaded(state, path)
        model.n_features_in_ = state.n_features
        model._fitted_covariance_type = state.covariance_type
        if state.feature_names is not None:
            model.feature_names_in_ = np.asarray(state.feature_names, dtype=object)
        for name, value in state.arrays.items():
            setattr(model, name + "_", value)
        for name, value in state.fitted.items():
            setattr(model, name, value)
        model._restore_extra(state.extra, path)
        return model




def _plain_scalar(value):
    """A fitted scalar as a Python value (numpy scalars become floats or ints)."""
    return value.item() if isinstance(value, np.generic) else value


def _scale_noise(z, factors, labels, covariance_type):
    """``A_k @ z`` for standard normal rows ``z`` and covariance factors ``A``."""
    if covariance_type == "full":
        return np.einsum("nij,nj->ni", factors[labels], z)
    if covariance_type == "tied":
        return z @ factors.T
    if covariance_type == "diag":
        return z * factors[labels]
    return z * factors[labels, np.newaxis]
