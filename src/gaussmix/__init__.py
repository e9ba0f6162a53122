"""gaussmix: painless Gaussian mixture models.

A robust, memory-bounded EM with scikit-learn's API. ``import gaussmix`` imports only numpy
and scipy.
"""

from ._version import __version__
from .bayesian import BayesianGaussianMixture
from .exceptions import ConvergenceWarning, NotFittedError, RegularizationWarning
from .imputation import GaussianMixtureImputer
from .mixture import FitProgress, GaussianMixture, load
from .segmentation import segment
from .selection import SelectionTable, select

__all__ = [
    "BayesianGaussianMixture",
    "ConvergenceWarning",
    "FitProgress",
    "GaussianMixture",
    "GaussianMixtureImputer",
    "NotFittedError",
    "RegularizationWarning",
    "SelectionTable",
    "__version__",
    "load",
    "segment",
    "select",
]
