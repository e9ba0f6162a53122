"""Imputation quality: GaussianMixtureImputer against scikit-learn's IterativeImputer and
KNNImputer, side by side in one run.

    python benchmarks/imputation.py [--seeds 3] [--share 0.2]
    python benchmarks/imputation.py --cost      # per-iteration cost of holes
    python benchmarks/imputation.py --cost --rounds 4   # each ratio the median of 4 rounds
    python benchmarks/imputation.py --out docs/benchmarks/imputation.md

For each data set, ``share`` of the entries are removed completely at random (seeds 0, 1, ...;
a row that loses every entry keeps one), each imputer fills them with its defaults, and the
root mean squared error over the removed entries is reported in units of each column's
standard deviation (so every column counts alike), as a mean over the seeds. Data sets:
clustered synthetic data (six Gaussian clusters in 6-D) and the real tables that ship with
scikit-learn (iris, wine, breast cancer, diabetes), offline.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from report import markdown_table, write_markdown


def clustered(seed=0, n=1500, d=6, k=6):
    rng = np.random.RandomState(100 + seed)
    centres = rng.normal(scale=4.0, size=(k, d))
    parts = []
    for c in centres:
        a = rng.normal(size=(d, d)) * 0.6
        parts.append(rng.multivariate_normal(c, a @ a.T + 0.2 * np.eye(d), n // k))
    return np.concatenate(parts)


def datasets(seed):
    from sklearn import datasets as sk

    return {
        "clustered (6 clusters, 6-D)": clustered(seed),
        "iris": sk.load_iris().data,
        "wine": sk.load_wine().data,
        "breast cancer": sk.load_breast_cancer().data,
        "diabetes": sk.load_diabetes().data,
    }


def remove(X, share, seed):
    rng = np.random.RandomState(seed)
    holes = rng.uniform(size=X.shape) < share
    empty = holes.all(axis=1)
    holes[empty, rng.randint(X.shape[1], size=empty.sum())] = False
    out = X.astype(np.float64).copy()
    out[holes] = np.nan
    return out, holes


def imputers(seed):
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer, KNNImputer

    from gaussmix import GaussianMixtureImputer

    return {
        "gaussmix GaussianMixtureImputer": GaussianMixtureImputer(random_state=seed),
        "sklearn IterativeImputer": IterativeImputer(random_state=seed),
        "sklearn KNNImputer": KNNImputer(),
    }


def per_iteration(X, k, iterations=(2, 12), repeats=3):
    """Seconds per EM iteration from two fits of the same start, differenced (each the best
    of ``repeats``)."""
    from gaussmix import GaussianMixture

    GaussianMixture(k, max_iter=1, random_state=0).fit(X)  # load the kernels first
    times = []
    for n_iter in iterations:
        best = np.inf
        for _ in range(repeats):
            model = GaussianMixture(k, max_iter=n_iter, tol=0.0, random_state=0,
                                    init_params="random_from_data", reg_covar=1.0 / 12.0)
            start = time.perf_counter()
            model.fit(X)
            best = min(best, time.perf_counter() - start)
        times.append(best)
    return (times[1] - times[0]) / (iterations[1] - iterations[0])


def cost(rounds=1):
    """Per-iteration seconds complete and with holes, side by side; with several rounds
    (complete, then with holes, again and again) the medians and the ratios' range."""
    import os
    import sys

    os.environ.setdefault("GAUSSMIX_COMPILE", "foreground")  # time the kernels, not numpy

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import workloads

    pixels = workloads.astronaut_pixels(size=128)
    cases = {"clustered 20,000 × 6, K=50, 10% at random": (clustered(0, n=20_000), 50, None),
             "astronaut 128×128 (5-D), K=1000, 10% at random": (pixels, 1000, None),
             "astronaut 256×256 (5-D), K=1000, 10% at random": (
                 workloads.astronaut_pixels(size=256), 1000, None),
             "astronaut 128×128 (5-D), K=1000, colours under strokes": (pixels, 1000,
                                                                        strokes(128))}
    spread = " (range)" if rounds > 1 else ""
    rows = []
    for name, (X, k, stroke_mask) in cases.items():
        if stroke_mask is None:
            holes, mask = remove(X, 0.10, 0)
        else:  # inpainting: the colours of the painted-over pixels are missing
            holes, mask = X.copy(), np.zeros(X.shape, dtype=bool)
            mask[stroke_mask.ravel(), 2:] = True
            holes[mask] = np.nan
        pairs = [(per_iteration(X, k), per_iteration(holes, k)) for _ in range(rounds)]
        complete, missing = np.median(pairs, axis=0)
        ratios = [with_holes / alone for alone, with_holes in pairs]
        shown = f"{np.median(ratios):.2f}x"
        if rounds > 1:
            shown += f" ({min(ratios):.2f}-{max(ratios):.2f})"
        rows.append([name, f"{1e3 * complete:.2f}", f"{1e3 * missing:.2f}", shown,
                     f"{mask.any(axis=1).mean():.0%}"])
        print(" | ".join(rows[-1]), flush=True)
    return markdown_table(["data", "complete ms/iter", "with holes ms/iter", f"ratio{spread}",
                           "rows with a hole"], rows)


