"""Input validation: every bad input is refused with one sentence that says what to do.

Messages follow scikit-learn's wording where its checks expect it (so that
``check_estimator`` passes) and add the fix.
"""

from __future__ import annotations

import numbers
import sys
import warnings

import numpy as np

from .covariance import is_positive_definite


def user_stacklevel():
    """The ``stacklevel`` at which a warning issued by the caller points at the user's line:
    the first frame outside gaussmix and the scikit-learn tools that called it (a pipeline,
    a search), however deep the call."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_globals.get("__name__", "").partition(".")[0] in (
            "gaussmix", "sklearn"):
        frame, level = frame.f_back, level + 1
    return level


class InputError(ValueError, TypeError):
    """Bad data: a ValueError (and a TypeError, for non-numeric values)."""


def _is_sparse(X):
    return hasattr(X, "tocsr") and hasattr(X, "nnz")


def feature_names(X):
    """Column names of a DataFrame-like ``X`` if they are all strings, else None."""
    columns = getattr(X, "columns", None)
    if columns is None or not hasattr(X, "__array__"):
        return None
    names = np.asarray(columns, dtype=object)
    are_str = np.array([isinstance(name, str) for name in names])
    if not are_str.any():
        return None
    if not are_str.all():
        raise InputError(
            "Feature names are only supported if all input features have string names, "
            f"but your input has {sorted({type(n).__name__ for n in names})} as feature "
            "name types; convert them all to str (X.columns = X.columns.astype(str))."
        )
    unique, counts = np.unique(names.astype(str), return_counts=True)
    if (counts > 1).any():
        repeated = ", ".join(f"{str(name)!r} {count} times" for name, count
                             in zip(unique[counts > 1], counts[counts > 1]))
        raise InputError(f"X has duplicate column names ({repeated}); give every column a "
                         "name of its own.")
    return names


def _missing_as_nan(arr):
    """An object array with pandas' missing markers (``pd.NA`` of nullable columns, ``NaT``)
    as NaN, as scikit-learn's imputers read them; other arrays as they are. pandas is only
    consulted when the caller has imported it."""
    pandas = sys.modules.get("pandas")
    if pandas is None or arr.dtype != object:
        return arr
    missing = pandas.isna(arr)
    return np.where(missing, np.nan, arr) if missing.any() else arr


def as_float_array(X, name="X"):
    """``X`` as a 2-D float32 or float64 array (float32 kept; others become float64).

    Raises
    ------
    InputError
        For sparse, complex, non-numeric, non-2-D or empty input.
    """
    if _is_sparse(X):
        raise InputError(
            f"Sparse input is not supported: {name} is a sparse matrix; pass a dense array "
            f"({name}.toarray())."
        )
    if hasattr(X, "dtype") and getattr(X, "ndim", None) == 2 and not hasattr(X, "columns"):
        arr = X  # keep memory maps and arrays as they are; chunks are converted later
    else:
        try:
            arr = np.asarray(X)
        except (TypeError, ValueError) as exc:
            raise InputError(
                f"{name} could not be read as a numeric array ({exc}); pass a 2-D array of "
                "numbers."
            ) from None
    if np.iscomplexobj(arr):
        raise InputError(f"Complex data not supported: {name} has complex values; pass real "
                         "numbers (for example the real part or the magnitude).")
    if arr.dtype.kind not in "fiub":
        try:
            arr = _missing_as_nan(arr).astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise InputError(
                f"{name} contains non-numeric values ({exc}); convert or drop those columns "
                "so that every value is a number."
            ) from None
    if arr.ndim != 2:
        if arr.ndim == 1:
            hint = (
                f"Reshape your data with {name}.reshape(-1, 1) if it holds a single feature "
                f"or {name}.reshape(1, -1) if it holds a single sample"
            )
        else:
            hint = "Pass a 2-D array of shape (n_samples, n_features)"
        raise InputError(
            f"Expected a 2-D array, got a {arr.ndim}-D array of shape {arr.shape} for {name}. "
            f"{hint}."
        )
    n_samples, n_features = arr.shape
    if n_samples < 1:
        raise InputError(
            f"Found array with 0 sample(s) (shape={arr.shape}) while a minimum of 1 is "
            f"required; pass at least one row in {name}."
        )
    if n_features < 1:
        raise InputError(
            f"Found array with 0 feature(s) (shape={arr.shape}) while a minimum of 1 is "
            f"required; pass at least one column in {name}."
        )
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    return arr


def as_array_view(X, name="X"):
    """A 2-D numeric array (memory maps stay maps: chunks are converted when read)."""
    if getattr(X, "ndim", None) != 2 or getattr(X, "dtype", np.dtype(object)).kind not in "fiub":
        return as_float_array(X, name)
    if X.shape[0] < 1 or X.shape[1] < 1:
        return as_float_array(X, name)  # the usual messages for empty data
    return X


def _non_finite_rows(X, chunk_size):
    """Rows with NaN and rows with infinity in ``X`` (counted chunk by chunk), and the first
    row of each kind (None when there is none)."""
    n_nan = n_inf = 0
    first_nan = first_inf = None
    for start in range(0, X.shape[0], chunk_size):
        block = np.asarray(X[start : start + chunk_size])
        if np.isfinite(block).all():
            continue
        nan_rows = np.flatnonzero(np.isnan(block).any(axis=1))
        inf_rows = np.flatnonzero(np.isinf(block).any(axis=1))
        n_nan += len(nan_rows)
        n_inf += len(inf_rows)
        if first_nan is None and len(nan_rows):
            first_nan = start + int(nan_rows[0])
        if first_inf is None and len(inf_rows):
            first_inf = start + int(inf_rows[0])
    return n_nan, n_inf, first_nan, first_inf


def check_finite(X, name="X", chunk_size=65536):
    """Raise if ``X`` holds NaN or infinity, saying how many rows and where the first is."""
    n_nan, n_inf, first_nan, first_inf = _non_finite_rows(X, chunk_size)
    if n_nan or n_inf:
        first = min(row for row in (first_nan, first_inf) if row is not None)
        raise non_finite_error(name, n_nan, n_inf, first)


def has_missing(X, name="X", chunk_size=65536):
    """Whether ``X`` holds NaN (missing values); raise if it holds infinity (one sentence)."""
    n_nan, n_inf, _, first_inf = _non_finite_rows(X, chunk_size)
    if n_inf:
        raise infinity_error(name, n_inf, first_inf)
    return n_nan > 0


def infinity_error(name, n_inf, first):
    """The error for data holding infinity in ``n_inf`` rows where NaN may mark holes."""
    return InputError(f"Input {name} contains infinity (inf) in {n_inf} "
                      f"row{'s' if n_inf != 1 else ''} (first at row {first}); NaN marks a "
                      "missing value, but infinity is not a value: remove or replace it.")


def non_finite_error(name, n_nan, n_inf, first=None):
    """The error for data holding NaN in ``n_nan`` rows and infinity in ``n_inf`` rows."""
    what = " and ".join(
        part
        for part in (
            f"NaN in {n_nan} row{'s' if n_nan != 1 else ''}" if n_nan else "",
            f"infinity (inf) in {n_inf} row{'s' if n_inf != 1 else ''}" if n_inf else "",
        )
        if part
    )
    where = "" if first is None else f" (first at row {first})"
    return InputError(f"Input {name} contains {what}{where}; remove or impute those rows "
                      "before calling this method.")


NO_POSITIVE_WEIGHT = ("sample_weight is zero for every row; at least one row needs a positive "
                      "weight.")
BAD_WEIGHTS = "sample_weight must be finite and non-negative (use 0 to leave a row out)."
# Largest weight accepted: only the ratios of weights matter, and sums of weights times
# squared deviations must stay finite in float64 (see MAX_VARIANCE).
MAX_WEIGHT = 1e20


def check_weight_size(largest, name="sample_weight"):
    if largest > MAX_WEIGHT:
        raise InputError(f"{name} holds values up to {largest:.3g}; only the ratios of weights "
                         "matter, so divide them by their largest value (weights up to "
                         f"{MAX_WEIGHT:.0e} are accepted).")


def check_enough_rows(n_components, n_positive, weighted=True):
    """Refuse more components than rows with a positive weight."""
    if n_components > n_positive:
        rows = "samples with a positive weight" if weighted else "samples"
        raise InputError(
            f"n_components={n_components} is larger than the number of {rows} "
            f"(n_samples = {n_positive}); reduce n_components or provide more data."
        )


def check_sample_weight(sample_weight, n_samples, dtype=np.float64):
    """Validated non-negative sample weights as a new float64 array of shape (n_samples,),
    scaled by :func:`unit_scale` (only their ratios matter)."""
    if sample_weight is None:
        return np.ones(n_samples, dtype=dtype)
    if isinstance(sample_weight, numbers.Number):
        sample_weight = np.full(n_samples, sample_weight)
    try:
        weights = np.array(sample_weight, dtype=np.float64)  # a copy: never overwritten
    except (TypeError, ValueError):
        raise InputError(
            "sample_weight could not be read as numbers; pass one non-negative number per row."
        ) from None
    if weights.ndim != 1 or weights.shape[0] != n_samples:
        raise InputError(
            f"sample_weight has shape {weights.shape} but X has {n_samples} rows; pass a 1-D "
            "array with one non-negative weight per row."
        )
    if not np.isfinite(weights).all():
        raise InputError(
            f"sample_weight contains {int((~np.isfinite(weights)).sum())} NaN or infinite "
            "values; every weight must be a finite non-negative number."
        )
    negative = int((weights < 0).sum())
    if negative:
        raise InputError(
            f"sample_weight contains {negative} negative value{'s' if negative != 1 else ''}; "
            "weights must be non-negative (use 0 to leave a row out)."
        )
    if not (weights > 0).any():
        raise InputError(NO_POSITIVE_WEIGHT)
    check_weight_size(weights.max())
    return unit_scale(weights)


def unit_scale(weights):
    """``weights`` (non-negative, some positive) times the power of two that brings the
    largest into [0.5, 1) when it lies below (:func:`weight_exponent`): exact, and it keeps
    tiny weights (5e-324, whose products with the data would be denormal and keep a bit or
    two) at full precision."""
    exponent = weight_exponent(weights.max())
    return np.ldexp(weights, exponent) if exponent else weights


def weight_exponent(largest):
    """The power of two (an exponent, 0 or positive) that brings the ``largest`` weight into
    [0.5, 1) when it lies below; larger weights stay (scaling them down could make the
    smallest denormal). Only the weights' ratios matter, and a power of two keeps them
    exactly."""
    _, exponent = np.frexp(largest)
    return max(0, -int(exponent))


def check_chunk_weights(weights, n_rows, name="chunk weights"):
    """Non-negative finite weights for one chunk (a chunk may weigh nothing)."""
    try:
        w = np.array(weights, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name} could not be read as numbers; pass one non-negative number "
                         "per row.") from None
    if w.ndim != 1 or w.shape[0] != n_rows:
        raise InputError(f"{name} have shape {w.shape} but the chunk has {n_rows} rows; pass "
                         "one weight per row.")
    if not np.isfinite(w).all() or (w < 0).any():
        raise InputError(f"{name} must be finite and non-negative.")
    if w.size:
        check_weight_size(w.max(), name)
    return w


def check_n_features(n_given, n_expected, estimator_name):
    """Refuse data whose number of columns differs from the fitted model's."""
    if n_given != n_expected:
        raise InputError(
            f"X has {n_given} features, but {estimator_name} is expecting {n_expected} features "
            "as input; pass data with the same columns as during fit."
        )


