"""
Underflow and the log domain
============================

Far from every component, each Gaussian density underflows to 0 in float64, and the
textbook responsibilities w_k p_k / sum_j w_j p_j become 0 / 0 = NaN. Working with log
densities and the log-sum-exp trick keeps them exact; gaussmix scores such points as any
other.
"""

import matplotlib.pyplot as plt
import numpy as np
from scipy.special import logsumexp
from scipy.stats import norm

from gaussmix import GaussianMixture

weights, means, stds = np.array([0.6, 0.4]), np.array([0.0, 3.0]), np.array([0.5, 0.5])
x = np.linspace(-60, 60, 241)

with np.errstate(invalid="ignore"):
    dens = weights * norm.pdf(x[:, None], means, stds)
    naive = dens[:, 1] / dens.sum(axis=1)                      # NaN where both underflow
log_dens = np.log(weights) + norm.logpdf(x[:, None], means, stds)
stable = np.exp(log_dens[:, 1] - logsumexp(log_dens, axis=1))
gm = GaussianMixture.from_params(weights, means[:, None], stds**2,
                                 covariance_type="spherical")
ours = gm.predict_proba(x[:, None])[:, 1]

print(f"naive: {np.isnan(naive).sum()} NaN of {x.size}; gaussmix: "
      f"{np.isnan(ours).sum()} NaN, largest difference from log-sum-exp "
      f"{np.max(np.abs(ours - stable)):.1e}")
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(x, stable, "k", lw=3, label="log-sum-exp")
ax.plot(x, ours, "y--", lw=2, label="gaussmix")
ax.plot(x, naive, "r.", label="textbook formula (missing: NaN)")
ax.set_xlabel("x")
ax.set_ylabel("responsibility of the component at 3")
ax.legend()
fig.tight_layout()
