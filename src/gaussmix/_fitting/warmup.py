"""The warm-up: numba's kernels compiled in a background process by running them on a small
problem through the fit's own functions (the plan, the initialisation, the loop), never by
fitting an estimator, so that a first fit does not wait for the compiler (see
``_kernels.compile`` for the stamp that says they are compiled, and ``fit.Handover``).

``python -m gaussmix._fitting.warmup`` compiles (and stamps) in the foreground.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings

import numpy as np

from .._data.inputs import ARRAY
from .._foundations.covariance import COVARIANCE_TYPES
from .._kernels import compile as stamp
from .fit import InitSpec, Reporter, fit_best, initial_starts, plan_fit

WARMUP_COMPONENTS = 40


def compile_kernels():
    """Compile every kernel a fit or an initialisation may call, for every covariance type,
    with and without missing values, by running two EM iterations on a small problem (float32
    data run the same float64 kernels)."""
    rng = np.random.RandomState(0)
    X = rng.normal(size=(600, 2))
    holes = X.copy()
    holes[::7, 1] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for covariance_type in COVARIANCE_TYPES:
            for data in (X, holes):
                prepared, _ = ARRAY.prepare(data, None, WARMUP_COMPONENTS, "numba")
                plan = plan_fit(prepared, WARMUP_COMPONENTS, backend="numba", reg_covar=1e-6)
                spec = InitSpec(WARMUP_COMPONENTS, covariance_type, "kmeans")
                starts = initial_starts(plan, spec, np.random.RandomState(0), 1)
                fit_best(plan, starts, tol=1e-3, max_iter=2, reporter=Reporter())


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    os.environ["GAUSSMIX_COMPILE"] = "foreground"
    if "--background" in argv:
        with contextlib.suppress(OSError):
            os.nice(19)  # the fit that started it keeps the cores
    try:
        compile_kernels()
        stamp.stamp_compiled()
    finally:
        if "--background" in argv:
            stamp.release_compilation()


if __name__ == "__main__":
    main()
