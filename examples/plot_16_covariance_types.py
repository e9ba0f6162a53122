"""
The four covariance types
=========================

The same data fitted with each ``covariance_type``: ``'full'`` gives each component its own
ellipse, ``'tied'`` one ellipse shape shared by all components, ``'diag'`` ellipses aligned
with the axes, ``'spherical'`` circles. The ellipses are two standard deviations; the title
gives the number of free parameters and the BIC (lower is better).
"""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Ellipse

from gaussmix import GaussianMixture

rng = np.random.default_rng(2)
X = np.concatenate([
    rng.multivariate_normal([0, 0], [[3.0, 1.6], [1.6, 1.2]], 400),
    rng.multivariate_normal([6, 3], [[0.4, -0.3], [-0.3, 1.5]], 300),
    rng.multivariate_normal([1, 6], [[0.3, 0.0], [0.0, 0.3]], 200),
])


def full_covariances(model):
    """Each component's (D, D) covariance, whatever the type: (K, D, D)."""
    k, d = model.means_.shape
    c = model.covariances_
    if model.covariance_type == "full":
        return c
    if model.covariance_type == "tied":
        return np.broadcast_to(c, (k, d, d))
    if model.covariance_type == "diag":
        return np.stack([np.diag(v) for v in c])
    return c[:, None, None] * np.eye(d)


def free_parameters(model):
    """Weights (K - 1), means (K D) and the covariances' own count for the type."""
    k, d = model.means_.shape
    per_type = {"full": k * d * (d + 1) // 2, "tied": d * (d + 1) // 2, "diag": k * d,
                "spherical": k}
    return k - 1 + k * d + per_type[model.covariance_type]


fig, axes = plt.subplots(1, 4, figsize=(12, 3.4), sharex=True, sharey=True)
for ax, covariance_type in zip(axes, ("full", "tied", "diag", "spherical")):
    model = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    ax.scatter(X[:, 0], X[:, 1], s=2, c=model.predict(X), cmap="tab10", vmax=9)
    for mean, covariance in zip(model.means_, full_covariances(model)):
        values, vectors = np.linalg.eigh(covariance)
        angle = np.degrees(np.arctan2(vectors[1, 1], vectors[0, 1]))
        ax.add_patch(Ellipse(mean, *(4 * np.sqrt(values[::-1])), angle=angle,
                             fill=False, lw=1.5, color="black"))
    ax.set_title(f"{covariance_type}\n{free_parameters(model)} parameters, "
                 f"BIC {model.bic(X):.0f}", fontsize=10)
    ax.set_aspect("equal")
fig.tight_layout()
