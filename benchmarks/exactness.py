"""The hostile cases of exactness, measured against the plain float64 reference.

    python benchmarks/exactness.py [--rows N]

Each case fits (or scores with) gaussmix on its default path and compares what it returns
with ``tests/exactness.py``'s difference-form reference evaluated on the fitted parameters:
the mean log-likelihood (``score``) and ``lower_bound_``, BIC, the largest error of a row's
score relative to the size of its terms, NaN scores, labels that differ from the reference's
where its best two components are more than 1e-6 nats apart, and ``predict`` against
``argmax(predict_proba)``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from gaussmix import BayesianGaussianMixture, GaussianMixture  # noqa: E402
from tests.exactness import model_arrays, reference_bic, reference_of  # noqa: E402


def report(name, model, X, seconds=None):
    ref = reference_of(model, X)
    scores = model.score_samples(X)
    finite = np.isfinite(ref["log_prob"])
    with np.errstate(invalid="ignore"):
        error = np.abs(scores[finite] - ref["log_prob"][finite]) / ref["scale"][finite]
    labels = model.predict(X)
    clear = finite & (ref["margin"] > 1e-6)
    proba_labels = model.predict_proba(X).argmax(axis=1)
    exact_score = float(np.mean(ref["log_prob"]))
    bound = getattr(model, "lower_bound_", np.nan)
    timing = "" if seconds is None else f" ({seconds:.1f} s)"
    print(f"{name}{timing}\n"
          f"  lower_bound_ {bound:.6g}  score {model.score(X):.6g}  exact {exact_score:.6g}\n"
          f"  bic {model.bic(X):.6g}  exact {reference_bic(model, X):.6g}\n"
          f"  largest relative row error {np.nanmax(error):.2g}  NaN scores "
          f"{int(np.isnan(scores).sum())}  -inf where exact is finite "
          f"{int(np.isneginf(scores[finite]).sum())}\n"
          f"  labels off (margin > 1e-6) {int((labels[clear] != ref['labels'][clear]).sum())}"
          f"  predict != argmax(predict_proba) {int((labels != proba_labels).sum())}",
          flush=True)


def timed_fit(model, X, **kwargs):
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, **kwargs)
    return time.perf_counter() - start


def clusters(rng, n):
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10], [20, 20]], dtype=float)
    return np.concatenate([rng.normal(c, 1.0, (n // 5, 2)) for c in centres])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    n = parser.parse_args().rows

    rng = np.random.default_rng(0)
    income = np.column_stack([rng.lognormal(10, 2, n), rng.normal(40, 12, n)])
    model = GaussianMixture(30, random_state=0)
    report("heavy tails: income and age, K=30", model, income, timed_fit(model, income))
    richest = income[[income[:, 0].argmax()]]
    ref = reference_of(model, income)["log_prob"][income[:, 0].argmax()]
    in_batch = model.score_samples(income)[income[:, 0].argmax()]
    print(f"  the richest row scores {in_batch:.6g} among the others, exact {ref:.6g} "
          f"(alone: {model.score_samples(richest)[0]:.6g})")

    pareto = rng.pareto(1.5, (n, 2))
    model = GaussianMixture(30, random_state=0)
    report("heavy tails: Pareto(1.5), K=30", model, pareto, timed_fit(model, pareto))

    base = clusters(rng, n)
    far = np.concatenate([base, [[1e10, 1e10]]])
    model = GaussianMixture(30, random_state=0)
    report("one far row at 1e10 among five unit clusters, K=30", model, far,
           timed_fit(model, far))

    holes = base.copy()
    holes[rng.uniform(size=holes.shape) < 0.1] = np.nan
    holes = np.concatenate([holes, [[1e12, np.nan]]])
    holes[np.isnan(holes).all(axis=1)] = 0.0
    model = GaussianMixture(30, random_state=0)
    report("holes (10%) and one far row at [1e12, NaN], K=30", model, holes,
           timed_fit(model, holes))

    clean = GaussianMixture(30, random_state=0)
    timed_fit(clean, base)
    scored = base.copy()
    scored[n // 2] = 1e155
    report("scoring a clean model's rows with one at 1e155", clean, scored)
    single = base.astype(np.float32)
    clean32 = GaussianMixture(30, random_state=0)
    timed_fit(clean32, single)
    single[n // 2] = 1e10
    report("float32: scoring with one row at 1e10", clean32, single)

    wide = np.concatenate([base, [[1e20, 1e20]]])
    model = GaussianMixture(30, random_state=0, backend="numpy")
    report("numpy path: one far row at 1e20, K=30", model, wide, timed_fit(model, wide))

    small = base[:2000]
    model = BayesianGaussianMixture(n_components=5, mean_prior=[1e200, 1e200],
                                    random_state=0, max_iter=50)
    try:
        seconds = timed_fit(model, small)
        weights, _, covariances = model_arrays(model)
        print(f"Bayesian mean_prior [1e200, 1e200] ({seconds:.1f} s)\n"
              f"  covariance diagonals {np.diagonal(covariances, axis1=1, axis2=2).min():.3g}"
              f" to {np.diagonal(covariances, axis1=1, axis2=2).max():.3g}, "
              f"score {model.score(small):.6g}")
    except ValueError as exc:
        print(f"Bayesian mean_prior [1e200, 1e200]: refused: {exc}")

    denormal = GaussianMixture(5, random_state=0)
    timed_fit(denormal, small, sample_weight=np.full(len(small), 5e-324))
    unit = GaussianMixture(5, random_state=0)
    timed_fit(unit, small)
    shift = np.abs(np.sort(denormal.means_, axis=0) - np.sort(unit.means_, axis=0)).max()
    print(f"sample weights all 5e-324 against all 1: means differ by {shift:.3g}")


if __name__ == "__main__":
    main()
