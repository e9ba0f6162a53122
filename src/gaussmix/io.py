"""Saving and loading fitted mixtures, without pickle.

File format (version 1)
-----------------------
A NumPy ``.npz`` archive (a zip file of ``.npy`` arrays) holding:

``gaussmix.json``
    UTF-8 JSON stored as a uint8 array::

        {"format": "gaussmix-mixture", "version": 1, "gaussmix_version": "0.1.0",
         "covariance_type": "full", "n_components": K, "n_features": D,
         "dtype": "float64", "feature_names": [...] or null,
         "params": {constructor parameters that are plain values},
         "fitted": {"converged_": ..., "n_iter_": ..., "lower_bound_": ...,
                    "lower_bounds_": [...], "n_reseeded_": ..., "n_regularized_": ...}}

``weights`` (K,), ``means`` (K, D), ``covariances``, ``precisions``, ``precisions_cholesky``
    Shapes by covariance type ((K, D, D) full, (D, D) tied, (K, D) diag, (K,) spherical), in
    the model's dtype, so a round trip is bit-exact.

``init_weights``, ``init_means``, ``init_precisions``
    Present only when the model was constructed with array-valued initial parameters.

``param_<name>``
    Other array-valued constructor parameters (a Bayesian mixture's ``mean_prior``,
    ``covariance_prior``), listed with their shapes under ``"param_arrays"`` in the JSON.
    Parameters that are neither plain values nor arrays of numbers (a ``RandomState``, a
    callback) are not saved; ``"unsaved"`` names them, and a loaded model has their
    defaults.

``extra_<name>``
    An estimator's further fitted arrays (a Bayesian mixture's posterior and priors; a
    stream's running statistics, so that a loaded model's ``partial_fit`` continues as the
    saved one's would), listed with their shapes under ``"extra"``; ``"estimator"`` names the
    class (absent: a ``GaussianMixture``).

Loading never executes anything from the file (``allow_pickle=False``) and checks every shape.
Writes go to a temporary file in the same folder that is renamed over ``path`` once complete,
so a crash never leaves a half-written model.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from dataclasses import dataclass, field

import numpy as np

from ._foundations.covariance import (
    COVARIANCE_TYPES,
    covariance_shape,
    is_positive_definite,
    precisions_from_precision_cholesky,
)
from ._foundations.files import atomic_write
from ._version import __version__

FORMAT_NAME = "gaussmix-mixture"
FORMAT_VERSION = 1
METADATA = "gaussmix.json"
PARAM_ARRAYS = {"weights_init": "init_weights", "means_init": "init_means",
                "precisions_init": "init_precisions"}
FITTED_SCALARS = ("converged_", "n_iter_", "lower_bound_", "lower_bounds_", "n_reseeded_",
                  "n_regularized_", "n_missing_", "n_steps_", "weight_concentration_prior_",
                  "mean_precision_prior_", "degrees_of_freedom_prior_")
ESTIMATORS = ("GaussianMixture", "BayesianGaussianMixture")
# The JSON metadata is a few kilobytes; a million feature names fit in this.
MAX_METADATA_BYTES = 64 * 2**20
ARRAYS = ("weights", "means", "covariances", "precisions", "precisions_cholesky")


def _plain(value):
    """A JSON-ready copy of ``value``, or None when it is not a plain value."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    return None


@dataclass(frozen=True)
class ModelState:
    """A fitted mixture as plain values: what a model file holds.

    Attributes
    ----------
    covariance_type : str
    n_features : int
    dtype : str
        Of the parameter arrays.
    params : dict
        Constructor parameters: plain values, and the initial arrays (``weights_init``,
        ``means_init``, ``precisions_init``) as arrays or None.
    arrays : dict of ndarray
        ``weights``, ``means``, ``covariances``, ``precisions``, ``precisions_cholesky``.
    fitted : dict
        The fit history attributes present (``converged_``, ``n_iter_``, ...).
    feature_names : list of str or None
    estimator : str
        The class's name (one of ``ESTIMATORS``).
    extra : dict of ndarray
        The estimator's further fitted arrays, by attribute name without the underscore.
    """

    covariance_type: str
    n_features: int
    dtype: str
    params: dict
    arrays: dict
    fitted: dict
    feature_names: list | None = None
    estimator: str = "GaussianMixture"
    extra: dict = field(default_factory=dict)


