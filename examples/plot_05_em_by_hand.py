"""
EM step by step, from the formulas
==================================

The E-step computes each point's responsibilities r_nk = w_k N(x_n | m_k, S_k) / p(x_n); the
M-step sets w_k to the mean responsibility, m_k to the responsibility-weighted mean and S_k to
the weighted covariance. Written out in numpy for a 1-D mixture, each iteration equals one
iteration of ``GaussianMixture`` started from the same parameters.
"""

import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import norm

from gaussmix import GaussianMixture

rng = np.random.default_rng(2)
x = np.concatenate([rng.normal(-2, 0.7, 300), rng.normal(1.5, 1.0, 500)])
w, m, v = np.array([0.5, 0.5]), np.array([-0.5, 0.5]), np.array([1.0, 1.0])

by_hand, by_gaussmix = [], []
for step in range(1, 16):
    dens = w * norm.pdf(x[:, None], m, np.sqrt(v))             # E-step
    r = dens / dens.sum(axis=1, keepdims=True)
    by_hand.append(np.mean(np.log(dens.sum(axis=1))))         # bound of the old parameters
    nk = r.sum(axis=0)                                         # M-step
    w, m = nk / len(x), (r * x[:, None]).sum(axis=0) / nk
    v = (r * (x[:, None] - m) ** 2).sum(axis=0) / nk + 1e-6
    gm = GaussianMixture(2, covariance_type="spherical", max_iter=step, tol=0.0,
                         weights_init=[0.5, 0.5], means_init=[[-0.5], [0.5]],
                         precisions_init=[1.0, 1.0]).fit(x[:, None])
    by_gaussmix.append(gm.lower_bound_)

print("largest difference of the bounds:", np.max(np.abs(np.subtract(by_hand, by_gaussmix))))
print("means by hand", np.sort(m), "by gaussmix", np.sort(gm.means_[:, 0]))
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(range(1, 16), by_hand, "o-", label="numpy, by hand")
ax.plot(range(1, 16), by_gaussmix, "x--", label="GaussianMixture")
ax.set_xlabel("iteration")
ax.set_ylabel("mean log-likelihood")
ax.legend()
fig.tight_layout()
