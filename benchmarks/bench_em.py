"""Per-iteration time and peak memory of gaussmix against scikit-learn, side by side.

Both libraries start from the same initial parameters on the same data and run a fixed number
of EM iterations (tol=0). Times come from runs without memory tracing; peak memory (numpy
allocations traced by tracemalloc, the data itself excluded) from separate one-iteration
runs. Usage::

    python benchmarks/bench_em.py            # both workloads
    python benchmarks/bench_em.py --quick    # smaller data, for a smoke test
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import tracemalloc
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))

import gaussmix  # noqa: E402
from workloads import astronaut_pixels, horse_dark_pixels, spread_start  # noqa: E402


def per_iteration_seconds(cls, X, k, init, n_iter):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        model = cls(k, max_iter=n_iter, tol=0.0, **init).fit(X)
        elapsed = time.perf_counter() - start
    return elapsed / n_iter, model


def peak_mib(cls, X, k, init):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tracemalloc.start()
        cls(k, max_iter=1, tol=0.0, **init).fit(X)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak / 2**20


def machine():
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}"


def main(argv=None):
    from sklearn import __version__ as sklearn_version
    from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data, one iteration each")
    args = parser.parse_args(argv)

    workloads = [
        ("2-D horse dark pixels", horse_dark_pixels, 500),
        ("5-D astronaut 256x256", astronaut_pixels, 1000),
    ]
    print(f"machine: {machine()}, scikit-learn {sklearn_version}, gaussmix {gaussmix.__version__}")
    header = (f"{'workload':24s} {'N':>7s} {'K':>5s} | {'s/iter gaussmix':>15s} "
              f"{'s/iter sklearn':>14s} {'speed-up':>8s} | {'MiB gaussmix':>12s} "
              f"{'MiB sklearn':>11s} {'memory':>7s}")
    print(header)
    print("-" * len(header))
    for name, load, k in workloads:
        X = load()
        if args.quick:
            X = X[:: max(1, len(X) // 5000)]
            k = k // 10
        init = spread_start(X, k)
        ours, _ = per_iteration_seconds(gaussmix.GaussianMixture, X, k, init, 1 if args.quick else 3)
        theirs, _ = per_iteration_seconds(SklearnGaussianMixture, X, k, init, 1)
        mem_ours = peak_mib(gaussmix.GaussianMixture, X, k, init)
        mem_theirs = peak_mib(SklearnGaussianMixture, X, k, init)
        print(f"{name:24s} {len(X):7d} {k:5d} | {ours:15.3f} {theirs:14.3f} "
              f"{theirs / ours:7.1f}x | {mem_ours:12.1f} {mem_theirs:11.1f} "
              f"{mem_theirs / mem_ours:6.1f}x", flush=True)


if __name__ == "__main__":
    main()
