"""gaussmix: painless Gaussian mixture models.

A robust, memory-bounded EM with scikit-learn's API. ``import gaussmix`` imports only numpy
and scipy.
"""

from .exceptions import ConvergenceWarning, NotFittedError, RegularizationWarning
from .mixture import GaussianMixture

__version__ = "0.1.0"

__all__ = [
    "ConvergenceWarning",
    "GaussianMixture",
    "NotFittedError",
    "RegularizationWarning",
    "__version__",
]