def strokes(size, n_strokes=6, width=1.5, seed=0):
    """A mask of painted-over strokes (gentle curves across the picture), (size, size)."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[:size, :size] / size
    mask = np.zeros((size, size), dtype=bool)
    for _ in range(n_strokes):
        a, b, c, phase = rng.uniform(0.2, 0.8), rng.uniform(-0.3, 0.3), rng.uniform(1, 4), \
            rng.uniform(0, 6)
        curve = a + b * x + 0.08 * np.sin(c * 2 * np.pi * x + phase)
        mask |= np.abs(y - curve) * size < width
    return mask


def quality(seeds, share):
    """The RMSE table: each data set's error and seconds per imputer, means over the seeds."""
    names = list(imputers(0))
    results = {}
    for seed in range(seeds):
        for data_name, X in datasets(seed).items():
            holes_x, holes = remove(X, share, seed)
            scale = X.std(axis=0)
            for name, imputer in imputers(seed).items():
                start = time.perf_counter()
                filled = imputer.fit_transform(holes_x)
                seconds = time.perf_counter() - start
                error = ((filled - X) / scale)[holes]
                row = results.setdefault(data_name, {}).setdefault(name, [])
                row.append((float(np.sqrt(np.mean(error**2))), seconds))
    rows = []
    for data_name, X in datasets(0).items():
        cells, means = [], {}
        for name in names:
            values = results[data_name][name]
            means[name] = np.mean([v[0] for v in values])
            cells.append(f"{means[name]:.3f} ({np.mean([v[1] for v in values]):.1f} s)")
        best_other = min(means[n] for n in names[1:])
        rows.append([data_name, f"{X.shape[0]} × {X.shape[1]}", *cells,
                     f"{100 * (means[names[0]] / best_other - 1):+.0f}%"])
    return (f"{share:.0%} of entries missing at random; RMSE in column standard deviations, "
            f"mean over {seeds} seeds (seconds in brackets).\n\n"
            + markdown_table(["data", "N × D", *names, "gaussmix vs best other"], rows))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--share", type=float, default=0.2)
    parser.add_argument("--cost", action="store_true",
                        help="per-iteration cost of 10%% missing entries instead")
    parser.add_argument("--rounds", type=int, default=1,
                        help="with --cost: rounds of each measurement (medians)")
    parser.add_argument("--out", default=None, help="also write the table as Markdown here")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    table = cost(args.rounds) if args.cost else quality(args.seeds, args.share)
    print(table)
    if args.out:
        write_markdown(args.out, table)

if __name__ == "__main__":
    main()