class FeatureChecker:
    """Checks that data at predict time matches the data seen by ``fit``.

    Mirrors scikit-learn's ``n_features_in_`` and ``feature_names_in_`` conventions.
    """

    @staticmethod
    def remember(estimator, X, arr):
        estimator.n_features_in_ = arr.shape[1]
        names = feature_names(X)
        if names is not None:
            estimator.feature_names_in_ = names
        elif hasattr(estimator, "feature_names_in_"):
            del estimator.feature_names_in_

    @staticmethod
    def check(estimator, X, arr):
        name = type(estimator).__name__
        FeatureChecker._check_names(estimator, X, name)
        check_n_features(arr.shape[1], estimator.n_features_in_, name)

    @staticmethod
    def _check_names(estimator, X, name):
        fitted = getattr(estimator, "feature_names_in_", None)
        given = feature_names(X)
        if fitted is None and given is None:
            return
        if given is not None and fitted is None:
            warnings.warn(
                f"X has feature names, but {name} was fitted without feature names",
                UserWarning,
                stacklevel=user_stacklevel(),
            )
            return
        if given is None:
            warnings.warn(
                f"X does not have valid feature names, but {name} was fitted with feature "
                "names",
                UserWarning,
                stacklevel=user_stacklevel(),
            )
            return
        if len(fitted) == len(given) and np.all(fitted == given):
            return
        message = "The feature names should match those that were passed during fit.\n"
        unexpected = sorted(set(given) - set(fitted))
        missing = sorted(set(fitted) - set(given))

        def listing(header, names, limit=5):
            shown = "".join(f"- {n}\n" for n in names[:limit])
            more = "- ...\n" if len(names) > limit else ""
            return f"{header}\n{shown}{more}"

        if unexpected:
            message += listing("Feature names unseen at fit time:", unexpected)
        if missing:
            message += listing("Feature names seen at fit time, yet now missing:", missing)
        if not missing and not unexpected:
            message += "Feature names must be in the same order as they were in fit.\n"
        raise InputError(message + "Pass the columns used during fit, in the same order.")


