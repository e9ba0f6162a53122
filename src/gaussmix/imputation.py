"""``GaussianMixtureImputer``: missing values filled from a Gaussian mixture of the data.

A scikit-learn transformer: ``fit`` learns a mixture from the observed entries (exact EM with
missing values, ``missing``), choosing the number of components by BIC on the observed-data
likelihood unless told; ``transform`` fills every NaN with its conditional mean given the
row's observed entries (or a draw, for multiple imputation).

The mixture is fitted to standardised columns, so that ``reg_covar`` is a share of each
column's variance: a column of a few discrete values (a 0/1 code) would otherwise let
components collapse onto its values, which BIC rewards and imputation pays for (diabetes,
20% missing: RMSE 0.733 with an absolute 1e-6, 0.701 with 1e-2 of each variance).
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import TransformerMixin

from ._base import EstimatorBase
from ._foundations.validation import (
    FeatureChecker,
    as_float_array,
    check_choice,
    check_int,
    has_missing,
    user_stacklevel,
)
from .exceptions import ConvergenceWarning, RegularizationWarning, not_fitted
from .mixture import GaussianMixture

__all__ = ["GaussianMixtureImputer"]


class GaussianMixtureImputer(TransformerMixin, EstimatorBase):
    """Fill missing values (NaN) with their conditional expectation under a Gaussian mixture.

    Parameters
    ----------
    n_components : int, sequence of int or None, default=None
        The mixture's components; a sequence is searched by BIC on the observed-data
        likelihood; None searches 1 to 10 (fewer with few rows).
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
    method : {'mean', 'sample'}, default='mean'
        'mean': ``E[x_m | x_o]``; 'sample': one draw from the conditional mixture per call
        (multiple imputation: transform with several values of ``random_state``).
    reg_covar : float, default=1e-2
        Added to the covariances' diagonals, as a share of each column's observed variance.
    max_iter, n_init, tol
        As for :class:`~gaussmix.GaussianMixture`.
    random_state : int, RandomState or None

    Attributes
    ----------
    mixture_ : GaussianMixture
        The fitted mixture, of the standardised columns ``(X - mean_) / scale_``.
    mean_, scale_ : ndarray of shape (n_features,)
        Each column's observed mean and standard deviation (1 for a constant column).
    n_components_ : int
    n_iter_ : int
        EM iterations of the chosen mixture.
    bic_ : dict
        BIC of each number of components tried.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Defined when ``X`` has column names (a DataFrame).
    """

    _allows_missing = True

    def __init__(self, n_components=None, *, covariance_type="full", method="mean",
                 reg_covar=1e-2, max_iter=200, n_init=1, tol=1e-3, random_state=None):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.method = method
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.tol = tol
        self.random_state = random_state

    def _candidates(self, n_rows):
        if self.n_components is None:
            return list(range(1, max(1, min(10, n_rows // 10)) + 1))
        if isinstance(self.n_components, (list, tuple, range, np.ndarray)):
            candidates = [int(k) for k in self.n_components]
            if not candidates:
                raise ValueError("n_components must name at least one number of components.")
            for k in candidates:
                check_int(k, "n_components", 1)
            return candidates
        check_int(self.n_components, "n_components", 1)
        return [self.n_components]

    def _fitting_candidates(self, n_rows):
        """The numbers of components to fit on ``n_rows`` rows: those asked for that the rows
        can hold (a warning names the others), one sentence when none can."""
        asked = self._candidates(n_rows)
        fitting = [k for k in asked if k <= n_rows]
        if not fitting:
            raise ValueError(f"n_components asks for at least {min(asked)} components but X "
                             f"has {n_rows} rows; pass at most {n_rows} (or None to choose).")
        if len(fitting) < len(asked):
            dropped = ", ".join(str(k) for k in asked if k > n_rows)
            warnings.warn(f"Not fitted: n_components {dropped}, more than the {n_rows} rows "
                          "of X.", UserWarning, stacklevel=user_stacklevel())
        return fitting

    def fit(self, X, y=None):
        """Fit the mixture (and choose its size) on the observed entries of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), NaN for missing
        y : ignored

        Returns
        -------
        self
        """
        check_choice(self.method, "method", ("mean", "sample"))
        arr = as_float_array(X)
        has_missing(arr)
        self.mean_, self.scale_ = _column_scales(arr)
        arr = (arr - self.mean_) / self.scale_
        candidates = self._fitting_candidates(arr.shape[0])
        self.bic_ = {}
        best = None
        for k in candidates:
            model = GaussianMixture(k, covariance_type=self.covariance_type,
                                    reg_covar=self.reg_covar, max_iter=self.max_iter,
                                    n_init=self.n_init, tol=self.tol,
                                    random_state=self.random_state)
            _quietly(model.fit, arr)
            self.bic_[k] = float(model.bic(arr))
            if best is None or self.bic_[k] < self.bic_[best.n_components]:
                best = model
        self.mixture_ = best
        self.n_components_ = best.n_components
        self.n_iter_ = best.n_iter_
        FeatureChecker.remember(self, X, arr)
        return self

    def transform(self, X):
        """``X`` with its missing values filled.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), NaN (or ``pd.NA``) for missing
            The columns the imputer was fitted on, in the same order.

        Returns
        -------
        X_filled : ndarray of shape (n_samples, n_features)
            float32 for float32 input, float64 otherwise; a DataFrame where
            ``set_output(transform="pandas")`` asks for one.
        """
        if not hasattr(self, "mixture_"):
            raise not_fitted(self)
        arr = as_float_array(X)
        FeatureChecker.check(self, X, arr)
        standard = (arr - self.mean_) / self.scale_
        filled = self.mixture_.impute(standard, method=self.method,
                                      random_state=self.random_state)
        # Observed entries exactly as given, in their float precision.
        out = np.array(arr, dtype=np.float32 if arr.dtype == np.float32 else np.float64)
        holes = np.isnan(out)
        out[holes] = (filled * self.scale_ + self.mean_)[holes]
        return out

    def get_feature_names_out(self, input_features=None):
        """Names of the output columns: the input's, unchanged (scikit-learn's convention).

        Parameters
        ----------
        input_features : array-like of str, optional
            The input's names; they must equal ``feature_names_in_`` where the fit saw
            names. None: ``feature_names_in_``, or ``x0`` ... ``x{D-1}`` without them.

        Returns
        -------
        ndarray of shape (n_features,), dtype object
        """
        if not hasattr(self, "mixture_"):
            raise not_fitted(self)
        fitted = getattr(self, "feature_names_in_", None)
        if input_features is None:
            if fitted is not None:
                return np.asarray(fitted, dtype=object)
            return np.asarray([f"x{i}" for i in range(self.n_features_in_)], dtype=object)
        given = np.asarray(input_features, dtype=object)
        if given.ndim != 1 or len(given) != self.n_features_in_:
            raise ValueError(f"input_features should have length equal to number of features "
                             f"({self.n_features_in_}), got {len(np.atleast_1d(given))}.")
        if fitted is not None and not np.array_equal(given, fitted):
            raise ValueError("input_features is not equal to feature_names_in_; pass the "
                             "names the imputer was fitted with, or None.")
        return given

    def __sklearn_is_fitted__(self):
        return hasattr(self, "mixture_")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


def _column_scales(arr):
    """Observed mean and standard deviation of each column (NaN ignored; 1 for a constant
    column or one with a single value)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # columns with nothing observed
        mean = np.nanmean(arr, axis=0)
        scale = np.nanstd(arr, axis=0)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    return mean, scale


def _quietly(function, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (ConvergenceWarning, RegularizationWarning))
        return function(*args)
