"""
A Dirichlet process switches components off
===========================================

Ten components fitted by EM all carry weight, even where three would do. A Bayesian mixture
with a Dirichlet-process prior on its weights and ten components at most lets the data keep
only those it needs; ``active()`` returns the mixture of those.
"""

import matplotlib.pyplot as plt
import numpy as np

from gaussmix import BayesianGaussianMixture, GaussianMixture

rng = np.random.default_rng(3)
x = np.concatenate([rng.normal(-3, 0.6, 300), rng.normal(0, 0.8, 500),
                    rng.normal(3.5, 0.5, 200)])[:, None]
em = GaussianMixture(10, random_state=0).fit(x)
dp = BayesianGaussianMixture(10, weight_concentration_prior=1e-3, max_iter=500,
                             random_state=0).fit(x)
print("EM weights", np.round(np.sort(em.weights_)[::-1], 3))
print("components the Dirichlet process keeps:", dp.n_active())

fig, axes = plt.subplots(1, 2, figsize=(10, 3), sharey=True)
for ax, model, title in ((axes[0], em, "EM"), (axes[1], dp, "Dirichlet process")):
    ax.bar(range(10), np.sort(model.weights_)[::-1])
    ax.set_title(title)
    ax.set_xlabel("component (by weight)")
axes[0].set_ylabel("weight")
fig.tight_layout()