def save_state(state, path):
    """Write a :class:`ModelState` to ``path`` (format version 1), atomically.

    Parameters
    ----------
    state : ModelState
    path : str or os.PathLike
        Written as given (no suffix is added; ``.npz`` is a good one).

    Returns
    -------
    unsaved : list of str
        The parameters that could not be saved (neither plain values nor arrays of numbers).
    """
    metadata = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "gaussmix_version": __version__,
        "covariance_type": state.covariance_type,
        "n_components": int(state.arrays["means"].shape[0]),
        "n_features": int(state.n_features),
        "dtype": state.dtype,
        "feature_names": state.feature_names,
        "params": {k: _plain(v) for k, v in state.params.items() if k not in PARAM_ARRAYS},
        "fitted": {k: _fitted_value(v) for k, v in state.fitted.items()
                   if k in FITTED_SCALARS},
        "estimator": state.estimator,
    }
    arrays = {name: state.arrays[name] for name in ARRAYS}
    for param, member in PARAM_ARRAYS.items():
        if state.params.get(param) is not None:
            arrays[member] = np.asarray(state.params[param], dtype=np.float64)
    rest = {k: _numbers(v) for k, v in state.params.items()
            if k not in PARAM_ARRAYS and v is not None and _plain(v) is None}
    other = {k: v for k, v in rest.items() if v is not None}
    unsaved = sorted(k for k, v in rest.items() if v is None)
    metadata["unsaved"] = unsaved
    metadata["param_arrays"] = {k: list(v.shape) for k, v in other.items()}
    arrays.update({f"param_{k}": v for k, v in other.items()})
    metadata["extra"] = {k: list(np.shape(v)) for k, v in state.extra.items()}
    arrays.update({f"extra_{k}": np.asarray(v) for k, v in state.extra.items()})
    arrays[METADATA] = np.frombuffer(json.dumps(metadata).encode("utf-8"), dtype=np.uint8)
    atomic_write(path, lambda f: np.savez(f, **arrays))
    return unsaved


