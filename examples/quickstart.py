"""
Quick start
===========

Fit a mixture to three blobs, including one tight and far from the others, with weights, and
report the fit.
"""

import numpy as np

from gaussmix import GaussianMixture

rng = np.random.default_rng(0)
X = np.concatenate([
    rng.normal([0.0, 0.0], [1.0, 0.3], size=(600, 2)),
    rng.normal([5.0, 2.0], [0.5, 0.5], size=(300, 2)),
    rng.normal([1e4, 1e4], [0.01, 0.01], size=(100, 2)),  # tight and far away
]).astype(np.float32)
weights = rng.uniform(0.5, 2.0, len(X))

gm = GaussianMixture(n_components=3, random_state=0).fit(X, sample_weight=weights)
order = np.argsort(gm.means_[:, 0])
print(f"converged after {gm.n_iter_} iterations, mean log-likelihood {gm.lower_bound_:.3f}")
for k in order:
    print(f"  weight {gm.weights_[k]:.3f}  mean {np.round(gm.means_[k], 3)}  "
          f"std {np.round(np.sqrt(np.diag(gm.covariances_[k])), 4)}")
samples, labels = gm.sample(5)
print("five samples:\n", np.round(samples, 2))
print("their labels:", labels, " predicted:", gm.predict(samples))
