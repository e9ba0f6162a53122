"""
Conditionals and marginals
==========================

The algebra of a fitted mixture: ``marginal`` keeps some features, ``condition`` fixes
others and returns the mixture of what remains, whose weights follow how well each
component explains the given values, and ``conditional_mean`` gives E[x2 | x1] for many
values at once.
"""

import matplotlib.pyplot as plt
import numpy as np

from gaussmix import GaussianMixture

rng = np.random.default_rng(1)
x1 = rng.uniform(-3, 3, 2000)
X = np.column_stack([x1, np.sin(2 * x1) + 0.2 * rng.normal(size=x1.size)])
gm = GaussianMixture(8, random_state=0).fit(X)

fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
left.scatter(*X.T, s=2, c="0.7")
grid = np.linspace(-3, 3, 300)
left.plot(grid, gm.conditional_mean([0], grid[:, None])[:, 0], "k", lw=2,
          label="E[x2 | x1]")
left.legend()
left.set_xlabel("x1")
left.set_ylabel("x2")

x2 = np.linspace(-2, 2, 400)[:, None]
for a in (-1.5, 0.0, 1.5):
    slice_ = gm.condition([0], [a])  # a 1-D mixture over x2
    right.plot(x2[:, 0], np.exp(slice_.score_samples(x2)), label=f"p(x2 | x1 = {a})")
right.plot(x2[:, 0], np.exp(gm.marginal([1]).score_samples(x2)), "k--", label="p(x2)")
right.legend()
right.set_xlabel("x2")
fig.tight_layout()
