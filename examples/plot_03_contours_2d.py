"""
Contours of a 2-D mixture
=========================

A mixture fitted to 2-D points, its log-density as contours, and each component's
two-standard-deviation ellipse.
"""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Ellipse

from gaussmix import GaussianMixture

rng = np.random.default_rng(0)
X = np.concatenate([rng.multivariate_normal([0, 0], [[1, 0.8], [0.8, 1]], 400),
                    rng.multivariate_normal([4, 0], [[0.3, 0], [0, 1.5]], 300),
                    rng.multivariate_normal([2, 4], [[1.5, -0.4], [-0.4, 0.4]], 300)])
gm = GaussianMixture(3, random_state=0).fit(X)

xx, yy = np.meshgrid(np.linspace(-4, 7, 200), np.linspace(-4, 7, 200))
log_p = gm.score_samples(np.column_stack([xx.ravel(), yy.ravel()])).reshape(xx.shape)

fig, ax = plt.subplots(figsize=(6, 5))
ax.scatter(*X.T, s=3, c="0.6")
contours = ax.contour(xx, yy, log_p, levels=np.linspace(-12, log_p.max(), 12), cmap="magma")
fig.colorbar(contours, label="log p(x)")
for mean, cov in zip(gm.means_, gm.covariances_):
    values, vectors = np.linalg.eigh(cov)
    angle = np.degrees(np.arctan2(vectors[1, 1], vectors[0, 1]))
    ax.add_patch(Ellipse(mean, *(4 * np.sqrt(values[::-1])), angle=angle, fill=False, lw=2))
ax.set_aspect("equal")
