"""gaussmix: painless Gaussian mixture models.

A robust, memory-bounded EM with scikit-learn's API. ``import gaussmix`` imports only numpy
and scipy.
"""

__version__ = "0.1.0"

from .exceptions import ConvergenceWarning, NotFittedError, RegularizationWarning
from .io import load
from .mixture import FitProgress, GaussianMixture
from .segmentation import segment
from .selection import SelectionTable, select


__all__ = [
    "ConvergenceWarning",
    "FitProgress",
    "GaussianMixture",
    "NotFittedError",
    "RegularizationWarning",
    "SelectionTable",
    "__version__",
    "load",
    "segment",
    "select",
]
