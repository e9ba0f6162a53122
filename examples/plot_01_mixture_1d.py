"""
A 1-D mixture and its weights
=============================

A mixture density is a weighted sum of Gaussian densities. The same three components with
other weights give other shapes; ``GaussianMixture.from_params`` builds a mixture from its
parameters, and ``score_samples`` returns its log-density.
"""

import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import norm

from gaussmix import GaussianMixture

means, stds = np.array([-2.0, 1.0, 4.0]), np.array([0.8, 1.2, 0.6])
x = np.linspace(-5, 7, 600)
fig, axes = plt.subplots(1, 3, figsize=(11, 3), sharey=True)
for ax, weights in zip(axes, ([0.3, 0.5, 0.2], [0.7, 0.2, 0.1], [0.1, 0.2, 0.7])):
    mixture = GaussianMixture.from_params(weights, means[:, None], stds**2,
                                          covariance_type="spherical")
    for w, m, s in zip(weights, means, stds):
        ax.plot(x, w * norm.pdf(x, m, s), "--", lw=1)
    ax.plot(x, np.exp(mixture.score_samples(x[:, None])), "k", lw=2)
    ax.set_title(f"weights {weights}")
    ax.set_xlabel("x")
axes[0].set_ylabel("p(x)")
fig.tight_layout()
