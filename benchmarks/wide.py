"""Wide data: gaussmix against scikit-learn as the number of features grows, side by side in
one run.

N=600 rows of D features (two shifted normal clouds), K=2 full covariances, the same
initial means (``random_from_data``, ``random_state=0``), ``reg_covar=1e-3``. For each D and
each library: seconds per EM iteration (``tol=0``; the best of five fits of 12 iterations less
the best of five of 2, so that set-up and initialisation count for neither), the peak of Python's
traced allocations during an 8-iteration fit (numpy's arrays included) and the final mean
log-likelihood (the same starting point, so both should agree).

Usage::

    python benchmarks/wide.py                 # D = 100 ... 2000, about two minutes on 2 cores
    python benchmarks/wide.py --dims 50,3000
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
import warnings

import numpy as np

N_ROWS = 600
SETTINGS = {"n_components": 2, "covariance_type": "full", "init_params": "random_from_data",
            "random_state": 0, "reg_covar": 1e-3, "tol": 0}


def wide_data(n_features):
    rng = np.random.RandomState(0)
    return rng.normal(size=(N_ROWS, n_features)) + 3.0 * rng.randint(0, 2, size=(N_ROWS, 1))


def seconds_per_iteration(estimator, X, low=2, high=12, repeats=5):
    """Per-iteration seconds: the best of ``repeats`` fits of ``high`` iterations less the best
    of ``repeats`` fits of ``low``, over the iterations between (one fit first, to warm up)."""
    estimator(max_iter=low, **SETTINGS).fit(X)
    best = {low: np.inf, high: np.inf}
    for _ in range(repeats):
        for n_iter in (low, high):
            began = time.perf_counter()
            estimator(max_iter=n_iter, **SETTINGS).fit(X)
            best[n_iter] = min(best[n_iter], time.perf_counter() - began)
    return (best[high] - best[low]) / (high - low)


def traced_peak(estimator, X):
    tracemalloc.start()
    model = estimator(max_iter=8, **SETTINGS).fit(X)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20, model.score(X)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", default="100,150,200,500,1000,2000")
    args = parser.parse_args(argv)
    from sklearn.mixture import GaussianMixture as Theirs

    from gaussmix import GaussianMixture as Ours

    warnings.simplefilter("ignore")
    print("    D  s/iter gaussmix  s/iter sklearn  ratio  MB gaussmix  MB sklearn  "
          "K*D^2 MB  log-lik. gaussmix  log-lik. sklearn")
    for d in (int(value) for value in args.dims.split(",")):
        X = wide_data(d)
        ours, theirs = seconds_per_iteration(Ours, X), seconds_per_iteration(Theirs, X)
        (our_mb, our_ll), (their_mb, their_ll) = traced_peak(Ours, X), traced_peak(Theirs, X)
        print(f"{d:5d}  {ours:14.3f}  {theirs:14.3f}  {theirs / ours:5.2f}  {our_mb:11.0f}  "
              f"{their_mb:10.0f}  {2 * d * d * 8 / 2**20:8.0f}  {our_ll:17.6f}  "
              f"{their_ll:16.6f}")


if __name__ == "__main__":
    main()
