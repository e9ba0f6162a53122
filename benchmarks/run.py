"""gaussmix against scikit-learn, side by side in one run, on picture workloads.

For every workload both libraries run, each in its own process (so that peak memory is the
run's own):

- per-iteration time: EM iterations (tol=0) from the same initial parameters (random rows as
  means, equal weights, 1% of the data's variance), timed for two iteration counts and
  differenced, ``(t(n_hi) - t(n_lo)) / (n_hi - n_lo)``, so that what a fit costs once
  (checks, set-up, tiling, and scikit-learn's extra E-step after the last iteration) counts
  for neither library;
- whole fit: default settings (k-means initialisation, tol=1e-3, max_iter=100) from
  ``random_state`` 0, 1, 2 (0 to 9 for the camera, 0 for the 256x256 picture; ``--seeds``):
  mean seconds, mean
  iterations and the mean of the final mean log-likelihood of the data with its standard
  error (different seeds reach different local optima, so one seed says little about
  quality);
- peak memory: the growth of the process's peak resident memory during the fit
  (``/proc/self/clear_refs``, Linux).

All workloads use ``reg_covar=1/12`` (a pixel is a unit square), in both libraries. The
largest picture is too slow for scikit-learn's whole fit: it is timed on two iterations only.

Usage::

    python benchmarks/run.py                    # everything (about an hour on 2 cores)
    python benchmarks/run.py --only camera      # one workload
    python benchmarks/run.py --quick            # small sizes: a smoke test of the harness
    python benchmarks/run.py --out results.md   # also write the table as Markdown
    python benchmarks/run.py --bayesian         # BayesianGaussianMixture against scikit-learn's
    python benchmarks/run.py --against OLD/src  # against another gaussmix (a checkout's src)

With ``--bayesian`` both libraries fit their ``BayesianGaussianMixture`` (default priors,
Dirichlet process); the per-iteration fits start from the same ``random_from_data`` rows
(``random_state=0``) in each library, and the whole fits use the defaults.

With ``--against SRC`` the other library is gaussmix imported from the folder ``SRC`` (the
``src`` of another checkout: a version before a change), run exactly as this one, so that a
change's cost or gain is measured side by side in one run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

from report import machine, write_markdown

HERE = os.path.dirname(os.path.abspath(__file__))
REG_COVAR = 1.0 / 12.0

# name: (loader, loader args, K, n_init, per-iteration iteration counts
#        ((gaussmix lo, hi), (sklearn lo, hi)), sklearn whole fit?)
WORKLOADS = {
    "horse": ("horse_dark_pixels", {}, 500, 1, ((2, 12), (1, 3)), True),
    "astronaut-128": ("astronaut_pixels", {"size": 128}, 1000, 1, ((2, 12), (1, 3)), True),
    "astronaut-256": ("astronaut_pixels", {"size": 256}, 1000, 1, ((2, 7), (1, 2)), True),
    "astronaut-512": ("astronaut_pixels", {"size": 512}, 1000, 1, ((2, 7), (1, 2)), False),
    "camera": ("camera_dark_pixels", {}, 30, 10, ((5, 25), (2, 7)), True),
}
# Seeds of the whole fits when --seeds is not given: best-of-10 optima of the camera vary by
# about 0.005 in mean log-likelihood from seed to seed, and its fits are cheap enough to
# average ten of them; one scikit-learn fit of the 256x256 picture takes 20 minutes.
DEFAULT_SEEDS = {"camera": 10, "astronaut-256": 1}
DESCRIPTIONS = {
    "horse": "2-D dark pixels of the horse",
    "astronaut-128": "5-D astronaut 128x128",
    "astronaut-256": "5-D astronaut 256x256",
    "astronaut-512": "5-D astronaut 512x512",
    "camera": "2-D dark pixels of the camera, n_init=10",
}


# ---------------------------------------------------------------------------------------------
# Worker: one library, one workload, one mode, in a fresh process


def _peak_rss_reset():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _proc_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def worker(task):
    import warnings


    sys.path.insert(0, HERE)
    import workloads

    warnings.simplefilter("ignore")
    name = task["workload"]
    loader, args, k, n_init, _, _ = WORKLOADS[name]
    X = getattr(workloads, loader)(**args)
    if task.get("quick"):
        X = X[:: max(1, len(X) // 4000)]
        k = max(2, k // 10)
    bayesian = task.get("bayesian", False)
    if task["library"] in ("gaussmix", "baseline"):
        if task["library"] == "baseline":
            sys.path.insert(0, task["source"])
        from gaussmix import BayesianGaussianMixture, GaussianMixture

        # Load the compiled kernels (numba's cache: 50-90 ms once per process) before
        # measuring; a problem this small would otherwise take the numpy path and load nothing.
        GaussianMixture(2, max_iter=2, backend="numba").fit(X[:500])
    else:
        from sklearn.mixture import BayesianGaussianMixture, GaussianMixture

    if task["mode"] == "iter" and bayesian:
        kw = dict(max_iter=task["iterations"], tol=0.0, random_state=0,
                  init_params="random_from_data")
    elif task["mode"] == "iter":
        kw = dict(max_iter=task["iterations"], tol=0.0, **workloads.spread_start(X, k))
    else:
        kw = dict(n_init=n_init, random_state=task.get("seed", 0))
    estimator = BayesianGaussianMixture if bayesian else GaussianMixture
    model = estimator(n_components=k, reg_covar=REG_COVAR, **kw)
    base_kib = _proc_kib("VmRSS")
    _peak_rss_reset()
    start = time.perf_counter()
    model.fit(X)
    seconds = time.perf_counter() - start
    peak_kib = _proc_kib("VmHWM")
    result = {"seconds": seconds, "peak_mib": max(0, peak_kib - base_kib) / 1024.0,
              "n_iter": int(model.n_iter_), "n": int(len(X)), "k": k}
    if task["mode"] != "iter":
        result["ll"] = float(model.score(X))
        result["converged"] = bool(model.converged_)
    print(json.dumps(result))


def run_task(task):
    out = subprocess.run([sys.executable, __file__, "--worker", json.dumps(task)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"worker failed for {task}:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# Orchestration


def ratio(a, b):
    return f"{a / b:.1f}x" if a and b else "-"


def per_iteration(base, iterations):
    """Seconds per EM iteration from fits of ``lo`` and ``hi`` iterations, differenced."""
    lo, hi = iterations
    short = run_task({**base, "mode": "iter", "iterations": lo})
    long = run_task({**base, "mode": "iter", "iterations": hi})
    return {**long, "per_iter": max(0.0, long["seconds"] - short["seconds"]) / (hi - lo),
            "iterations": [lo, hi], "seconds_lo_hi": [short["seconds"], long["seconds"]]}


def measure(name, quick, seeds, bayesian=False, against=None):
    """One workload's row; ``against``: the source folder of another gaussmix to run in
    scikit-learn's place (its slot of the row is still named "sklearn")."""
    _, _, _, _, (iters_ours, iters_theirs), sklearn_fit = WORKLOADS[name]
    row = {"workload": name, "seeds": seeds}
    other = ("sklearn", iters_theirs, sklearn_fit) if against is None else (
        "baseline", iters_ours, True)
    for slot, (library, iterations, whole_fit) in (("gaussmix", ("gaussmix", iters_ours, True)),
                                                   ("sklearn", other)):
        base = {"library": library, "workload": name, "quick": quick, "bayesian": bayesian,
                "source": against}
        row[slot] = {"iter": per_iteration(base, iterations)}
        if whole_fit:
            fits = [run_task({**base, "mode": "fit", "seed": seed}) for seed in range(seeds)]
            row[slot]["fit"] = {
                "seconds": sum(f["seconds"] for f in fits) / len(fits),
                "n_iter": sum(f["n_iter"] for f in fits) / len(fits),
                "ll": sum(f["ll"] for f in fits) / len(fits),
                "ll_se": _standard_error([f["ll"] for f in fits]),
                "lls": [f["ll"] for f in fits],
                "peak_mib": fits[0]["peak_mib"],
            }
    return row


