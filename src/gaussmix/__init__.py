"""gaussmix: painless Gaussian mixture models.

A robust, memory-bounded EM with scikit-learn's API. ``import gaussmix`` imports no heavy
library: the estimators and functions below are imported on first use (numpy and scipy
then), so that the command line answers at once and an interrupt during its start is one
line, not a traceback.
"""

from __future__ import annotations

from ._foundations.lazy import lazy_names
from ._version import __version__
from .exceptions import ConvergenceWarning, NotFittedError, RegularizationWarning

# Each public name and the module that defines it.
_LAZY = {
    "BayesianGaussianMixture": ".bayesian",
    "FitProgress": ".mixture",
    "GaussianMixture": ".mixture",
    "GaussianMixtureImputer": ".imputation",
    "SelectionTable": ".selection",
    "load": ".loading",
    "segment": ".segmentation",
    "select": ".selection",
}

__all__ = sorted([*_LAZY, "ConvergenceWarning", "NotFittedError", "RegularizationWarning",
                  "__version__"])

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (8 ms)
if TYPE_CHECKING:  # pragma: no cover - for static analysis only
    from .bayesian import BayesianGaussianMixture
    from .imputation import GaussianMixtureImputer
    from .loading import load
    from .mixture import FitProgress, GaussianMixture
    from .segmentation import segment
    from .selection import SelectionTable, select


__getattr__, __dir__ = lazy_names(__name__, _LAZY)
