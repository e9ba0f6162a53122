"""Exceptions and warnings of gaussmix.

When scikit-learn is already imported, the errors and warnings raised here are also
instances of scikit-learn's classes of the same name, so code (and scikit-learn's own
checks) that catches ``sklearn.exceptions.NotFittedError`` or filters
``sklearn.exceptions.ConvergenceWarning`` treats gaussmix like scikit-learn. gaussmix never
imports scikit-learn itself.
"""

from __future__ import annotations

import sys


class NotFittedError(ValueError, AttributeError):
    """A method that needs a fitted model was called before ``fit``."""


class ConvergenceWarning(UserWarning):
    """EM stopped at ``max_iter`` before the lower bound settled within ``tol``."""


class RegularizationWarning(UserWarning):
    """Some covariances were not positive definite and received extra diagonal."""


_bridged = {}


def compatible(cls):
    """``cls``, or a subclass of ``cls`` and of scikit-learn's class of the same name.

    The subclass is used only when ``sklearn.exceptions`` is already imported.
    """
    sklearn_exceptions = sys.modules.get("sklearn.exceptions")
    other = getattr(sklearn_exceptions, cls.__name__, None)
    if other is None:
        return cls
    if cls not in _bridged:
        _bridged[cls] = type(cls.__name__, (cls, other), {"__module__": cls.__module__})
    return _bridged[cls]


def not_fitted(estimator):
    """The error raised when ``estimator`` is used before fitting."""
    name = type(estimator).__name__
    return compatible(NotFittedError)(
        f"This {name} instance is not fitted yet. Call 'fit' with appropriate arguments "
        "before using this estimator."  # scikit-learn's words: users match on them
    )