def _standard_error(values):
    n = len(values)
    if n < 2:
        return float("nan")
    mean = sum(values) / n
    return (sum((v - mean) ** 2 for v in values) / (n - 1) / n) ** 0.5


def _log_lik(fit):
    se = fit.get("ll_se", float("nan"))
    return f"{fit['ll']:.4f}" if math.isnan(se) else f"{fit['ll']:.4f} ± {se:.4f}"


def format_rows(rows, other="sklearn"):
    """The Markdown table; ratios are the other library's over gaussmix's."""
    header = ("| workload | N | K | s/iter gaussmix | s/iter sklearn | per-iteration | "
              "fit s gaussmix | fit s sklearn | whole fit | peak MiB gaussmix | "
              "peak MiB sklearn | memory | "
              "mean log-lik. gaussmix (± s.e.) | mean log-lik. sklearn (± s.e.) | seeds |"
              ).replace("sklearn", other)
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    # whole-fit columns are means over the seeds
    for row in rows:
        ours, theirs = row["gaussmix"], row["sklearn"]
        of, tf = ours.get("fit"), theirs.get("fit")
        mem_ours = (of or ours["iter"])["peak_mib"]
        mem_theirs = (tf or theirs["iter"])["peak_mib"]
        lines.append(
            f"| {DESCRIPTIONS[row['workload']]} | {ours['iter']['n']:,} | {ours['iter']['k']} | "
            f"{ours['iter']['per_iter']:.3f} | {theirs['iter']['per_iter']:.3f} | "
            f"{ratio(theirs['iter']['per_iter'], ours['iter']['per_iter'])} | "
            f"{of['seconds']:.1f} ({of['n_iter']:.0f} it.) | "
            + (f"{tf['seconds']:.1f} ({tf['n_iter']:.0f} it.) | "
               f"{ratio(tf['seconds'], of['seconds'])}"
               if tf else "not run | -")
            + f" | {mem_ours:.0f} | {mem_theirs:.0f}{'' if tf else ' (2 it.)'} | "
            f"{ratio(mem_theirs, mem_ours)} | {_log_lik(of)} | "
            + (f"{_log_lik(tf)} |" if tf else "- |")
            + f" {row['seeds']} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=None, help="comma-separated workloads "
                        f"({','.join(WORKLOADS)})")
    parser.add_argument("--quick", action="store_true", help="small sizes (harness smoke test)")
    parser.add_argument("--seeds", type=int, default=None,
                        help="seeds of the whole fits (default 3; 10 for the camera)")
    parser.add_argument("--out", default=None, help="also write the results as Markdown here")
    parser.add_argument("--bayesian", action="store_true",
                        help="BayesianGaussianMixture in both libraries")
    parser.add_argument("--against", default=None, metavar="SRC",
                        help="run gaussmix from this source folder in scikit-learn's place")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return
    names = list(WORKLOADS) if args.only is None else args.only.split(",")
    print(f"machine: {machine()}" + (" (BayesianGaussianMixture)" if args.bayesian else ""),
          flush=True)
    rows = []
    for name in names:
        start = time.perf_counter()
        seeds = args.seeds if args.seeds is not None else DEFAULT_SEEDS.get(name, 3)
        rows.append(measure(name, args.quick, seeds, args.bayesian, args.against))
        print(f"{name}: measured in {time.perf_counter() - start:.0f} s", flush=True)
        print(json.dumps(rows[-1]), flush=True)
    table = format_rows(rows, "sklearn" if args.against is None else "baseline")
    print(table)
    if args.out:
        write_markdown(args.out, table)


if __name__ == "__main__":
    main()
