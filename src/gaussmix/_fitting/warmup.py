"""The warm-up: numba's kernels compiled in a background process by running them on a small
problem through the fit's own functions (the plan, the initialisation, the loop), never by
fitting an estimator, so that a first fit does not wait for the compiler (see
``_kernels.compile`` for the stamps that say they are compiled, and ``fit.Handover``). What
fits on complete rows need compiles first, and is stamped as soon as it is ready; the kernels
of rows with missing entries and of the video background model follow.

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
from .._kernels.numba_estep import fused_scores
from .fit import InitSpec, Reporter, fit_best, initial_starts, plan_fit

WARMUP_COMPONENTS = 40


def compile_kernels(group):
    """Compile the kernels of ``group`` by running two EM iterations on a small problem for
    every covariance type (float32 data run the same float64 kernels): 'core', what a fit on
    complete rows, its k-means and scoring run; 'holes', the kernels of rows with missing
    entries."""
    rng = np.random.RandomState(0)
    X = rng.normal(size=(600, 2))
    if group == "holes":
        X[::7, 1] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for covariance_type in COVARIANCE_TYPES:
            prepared, _ = ARRAY.prepare(X, None, WARMUP_COMPONENTS, "numba")
            plan = plan_fit(prepared, WARMUP_COMPONENTS, backend="numba", reg_covar=1e-6)
            spec = InitSpec(WARMUP_COMPONENTS, covariance_type, "kmeans")
            starts = initial_starts(plan, spec, np.random.RandomState(0), 1)
            best = fit_best(plan, starts, tol=1e-3, max_iter=2, reporter=Reporter())
            if group == "core":  # scoring, and a conditional mean's sums in the same pass
                fused_scores(X, best.params)
                fused_scores(X, best.params, np.ones((WARMUP_COMPONENTS, 3)))


def compile_video_kernels():
    """Compile the background model's kernel for uint8 and float frames (``gaussmix track``'s
    first frame would otherwise wait for it)."""
    from .._kernels import background

    settings = np.zeros(background.N_SETTINGS)
    settings[background.ALPHA] = 0.5
    for dtype in (np.uint8, np.float32):
        state = (np.zeros((4, 2), np.float32), np.zeros((4, 2, 3), np.float32),
                 np.zeros((4, 2), np.float32), np.zeros(4, np.int32))
        background.apply(np.zeros((4, 3), dtype), *state, settings)
        background.background_values(state[0], state[1], state[3], 0.9)


def main(argv=None):
    """Compile what fits on complete rows need first and say so (a fit running meanwhile
    hands over to them then), then the kernels of rows with missing entries."""
    argv = sys.argv[1:] if argv is None else argv
    os.environ["GAUSSMIX_COMPILE"] = "foreground"
    if "--background" in argv:
        with contextlib.suppress(OSError):
            os.nice(19)  # the fit that started it keeps the cores
    try:
        compile_kernels("core")
        stamp.stamp_compiled("core")
        compile_kernels("holes")
        compile_video_kernels()
        stamp.stamp_compiled("all")
    finally:
        if "--background" in argv:
            stamp.release_compilation()


if __name__ == "__main__":
    main()