def check_int(value, name, minimum, allow_none=False):
    if allow_none and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(
            f"{name} must be an integer >= {minimum}, got {value!r}; pass a whole number "
            f"of at least {minimum}."
        )


def check_real(value, name, minimum, finite=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= minimum:
        raise ValueError(
            f"{name} must be a real number >= {minimum}, got {value!r}; pass a number of at "
            f"least {minimum}."
        )
    if finite and not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}; pass a number of at least "
                         f"{minimum}.")


# Largest per-feature variance a fit accepts, by the dtype of its parameters: squared
# deviations times weights (up to MAX_WEIGHT) are summed over rows in float64, which leaves
# room for 1e18 rows, and float32 parameters must hold the covariances (float32's largest
# is 3e38).
MAX_VARIANCE = {np.dtype(np.float64): 1e270, np.dtype(np.float32): 1e36}


def check_scale(variance, dtype, name="X"):
    """Refuse data spread too widely for their squares to be summed (one sentence).

    Parameters
    ----------
    variance : ndarray of shape (D,)
        Weighted variance of each feature (inf where it overflowed).
    dtype : numpy dtype
        Of the fitted parameters.
    """
    dtype = np.dtype(dtype)
    limit = MAX_VARIANCE.get(dtype, MAX_VARIANCE[np.dtype(np.float64)])
    widest = float(np.max(variance))
    if widest <= limit:  # also False for NaN and inf
        return
    holder = "float32 covariances" if dtype == np.float32 else "float64 sums"
    advice = "pass float64 data or divide it by " if dtype == np.float32 else "divide it by "
    if np.isfinite(widest):
        spread = np.sqrt(widest)
        found = f"a feature's standard deviation is {spread:.3g}"
        scale = f"1e{int(np.log10(spread))}"
    else:
        found, scale = "its squared deviations overflow", "a power of ten near its largest values"
    raise ValueError(
        f"{name} spreads too widely to fit in {dtype}: {found}, beyond the {np.sqrt(limit):.0e} "
        f"whose square {holder} hold; {advice}{scale} (and scale the fitted model back) "
        "before fitting."
    )


