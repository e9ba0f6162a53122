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
