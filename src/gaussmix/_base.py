"""The base of gaussmix's estimators: scikit-learn's ``BaseEstimator``.

scikit-learn is a dependency, not an extra: the tools that take an estimator (pipelines,
searches, ``clone``, ``set_output``, metadata routing, the notebook's HTML repr) are its own,
and a class becomes one of theirs by inheriting ``BaseEstimator``, which cannot be done
conditionally without two behaviours to support. The price is paid on the first use of an
estimator, not by ``import gaussmix``: ``sklearn.base`` imports scipy.stats (and pandas where
installed), about 0.6 s on a 2-core machine.
"""

from __future__ import annotations

from sklearn.base import BaseEstimator


class EstimatorBase(BaseEstimator):
    """What gaussmix's estimators share beyond ``BaseEstimator``: the tags that state which
    inputs they take."""

    #: Whether NaN in the input are missing values the estimator handles.
    _allows_missing = False

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = self._allows_missing
        tags.target_tags.required = False
        return tags

    def __sklearn_is_fitted__(self):
        return hasattr(self, "n_features_in_") and hasattr(self, "weights_")
