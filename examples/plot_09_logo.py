"""
The logo recipe
===============

A mark made of a few Gaussians: keep the dark pixels of a picture and drop its midtones and
lights, fit a dozen components with ten initialisations (the best kept), sharpen them by
scaling every covariance by 0.6, and label each cluster.
"""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Ellipse
from skimage import data, transform

from gaussmix import GaussianMixture

grey = transform.resize(data.horse().astype(float), (164, 200), anti_aliasing=True)
rows, cols = np.nonzero(grey < 0.25)               # darks only: midtones and lights dropped
points = np.column_stack([cols, rows]).astype(float)
gm = GaussianMixture(12, n_init=10, random_state=0).fit(points)
mark = gm.scale_covariances(0.6)                     # sharper shapes, same centres

fig, ax = plt.subplots(figsize=(6, 5))
ax.scatter(*points.T, s=1, c=gm.predict(points), cmap="tab20")
for k, (mean, cov) in enumerate(zip(mark.means_, mark.covariances_)):
    values, vectors = np.linalg.eigh(cov)
    angle = np.degrees(np.arctan2(vectors[1, 1], vectors[0, 1]))
    ax.add_patch(Ellipse(mean, *(4 * np.sqrt(values[::-1])), angle=angle, fill=False,
                         lw=2, color=plt.cm.tab20(k / 12)))
    ax.annotate(str(k), mean, ha="center", va="center", weight="bold")
ax.set_xlim(0, 200)
ax.set_ylim(164, 0)
ax.set_aspect("equal")
ax.axis("off")
