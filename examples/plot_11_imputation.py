"""
Imputation against scikit-learn's imputers
==========================================

A fifth of the diabetes data set's entries are hidden; each imputer fills them and the error
is measured on the hidden entries (standardised columns, so each counts alike).
``GaussianMixtureImputer`` chooses its number of components by BIC on the observed entries.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer

from gaussmix import GaussianMixtureImputer

X = load_diabetes().data
X = (X - X.mean(axis=0)) / X.std(axis=0)
rng = np.random.default_rng(0)
hidden = rng.random(X.shape) < 0.2
holes = np.where(hidden, np.nan, X)

imputers = {"mean": SimpleImputer(), "k nearest": KNNImputer(),
            "iterative": IterativeImputer(random_state=0),
            "gaussmix": GaussianMixtureImputer(random_state=0)}
errors = {name: np.sqrt(np.mean((imputer.fit_transform(holes)[hidden] - X[hidden]) ** 2))
          for name, imputer in imputers.items()}
print({name: round(float(e), 3) for name, e in errors.items()})

fig, ax = plt.subplots(figsize=(6, 3))
ax.barh(list(errors), list(errors.values()), color=["0.6"] * 3 + ["C0"])
ax.set_xlabel("RMSE on the hidden entries (standard deviations)")
fig.tight_layout()
