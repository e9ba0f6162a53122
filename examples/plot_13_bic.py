"""
Choosing the number of components by BIC
========================================

``select`` fits a grid of mixtures (numbers of components by covariance types), sharing the
data's validation and each k-means clustering, and returns the one with the lowest BIC and
the whole table.
"""

import matplotlib.pyplot as plt
import numpy as np

from gaussmix import select

rng = np.random.default_rng(4)
X = np.concatenate([rng.multivariate_normal(c, [[1, 0.5], [0.5, 1]], 250)
                    for c in ([0, 0], [5, 1], [1, 6], [6, 6])])
best, table = select(X, n_components=range(1, 9), random_state=0)
print("best:", best.n_components, "components,", best.covariance_type)

fig, ax = plt.subplots(figsize=(6, 3.5))
for covariance_type in ("full", "tied", "diag", "spherical"):
    rows = [r for r in table if r["covariance_type"] == covariance_type]
    ax.plot([r["n_components"] for r in rows], [r["score"] for r in rows], "o-",
            label=covariance_type)
ax.set_xlabel("components")
ax.set_ylabel("BIC")
ax.legend()
fig.tight_layout()
