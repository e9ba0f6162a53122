"""Does gaussmix's bounded k-means initialisation cost log-likelihood? Single starts, many seeds.

For each seed, on the camera's dark pixels (K=30, ``reg_covar=1/12``), with ``n_init=1``:

- the k-means inertia (mean squared distance to the nearest centre) of scikit-learn's
  ``KMeans(n_init=1)``, run to convergence, and of gaussmix's initialisation (k-means++ and at
  most ``KMEANS_MAX_ITER`` Lloyd passes);
- the final mean log-likelihood of scikit-learn's and gaussmix's whole fits.

Best-of-``n_init`` results are maxima over starts, noisy from seed to seed; the distribution of
single starts says directly whether one initialisation leads EM to better optima than the other.
From it the script also estimates the expected best of 10 starts (the camera workload's
``n_init=10``) by resampling the single starts: a much less noisy figure than a few best-of-10
fits.

Usage::

    python benchmarks/init_quality.py --seeds 30     # about 4 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
K = 30
REG_COVAR = 1.0 / 12.0


def mean_and_error(values):
    values = np.asarray(values)
    return values.mean(), values.std(ddof=1) / np.sqrt(len(values))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--first-seed", type=int, default=0)
    args = parser.parse_args(argv)
    sys.path.insert(0, HERE)
    import workloads
    from sklearn.cluster import KMeans
    from sklearn.mixture import GaussianMixture as SklearnMixture
    from sklearn.utils import check_random_state

    from gaussmix import GaussianMixture
    from gaussmix._data.chunks import FitData
    from gaussmix._fitting.init import kmeans

    warnings.simplefilter("ignore")
    X = workloads.camera_dark_pixels()
    data = FitData.prepare(X, np.ones(len(X)), len(X))
    source = data.tiled_source(len(X))
    columns = {"sklearn inertia": [], "gaussmix inertia": [], "sklearn log-lik.": [],
               "gaussmix log-lik.": []}
    print("seed  sklearn inertia (Lloyd passes)  gaussmix inertia  sklearn log-lik.  "
          "gaussmix log-lik.")
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        reference = KMeans(K, n_init=1, random_state=seed).fit(X)
        labels, centers = kmeans(source, K, check_random_state(seed), variance=data.variance)
        inertia = float(((source.x - centers[labels]) ** 2).sum(axis=1).mean())
        theirs = SklearnMixture(K, reg_covar=REG_COVAR, random_state=seed).fit(X).score(X)
        ours = GaussianMixture(K, reg_covar=REG_COVAR, random_state=seed).fit(X).score(X)
        row = (reference.inertia_ / len(X), inertia, theirs, ours)
        for name, value in zip(columns, row):
            columns[name].append(value)
        print(f"{seed:4d}  {row[0]:15.2f} ({reference.n_iter_:3d})        {row[1]:16.2f}  "
              f"{row[2]:16.5f}  {row[3]:17.5f}", flush=True)
    print(f"\nmeans over {args.seeds} seeds (± standard error):")
    for name, values in columns.items():
        mean, error = mean_and_error(values)
        print(f"  {name:18s} {mean:12.4f} ± {error:.4f}   (spread {np.std(values, ddof=1):.4f})")
    print("\nexpected best of 10 starts (resampled from the single starts):")
    for name in ("sklearn log-lik.", "gaussmix log-lik."):
        mean, error = expected_best_of(columns[name], 10)
        print(f"  {name:18s} {mean:12.4f} ± {error:.4f}")


def expected_best_of(values, n, draws=20_000, seed=0):
    """Mean of the best of ``n`` starts drawn without replacement from ``values``, with a
    bootstrap standard error (the single starts resampled)."""
    rng = np.random.default_rng(seed)
    values = np.asarray(values)

    def best_of(sample):
        picks = rng.random((draws, len(sample))).argsort(axis=1)[:, :n]
        return sample[picks].max(axis=1).mean()

    estimates = [best_of(values[rng.integers(0, len(values), len(values))]) for _ in range(50)]
    return best_of(values), float(np.std(estimates, ddof=1))


if __name__ == "__main__":
    main()
