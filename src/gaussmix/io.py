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

Loading never executes anything from the file (``allow_pickle=False``) and checks every shape.
Writes go to a temporary file in the same folder that is renamed over ``path`` once complete,
so a crash never leaves a half-written model.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass

import numpy as np

from ._covariance import COVARIANCE_TYPES, covariance_shape
from ._files import atomic_write
from ._version import __version__

FORMAT_NAME = "gaussmix-mixture"
FORMAT_VERSION = 1
METADATA = "gaussmix.json"
PARAM_ARRAYS = {"weights_init": "init_weights", "means_init": "init_means",
                "precisions_init": "init_precisions"}
FITTED_SCALARS = ("converged_", "n_iter_", "lower_bound_", "lower_bounds_", "n_reseeded_",
                  "n_regularized_")
ARRAYS = ("weights", "means", "covariances", "precisions", "precisions_cholesky")


def _plain(value):
    """A JSON-ready copy of ``value``, or None when it is not a plain value."""
    if value is None or isinstance(value, (bool, str)):
        return value
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
    """

    covariance_type: str
    n_features: int
    dtype: str
    params: dict
    arrays: dict
    fitted: dict
    feature_names: list | None = None


def save_state(state, path):
    """Write a :class:`ModelState` to ``path`` (format version 1), atomically.

    Parameters
    ----------
    state : ModelState
    path : str or os.PathLike
        Written as given (no suffix is added; ``.npz`` is a good one).
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
    }
    arrays = {name: state.arrays[name] for name in ARRAYS}
    for param, member in PARAM_ARRAYS.items():
        if state.params.get(param) is not None:
            arrays[member] = np.asarray(state.params[param], dtype=np.float64)
    arrays[METADATA] = np.frombuffer(json.dumps(metadata).encode("utf-8"), dtype=np.uint8)
    atomic_write(path, lambda f: np.savez(f, **arrays))


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
    if not os.path.exists(path):
        raise FileNotFoundError(f"No model file at {os.fspath(path)!r}; check the path.")
    if os.path.isdir(path):
        raise _refuse(path, "it is a folder, not a model file; pass the path of a file written "
                            "by GaussianMixture.save")
    with open(path, "rb") as f:
        signature = f.read(4)
    if signature != b"PK\x03\x04":
        raise _refuse(path, "it is not a gaussmix model file (not a NumPy .npz archive)")
    if not zipfile.is_zipfile(path):
        raise _refuse(path, "the file is truncated or corrupt (a broken zip archive)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            members = {name: archive[name] for name in archive.files}
    except zipfile.BadZipFile:
        raise _refuse(path, "the file is truncated or corrupt (a broken zip archive)") from None
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise _refuse(path, "it contains pickled objects, which gaussmix never loads") from None
        raise _refuse(path, "the file is truncated or corrupt") from None
    except (OSError, EOFError):
        raise _refuse(path, "the file is truncated or corrupt") from None
    if not isinstance(members, dict) or METADATA not in members:
        raise _refuse(path, "it is not a gaussmix model file (no gaussmix.json inside); save "
                            "models with GaussianMixture.save")
    metadata = _read_metadata(path, members[METADATA])
    arrays = _read_arrays(path, members, metadata)

    params = dict(metadata["params"])
    for param, member in PARAM_ARRAYS.items():
        params[param] = members.get(member)
    names = metadata.get("feature_names")
    return ModelState(
        covariance_type=metadata["covariance_type"],
        n_features=metadata["n_features"],
        dtype=str(arrays["means"].dtype),
        params=params,
        arrays=arrays,
        fitted={k: v for k, v in metadata.get("fitted", {}).items() if k in FITTED_SCALARS},
        feature_names=None if names is None else list(names),
    )


def _read_metadata(path, raw):
    try:
        metadata = json.loads(bytes(np.asarray(raw, dtype=np.uint8)).decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise _refuse(path, "its gaussmix.json is corrupt") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
        raise _refuse(path, "it is not a gaussmix model file (unknown format name)")
    version = metadata.get("version")
    if not isinstance(version, int) or version < 1:
        raise _refuse(path, "its format version is missing or invalid")
    if version > FORMAT_VERSION:
        raise _refuse(path, f"it was written by a newer gaussmix (format version {version}; "
                            f"this one reads up to {FORMAT_VERSION}); upgrade gaussmix to load it")
    for key, kind in (("covariance_type", str), ("n_components", int), ("n_features", int),
                      ("params", dict)):
        if not isinstance(metadata.get(key), kind):
            raise _refuse(path, f"its gaussmix.json lacks a valid {key!r}")
    if metadata["covariance_type"] not in COVARIANCE_TYPES:
        raise _refuse(path, f"unknown covariance type {metadata['covariance_type']!r}")
    return metadata


def _read_arrays(path, members, metadata):
    k, d = metadata["n_components"], metadata["n_features"]
    cov_shape = covariance_shape(k, d, metadata["covariance_type"])
    shapes = {"weights": (k,), "means": (k, d), "covariances": cov_shape,
              "precisions": cov_shape, "precisions_cholesky": cov_shape}
    arrays = {}
    for name in ARRAYS:
        if name not in members:
            raise _refuse(path, f"the array {name!r} is missing")
        arr = members[name]
        if arr.shape != shapes[name] or arr.dtype.kind != "f":
            raise _refuse(path, f"the array {name!r} has shape {arr.shape} and dtype {arr.dtype}, "
                                f"expected {shapes[name]} of floats")
        if not np.isfinite(arr).all():
            raise _refuse(path, f"the array {name!r} holds NaN or infinity")
        arrays[name] = arr
    return arrays
