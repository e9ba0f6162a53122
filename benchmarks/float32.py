"""float32 against float64 data in gaussmix: seconds per EM iteration, side by side in one run.

Each workload of ``run.py`` (horse K=500, astronaut 256x256 K=1000, camera K=30) runs 10 EM
iterations (``tol=0``) from the same initial parameters in both dtypes; the best of three
runs is kept. Prints the time per iteration, the ratio, the final mean log-likelihood of both
and the largest difference between their means.

Usage::

    python benchmarks/float32.py        # about a minute on 2 cores
"""

from __future__ import annotations

import os
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REG_COVAR = 1.0 / 12.0
ITERATIONS = 10


def seconds_per_iteration(X, k, start):
    from gaussmix import GaussianMixture

    model = GaussianMixture(k, reg_covar=REG_COVAR, max_iter=1, tol=0, **start).fit(X)  # warm
    best = np.inf
    for _ in range(3):
        began = time.perf_counter()
        model = GaussianMixture(k, reg_covar=REG_COVAR, max_iter=ITERATIONS, tol=0,
                                **start).fit(X)
        best = min(best, (time.perf_counter() - began) / ITERATIONS)
    return best, model


def main():
    sys.path.insert(0, HERE)
    import workloads

    warnings.simplefilter("ignore")
    cases = [("horse", workloads.horse_dark_pixels(), 500),
             ("astronaut-256", workloads.astronaut_pixels(size=256), 1000),
             ("camera", workloads.camera_dark_pixels(), 30)]
    print("workload        s/iter float64  s/iter float32  ratio  log-lik. float64  "
          "log-lik. float32  max |mean difference|")
    for name, X, k in cases:
        start = workloads.spread_start(X, k)
        results = {}
        for dtype in (np.float64, np.float32):
            typed = {key: value.astype(dtype) for key, value in start.items()}
            seconds, model = seconds_per_iteration(X.astype(dtype), k, typed)
            results[dtype] = (seconds, model.score(X), model.means_.astype(np.float64))
        (t64, ll64, m64), (t32, ll32, m32) = results[np.float64], results[np.float32]
        print(f"{name:15s} {t64:14.4f}  {t32:14.4f}  {t64 / t32:5.2f}  {ll64:16.6f}  "
              f"{ll32:16.6f}  {np.abs(m64 - m32).max():.1e}")


if __name__ == "__main__":
    main()