def _numbers(value):
    """``value`` as a float64 array, or None when it is no array of numbers."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return arr if np.isfinite(arr).all() else None


def _fitted_value(value):
    if isinstance(value, list):
        return [float(v) for v in value]
    return _plain(value)


def _refuse(path, why):
    return ValueError(f"Cannot load {os.fspath(path)!r}: {why}.")


def load_state(path):
    """Read a model file written by :func:`save_state` as a :class:`ModelState`.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    ModelState

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        A truncated, corrupt, foreign or newer-version file, with one sentence saying which.
    """
    path = os.fsdecode(os.fspath(path))
    if not os.path.exists(path):
        raise FileNotFoundError(f"No model file at {path!r}; check the path.")
    if os.path.isdir(path):
        raise _refuse(path, "it is a folder, not a model file; pass the path of a file written "
                            "by GaussianMixture.save")
    if not os.path.isfile(path):  # a pipe nobody writes to would block the read forever
        raise _refuse(path, "it is not a regular file (a device, pipe or socket); pass the "
                            "path of a file written by GaussianMixture.save")
    with open(path, "rb") as f:
        signature = f.read(4)
    if signature != b"PK\x03\x04":
        raise _refuse(path, "it is not a gaussmix model file (not a NumPy .npz archive)")
    try:
        with zipfile.ZipFile(path) as archive:
            metadata = _read_metadata(path, _read_member(path, archive, METADATA))
            arrays = _read_arrays(path, archive, metadata)
            initial = {param: _read_member(path, archive, member, _init_shape(member, metadata))
                       for param, member in PARAM_ARRAYS.items()
                       if _has_member(archive, member)}
            initial.update(_read_listed(path, archive, metadata, "param_arrays", "param_"))
            extra = _read_listed(path, archive, metadata, "extra", "extra_")
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError):
        raise _refuse(path, "the file is truncated or corrupt (a broken zip archive)") from None
    _check_mixture(path, arrays, metadata["covariance_type"])
    _check_fitted(path, metadata)
    params = {**metadata["params"], **initial}
    names = metadata.get("feature_names")
    return ModelState(
        covariance_type=metadata["covariance_type"],
        n_features=metadata["n_features"],
        dtype=str(arrays["means"].dtype),
        params=params,
        arrays=arrays,
        fitted={k: v for k, v in metadata.get("fitted", {}).items() if k in FITTED_SCALARS},
        feature_names=None if names is None else list(names),
        estimator=metadata.get("estimator", "GaussianMixture"),
        extra=extra,
    )


def _read_listed(path, archive, metadata, key, prefix):
    """The arrays ``metadata[key]`` lists (name: shape), each read as ``prefix + name``;
    their declared sizes together are bounded by what any mixture of the file's size holds."""
    listed = metadata.get(key, {})
    if not isinstance(listed, dict):
        raise _refuse(path, f"its {key!r} is not a JSON object")
    k, d = metadata["n_components"], metadata["n_features"]
    budget = 8 * (k + 1) * (d * d + d + 8)
    arrays = {}
    for name, shape in listed.items():
        if not (isinstance(name, str) and isinstance(shape, list) and len(shape) <= 3
                and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                        for n in shape)):
            raise _refuse(path, f"its {key!r} lists {name!r} with an invalid shape")
        budget -= int(np.prod(shape, dtype=np.int64))
        if budget < 0:
            raise _refuse(path, f"its {key!r} declares more values than a mixture holds")
        arrays[name] = _read_member(path, archive, prefix + name, tuple(shape))
        if not np.isfinite(arrays[name]).all():
            raise _refuse(path, f"the array {prefix + name!r} holds NaN or infinity")
    return arrays

def read_format_metadata(path, raw, format_name, format_version, foreign):
    """The JSON metadata member ``raw`` (uint8) of a gaussmix file, checked to be of
    ``format_name`` and a version this gaussmix reads (at most ``format_version``); refused
    with one sentence otherwise (``foreign``: why, for a file of another format)."""
    try:
        metadata = json.loads(bytes(np.asarray(raw, dtype=np.uint8)).decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise _refuse(path, "its gaussmix.json is corrupt") from None
    if not isinstance(metadata, dict) or metadata.get("format") != format_name:
        raise _refuse(path, foreign)
    version = metadata.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _refuse(path, "its format version is missing or invalid")
    if version > format_version:
        raise _refuse(path, f"it was written by a newer gaussmix (format version {version}; "
                            f"this one reads up to {format_version}); upgrade gaussmix to load it")
    return metadata


def _read_metadata(path, raw):
    metadata = read_format_metadata(path, raw, FORMAT_NAME, FORMAT_VERSION,
                                    "it is not a gaussmix model file (unknown format name)")
    for key, kind in (("covariance_type", str), ("n_components", int), ("n_features", int),
                      ("params", dict)):
        if not isinstance(metadata.get(key), kind):
            raise _refuse(path, f"its gaussmix.json lacks a valid {key!r}")
    k, d = metadata["n_components"], metadata["n_features"]
    if isinstance(k, bool) or isinstance(d, bool) or k < 1 or d < 1:
        raise _refuse(path, f"it declares {k} components of {d} features; a mixture has at "
                            "least one of each")
    if metadata.get("estimator", "GaussianMixture") not in ESTIMATORS:
        raise _refuse(path, f"it holds an unknown estimator {metadata.get('estimator')!r}; "
                            "upgrade gaussmix to load it")
    if metadata["covariance_type"] not in COVARIANCE_TYPES:
        raise _refuse(path, f"unknown covariance type {metadata['covariance_type']!r}")
    return metadata


def _has_member(archive, name):
    return name + ".npy" in archive.NameToInfo


def _read_member(path, archive, name, shape=None):
    """The array ``name`` of ``archive``, read from its header without trusting it: a member
    whose header declares another shape (or, for the metadata, more than
    ``MAX_METADATA_BYTES``) or an object dtype is refused before its data are read, so no
    forged header or compressed bomb costs memory. Unknown members are never opened."""
    if not _has_member(archive, name):
        if name == METADATA:
            raise _refuse(path, "it is not a gaussmix model file (no gaussmix.json inside); "
                                "save models with GaussianMixture.save")
        raise _refuse(path, f"the array {name!r} is missing")
    with archive.open(name + ".npy") as f:
        try:
            version = np.lib.format.read_magic(f)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}[version]
            declared, fortran, dtype = read_header(f)
        except (ValueError, KeyError, SyntaxError):
            raise _refuse(path, f"the array {name!r} has a corrupt .npy header") from None
        if dtype.hasobject:
            raise _refuse(path, "it contains pickled objects, which gaussmix never loads")
        _check_declared(path, name, declared, dtype, shape)
        n_bytes = int(np.prod(declared, dtype=np.int64)) * dtype.itemsize
        data = f.read(n_bytes)
        if len(data) != n_bytes or f.read(1):
            raise _refuse(path, "the file is truncated or corrupt")
    arr = np.frombuffer(data, dtype=dtype).reshape(declared, order="F" if fortran else "C")
    return arr.astype(dtype.newbyteorder("="), order="C")  # a writable, native copy


