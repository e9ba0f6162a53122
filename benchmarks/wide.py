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
    python benchmarks/wide.py --out docs/benchmarks/wide.md   # and wide.png
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc
import warnings

import numpy as np
from report import markdown_table, write_markdown

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


def measure(dims):
    """One row per D: seconds per iteration, traced MiB and mean log-likelihood of each library."""
    from sklearn.mixture import GaussianMixture as Theirs

    from gaussmix import GaussianMixture as Ours

    rows = []
    for d in dims:
        X = wide_data(d)
        ours, theirs = seconds_per_iteration(Ours, X), seconds_per_iteration(Theirs, X)
        (our_mb, our_ll), (their_mb, their_ll) = traced_peak(Ours, X), traced_peak(Theirs, X)
        rows.append({"D": d, "ours": ours, "theirs": theirs, "our_mb": our_mb,
                     "their_mb": their_mb, "our_ll": our_ll, "their_ll": their_ll})
        print(f"{d:5d}  {ours:14.4f}  {theirs:14.4f}  {theirs / ours:5.2f}  {our_mb:11.0f}  "
              f"{their_mb:10.0f}  {our_ll:17.6f}  {their_ll:16.6f}", flush=True)
    return rows


def table(rows):
    header = ["D", "s/iter gaussmix", "s/iter sklearn", "ratio", "traced MiB gaussmix",
              "traced MiB sklearn", "mean log-lik. gaussmix", "mean log-lik. sklearn"]
    return markdown_table(header, [
        [r["D"], f"{r['ours']:.4f}", f"{r['theirs']:.4f}", f"{r['theirs'] / r['ours']:.2f}x",
         f"{r['our_mb']:.0f}", f"{r['their_mb']:.0f}", f"{r['our_ll']:.6f}",
         f"{r['their_ll']:.6f}"] for r in rows])


def plot(rows, path):
    """Seconds per iteration against D, both libraries, log-log, written to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dims = [r["D"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    ax.loglog(dims, [r["ours"] for r in rows], "o-", label="gaussmix")
    ax.loglog(dims, [r["theirs"] for r in rows], "s--", label="scikit-learn")
    ax.set_xlabel("features D (N=600, K=2, full covariances)")
    ax.set_ylabel("seconds per EM iteration")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", default="100,150,200,500,1000,2000")
    parser.add_argument("--out", default=None,
                        help="also write the table as Markdown here, and its plot beside it "
                             "(the same name ending in .png)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    print("    D  s/iter gaussmix  s/iter sklearn  ratio  MB gaussmix  MB sklearn  "
          "log-lik. gaussmix  log-lik. sklearn", flush=True)
    rows = measure(int(value) for value in args.dims.split(","))
    print(table(rows))
    if args.out:
        plot(rows, os.path.splitext(args.out)[0] + ".png")
        threads = os.environ.get("OPENBLAS_NUM_THREADS", "BLAS's default")
        write_markdown(args.out, f"BLAS threads: {threads}.\n\n{table(rows)}")


if __name__ == "__main__":
    main()
