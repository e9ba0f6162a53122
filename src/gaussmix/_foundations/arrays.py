"""Recognising arrays of optional libraries without importing them (as einops does)."""

from __future__ import annotations

import sys


def is_dask_array(X):
    """Whether ``X`` is a dask array; dask is never imported here."""
    return "dask" in sys.modules and type(X).__module__.split(".")[0] == "dask" and hasattr(
        X, "to_delayed")


def is_torch_tensor(X):
    """Whether ``X`` is a torch tensor; torch is never imported here."""
    return "torch" in sys.modules and type(X).__module__.split(".")[0] == "torch" and hasattr(
        X, "device")


def is_array_api_array(X):
    """Whether ``X`` is an array of another array-API library (array-api-strict, CuPy, JAX,
    ...): it names its namespace and is neither numpy's, torch's nor dask's."""
    import numpy as np

    return (hasattr(X, "__array_namespace__") and not isinstance(X, np.ndarray)
            and not is_torch_tensor(X) and not is_dask_array(X))