def _check_declared(path, name, declared, dtype, shape):
    if name == METADATA:
        if dtype != np.uint8 or len(declared) != 1 or declared[0] > MAX_METADATA_BYTES:
            raise _refuse(path, "its gaussmix.json is corrupt (not a short UTF-8 text)")
    elif declared != shape or dtype.kind != "f" or dtype.itemsize not in (4, 8):
        raise _refuse(path, f"the array {name!r} has shape {declared} and dtype {dtype}, "
                            f"expected {shape} of float32 or float64")


def _init_shape(member, metadata):
    k, d = metadata["n_components"], metadata["n_features"]
    if member == "init_weights":
        return (k,)
    if member == "init_means":
        return (k, d)
    covariance_type = metadata["params"].get("covariance_type")
    if covariance_type not in COVARIANCE_TYPES:
        covariance_type = metadata["covariance_type"]
    return covariance_shape(k, d, covariance_type)


def _read_arrays(path, archive, metadata):
    k, d = metadata["n_components"], metadata["n_features"]
    cov_shape = covariance_shape(k, d, metadata["covariance_type"])
    shapes = {"weights": (k,), "means": (k, d), "covariances": cov_shape,
              "precisions": cov_shape, "precisions_cholesky": cov_shape}
    arrays = {name: _read_member(path, archive, name, shapes[name]) for name in ARRAYS}
    if len({arr.dtype for arr in arrays.values()}) != 1:
        raise _refuse(path, "its parameter arrays do not share one dtype")
    for name, arr in arrays.items():
        if not np.isfinite(arr).all():
            raise _refuse(path, f"the array {name!r} holds NaN or infinity")
    return arrays


