"""A scikit-learn compatible estimator base that does not import scikit-learn.

``get_params`` / ``set_params`` / ``__repr__`` follow scikit-learn's conventions (constructor
arguments stored unchanged as attributes), so ``sklearn.base.clone``, pipelines and grid
searches work. ``__sklearn_tags__`` imports scikit-learn only when scikit-learn itself asks.
"""

from __future__ import annotations

import inspect


class EstimatorBase:
    """Parameter handling shared by gaussmix estimators."""

    @classmethod
    def _get_param_names(cls):
        signature = inspect.signature(cls.__init__)
        return sorted(
            name
            for name, p in signature.parameters.items()
            if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        )

    def get_params(self, deep=True):
        """Parameters of this estimator, as a dict (``deep`` is accepted for compatibility)."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params):
        """Set parameters by name; returns self."""
        valid = self._get_param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(
                    f"Invalid parameter {name!r} for estimator {type(self).__name__}; valid "
                    f"parameters are {valid}."
                )
            setattr(self, name, value)
        return self

    def __repr__(self):
        signature = inspect.signature(type(self).__init__)
        changed = []
        for name in self._get_param_names():
            default = signature.parameters[name].default
            value = getattr(self, name)
            if value is default:
                continue
            try:
                same = bool(value == default)
            except (TypeError, ValueError):
                same = False
            if not same:
                changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"

    #: Whether NaN in the input are missing values the estimator handles.
    _allows_missing = False

    def __sklearn_tags__(self):
        from sklearn.utils import InputTags, Tags, TargetTags

        return Tags(
            estimator_type="density_estimator",
            target_tags=TargetTags(required=False),
            input_tags=InputTags(allow_nan=self._allows_missing),
        )

    def __sklearn_is_fitted__(self):
        return hasattr(self, "n_features_in_") and hasattr(self, "weights_")