def check_choice(value, name, choices):
    if not isinstance(value, str) or value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {options}, got {value!r}.")


# Seeds are numpy's RandomState seeds: 0 to 2**32 - 1.
MAX_SEED = 2**32 - 1


def check_random_state(seed):
    """A ``numpy.random.RandomState`` from None, an int or a RandomState (as scikit-learn)."""
    if seed is None or seed is np.random:
        return np.random.mtrand._rand
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        return np.random.RandomState(seed)
    if isinstance(seed, np.random.RandomState):
        return seed
    raise ValueError(
        f"random_state must be None, an int or a numpy RandomState, got {seed!r}."
    )


def as_array_of_shape(value, shape, name):
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of numbers of shape {shape}.") from None
    if arr.shape != shape:
        raise ValueError(
            f"The parameter '{name}' should have the shape of {shape}, but got {arr.shape}; "
            "pass one value per component (and feature)."
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity; pass finite values.")
    return arr


def checked_weights(weights, name):
    if (weights < 0).any():
        raise ValueError(f"{name} must lie in [0, 1], got a minimum of {weights.min():.5g}; "
                         "pass proportions.")
    if not np.isclose(weights.sum(), 1.0, rtol=0, atol=1e-6):
        raise ValueError(f"{name} must sum to 1, got {weights.sum():.6g}; divide it by its sum.")
    return weights / weights.sum()


def check_positive_definite(matrices, covariance_type, name):
    if covariance_type in ("full", "tied"):
        stacked = matrices if covariance_type == "full" else matrices[np.newaxis]
        if not is_positive_definite(stacked):
            raise ValueError(f"{name} for covariance_type={covariance_type!r} must be symmetric "
                             "positive definite.")
    elif not (matrices > 0).all():
        raise ValueError(f"{name} for covariance_type={covariance_type!r} must be positive.")


def check_dims(dims, size, name, proper=False):
    """Validated distinct indices into ``range(size)`` (negative ones count from the end)."""
    try:
        arr = np.atleast_1d(np.asarray(dims))
    except (TypeError, ValueError):
        arr = np.array([object()])
    if arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must be a non-empty sequence of integer indices, got {dims!r}.")
    if (arr < -size).any() or (arr >= size).any():
        raise ValueError(f"{name} must index into {size} entries (0 to {size - 1}), got {dims!r}.")
    arr = np.where(arr < 0, arr + size, arr).astype(np.intp)
    if len(np.unique(arr)) != len(arr):
        raise ValueError(f"{name} must not repeat an index, got {dims!r}.")
    if proper and len(arr) >= size:
        raise ValueError(f"{name} must leave at least one feature free; condition on fewer than "
                         f"all {size} features.")
    return arr


def check_values(values, n_given, single):
    """Query values as a float64 array of shape (M, n_given)."""
    try:
        arr = np.array(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("values must be numbers; pass an array of shape "
                         f"(n_queries, {n_given}).") from None
    if single:
        arr = arr[np.newaxis] if arr.ndim == 1 else arr
    if arr.ndim != 2 or arr.shape[1] != n_given or (single and arr.shape[0] != 1):
        want = f"({n_given},)" if single else f"(n_queries, {n_given})"
        raise ValueError(f"values must have shape {want}, one value per given feature; got "
                         f"shape {np.shape(values)}.")
    if not np.isfinite(arr).all():
        raise ValueError("values contains NaN or infinity; pass finite numbers.")
    return arr
