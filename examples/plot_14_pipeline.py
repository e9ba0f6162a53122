"""
In a scikit-learn pipeline
==========================

gaussmix's estimators are scikit-learn estimators: here a scaler and a mixture in a
``Pipeline``, the number of components and the covariance type chosen by cross-validated
log-likelihood in ``GridSearchCV``, in two processes.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_wine
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from gaussmix import GaussianMixture

X = load_wine().data[:, [0, 6, 9]]
pipeline = make_pipeline(StandardScaler(), GaussianMixture(random_state=0))
search = GridSearchCV(pipeline, {"gaussianmixture__n_components": range(1, 7),
                                 "gaussianmixture__covariance_type": ["full", "diag"]},
                      cv=5, n_jobs=2).fit(X)
print("best:", search.best_params_)

scores = search.cv_results_["mean_test_score"].reshape(6, 2)
fig, ax = plt.subplots(figsize=(6, 3.5))
for column, name in enumerate(("full", "diag")):
    ax.plot(range(1, 7), scores[:, column], "o-", label=name)
ax.set_xlabel("components")
ax.set_ylabel("held-out mean log-likelihood")
ax.legend()
fig.tight_layout()
