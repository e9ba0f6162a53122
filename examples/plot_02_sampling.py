"""
Sampling from a mixture
=======================

A draw picks a component by its weight, then draws from that component's Gaussian.
``sample`` returns the points and the component each came from.
"""

import matplotlib.pyplot as plt
import numpy as np

from gaussmix import GaussianMixture

mixture = GaussianMixture.from_params(
    [0.5, 0.3, 0.2], [[0.0, 0.0], [4.0, 1.0], [1.0, 4.0]],
    [[[1.0, 0.6], [0.6, 1.0]], [[0.4, 0.0], [0.0, 0.4]], [[1.5, -0.5], [-0.5, 0.5]]],
    random_state=0)
points, components = mixture.sample(2000)

fig, ax = plt.subplots(figsize=(5, 5))
ax.scatter(*points.T, c=components, s=4, cmap="viridis")
ax.set_title("2000 draws, coloured by their component")
ax.set_aspect("equal")
print(np.bincount(components) / len(components))  # close to the weights
