"""``load``: the estimator a file written by ``save`` holds, of the class it was saved from."""

from __future__ import annotations

import os

from .bayesian import BayesianGaussianMixture
from .io import load_state
from .mixture import GaussianMixture

__all__ = ["load"]


def load(path):
    """Read a mixture written by ``save`` (a ``GaussianMixture`` or a
    ``BayesianGaussianMixture``, as it was saved).

    Loading never executes anything from the file and checks every shape (see
    ``gaussmix.io``).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    GaussianMixture or BayesianGaussianMixture
        Fitted, with the saved parameters, hyper-parameters and fit history.

    Raises
    ------
    FileNotFoundError, ValueError
        As :func:`gaussmix.io.load_state`: a missing, truncated, corrupt, foreign or
        newer-version file, with one sentence saying which.
    """
    state = load_state(path)
    cls = BayesianGaussianMixture if state.estimator == "BayesianGaussianMixture" else (
        GaussianMixture)
    return cls._from_state(state, os.fspath(path))