def _check_mixture(path, arrays, covariance_type):
    """Refuse parameters that no fit writes: weights that are not positive proportions,
    factors that are not triangular with a positive diagonal, covariances that are not
    positive definite or disagree with the precisions beyond what rounding in the file's
    dtype explains."""
    eps = float(np.finfo(arrays["means"].dtype).eps)
    weights = arrays["weights"].astype(np.float64)
    if not (weights > 0).all():
        raise _refuse(path, f"its weights must be positive, got a minimum of {weights.min():.5g}")
    if abs(weights.sum() - 1.0) > max(1e-6, 4 * weights.size * eps):
        raise _refuse(path, f"its weights must sum to 1, got {weights.sum():.6g}")
    covariances, factors, precisions = (
        arrays[name].astype(np.float64)
        for name in ("covariances", "precisions_cholesky", "precisions"))
    if covariance_type in ("full", "tied"):
        diagonal = np.diagonal(factors, axis1=-2, axis2=-1)
        if not (diagonal > 0).all() or np.tril(factors, -1).any():
            raise _refuse(path, "its precisions_cholesky are not upper triangular with a "
                                "positive diagonal")
        if not is_positive_definite(covariances.reshape(-1, *covariances.shape[-2:])):
            raise _refuse(path, "its covariances are not symmetric positive definite")
    elif not ((factors > 0).all() and (covariances > 0).all()):
        raise _refuse(path, "its covariances and precisions_cholesky must be positive")
    if _relative_gap(precisions, precisions_from_precision_cholesky(factors, covariance_type),
                     covariance_type) > 1e3 * eps:
        raise _refuse(path, "its precisions do not match its precisions_cholesky")
    # Rounding in the file's dtype moves U^T C U by up to about eps times the condition
    # bound; where that reaches O(1) the check cannot tell a forgery from rounding.
    gap, condition = _whitened(covariances, factors, covariance_type)
    tolerance = 1e3 * eps * condition
    if ((tolerance < 0.5) & (gap > tolerance)).any():
        raise _refuse(path, "its covariances do not match its precisions (the inverse of one "
                            "is not the other)")


def _relative_gap(a, b, covariance_type):
    """Largest per-component ``|a - b| / |b|`` (Frobenius norms for matrices)."""
    axes = (-2, -1) if covariance_type in ("full", "tied") else -1
    if covariance_type == "spherical":
        return float(np.max(np.abs(a - b) / np.abs(b)))
    return float(np.max(np.linalg.norm(a - b, axis=axes) / np.linalg.norm(b, axis=axes)))


def _whitened(covariances, factors, covariance_type):
    """Per component, ``||U^T C U - I||`` (zero when ``C`` is the inverse of ``U U^T``) and
    the condition bound ``||C|| ||U||^2`` that scales its rounding error."""
    if covariance_type in ("full", "tied"):
        identity = np.eye(covariances.shape[-1])
        product = np.swapaxes(factors, -1, -2) @ covariances @ factors
        gap = np.linalg.norm(product - identity, axis=(-2, -1))
        condition = (np.linalg.norm(covariances, axis=(-2, -1))
                     * np.linalg.norm(factors, axis=(-2, -1)) ** 2)
        return gap, condition
    return np.abs(covariances * factors**2 - 1.0), np.ones(covariances.shape)


def _check_fitted(path, metadata):
    """Refuse metadata that no save writes: counts, names and fit history of the wrong kind."""
    d = metadata["n_features"]
    names = metadata.get("feature_names")
    if names is not None and not (isinstance(names, list) and len(names) == d
                                  and all(isinstance(n, str) for n in names)
                                  and len(set(names)) == d):
        raise _refuse(path, f"its feature_names must be {d} distinct strings or null")
    fitted = metadata.get("fitted", {})
    if not isinstance(fitted, dict):
        raise _refuse(path, "its fit history ('fitted') is not a JSON object")
    for key, valid in FITTED_KINDS.items():
        if key in fitted and not valid(fitted[key]):
            raise _refuse(path, f"its {key} is {fitted[key]!r}, which no fit produces")


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_bound(value):
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and not np.isnan(value) and value != np.inf)


def _is_real(value):
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and bool(np.isfinite(value)))


FITTED_KINDS = {
    "weight_concentration_prior_": _is_real,
    "mean_precision_prior_": _is_real,
    "degrees_of_freedom_prior_": _is_real,
    "converged_": lambda v: isinstance(v, bool),
    "n_iter_": _is_count,
    "n_reseeded_": _is_count,
    "n_regularized_": _is_count,
    "n_missing_": _is_count,
    "n_steps_": lambda v: _is_count(v) and v >= 1,
    "lower_bound_": _is_bound,
    "lower_bounds_": lambda v: isinstance(v, list) and all(_is_bound(b) for b in v),
}
