import os
import subprocess
import sys

import numpy as np
import pytest

from gaussmix import GaussianMixture
from gaussmix._data import backends
from gaussmix._data.chunks import FitData
from gaussmix._fitting.fit import Handover, plan_fit
from gaussmix._fitting.loop import run_em
from gaussmix._kernels import compile as stamps
from gaussmix._mathematics.em import expectation

from ..conftest import make_blobs


@pytest.fixture
def cold_cache(tmp_path, monkeypatch):
    """A process whose kernels are not compiled: an empty cache folder, background mode,
    and a recorder in place of the compiling process."""
    monkeypatch.delenv("GAUSSMIX_COMPILE", raising=False)
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(stamps, "_ready", {})
    started = []
    monkeypatch.setattr(subprocess, "Popen", lambda argv, **kw: started.append(argv))
    return started


def stamp(group="all"):
    with open(stamps._stamp_path(group), "w") as f:
        f.write("compiled\n")


def many_rows():
    return np.concatenate([make_blobs(n_per=800, seed=s) + 9 * s for s in range(4)])


def test_a_cold_fit_runs_numpy_and_compiles_after(cold_cache):
    X = many_rows()
    assert len(X) * 40 >= backends.NUMBA_MIN_PAIRS
    assert backends.resolve(None, len(X) * 40) == "numpy"
    cold = GaussianMixture(40, random_state=0).fit(X)
    plain = GaussianMixture(40, random_state=0, backend="numpy").fit(X)
    np.testing.assert_array_equal(cold.means_, plain.means_)  # the numpy path, k-means too
    assert cold_cache == [[sys.executable, "-m", "gaussmix._fitting.warmup", "--background"]]
    GaussianMixture(40, random_state=0).fit(X)
    assert len(cold_cache) == 1  # one compiling process at a time (its lock is fresh)
    stamp()
    assert backends.resolve(None, len(X) * 40) == "numba"


def test_a_large_cold_fit_hands_over_once_the_kernels_are_compiled(cold_cache, monkeypatch):
    monkeypatch.setattr(backends, "HANDOVER_PAIRS", 0)
    X = many_rows()
    data = FitData.prepare(X, np.ones(len(X)), chunk_size=4096)
    plan = plan_fit(data, 40, reg_covar=1e-6)
    assert plan.backend == "numpy" and isinstance(plan.expectation, Handover)
    assert len(cold_cache) == 1  # started at once
    params = GaussianMixture(40, random_state=0, max_iter=0, backend="numpy").fit(X)._params()
    params = params.shifted(-plan.shift)

    def compiled_after_two(n_iter, bound, change, params):
        if n_iter == 2:
            stamp()

    handed = run_em(plan.source, params, plan.maximum_likelihood(), tol=0.0, max_iter=6,
                    expectation=plan.expectation, on_iteration=compiled_after_two)
    assert plan.expectation.handed_over_at == 2
    numpy_only = run_em(plan.source, params, plan.maximum_likelihood(), tol=0.0, max_iter=6)
    np.testing.assert_allclose(handed.lower_bounds, numpy_only.lower_bounds, rtol=1e-10)
    np.testing.assert_allclose(handed.params.means, numpy_only.params.means, rtol=1e-8,
                               atol=1e-10)


def test_explicit_numba_and_foreground_mode_compile_in_process(cold_cache, monkeypatch):
    assert backends.resolve("numba") == "numba"
    monkeypatch.setenv("GAUSSMIX_COMPILE", "foreground")
    assert backends.resolve(None, 10**9) == "numba"
    assert cold_cache == []


def test_an_unwritable_cache_compiles_on_first_use(cold_cache, monkeypatch):
    monkeypatch.setattr(stamps, "can_compile_in_background", lambda: False)
    assert backends.resolve(None, 10**9) == "numba"
    assert not backends.kernels_pending(None, 10**9)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_fits_on_complete_rows_take_the_kernels_once_the_core_is_compiled(cold_cache):
    X = many_rows()
    holes = X.copy()
    holes[::5, 0] = np.nan
    stamp("core")
    assert backends.resolve(None, len(X) * 40) == "numba"
    assert backends.resolve(None, len(X) * 40, holes=True) == "numpy"
    assert FitData.prepare(X, np.ones(len(X)), 4096).backend_for(None, 40) == "numba"
    gm = GaussianMixture(40, random_state=0, max_iter=3).fit(holes)
    assert cold_cache  # rows with holes: numpy now, their kernels compile in the background
    assert np.isfinite(gm.means_).all()
    stamp("all")
    assert backends.resolve(None, len(X) * 40, holes=True) == "numba"


def test_a_large_cold_fit_hands_over_at_the_core_stamp(cold_cache, monkeypatch):
    monkeypatch.setattr(backends, "HANDOVER_PAIRS", 0)
    X = many_rows()
    plan = plan_fit(FitData.prepare(X, np.ones(len(X)), chunk_size=4096), 40, reg_covar=1e-6)
    params = GaussianMixture(40, random_state=0, max_iter=0, backend="numpy").fit(X)._params()
    plan.expectation(plan.source, params.shifted(-plan.shift))
    stamp("core")
    plan.expectation(plan.source, params.shifted(-plan.shift))
    assert plan.expectation.handed_over_at == 1


def test_the_warm_up_runs_the_kernels_without_an_estimator():
    script = ("import sys; from gaussmix._fitting import warmup; "
              "warmup.compile_kernels('core'); warmup.compile_kernels('holes'); "
              "print(sorted(m for m in sys.modules if m in ('gaussmix.mixture', "
              "'gaussmix.bayesian', 'sklearn')))")
    env = {**os.environ, "GAUSSMIX_COMPILE": "foreground"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, check=True, timeout=600)
    assert out.stdout.strip() == "[]"


def test_the_stamp_names_the_versions_and_the_kernels():
    import numba

    name = stamps._stamp_name()

    import gaussmix

    assert name.startswith(f".gaussmix-kernels-{gaussmix.__version__}-numba{numba.__version__}-")


@pytest.mark.slow
def test_the_compiling_process_leaves_its_stamp(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    env.pop("GAUSSMIX_COMPILE", None)
    subprocess.run([sys.executable, "-m", "gaussmix._fitting.warmup"], env=env, check=True,
                   timeout=600)
    script = "from gaussmix._kernels import compile; print(compile.kernels_ready())"
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "True"
    stamps_left = [name for name in os.listdir(tmp_path) if name.startswith(".gaussmix-kernels-")]
    assert len(stamps_left) == 2 and any(name.endswith("-core") for name in stamps_left)


def test_the_kernels_take_over_in_the_middle_of_a_numpy_pass(cold_cache, monkeypatch):
    monkeypatch.setattr(backends, "HANDOVER_PAIRS", 0)
    X = many_rows()
    plan = plan_fit(FitData.prepare(X, np.ones(len(X)), chunk_size=512), 40, chunk_size=512,
                    reg_covar=1e-6)
    params = GaussianMixture(40, random_state=0, max_iter=0, backend="numpy").fit(X)._params()
    params = params.shifted(-plan.shift)
    passes = []

    def numpy_pass(source, params):  # the stamp arrives after the third chunk
        for i, _ in enumerate(source):
            if i == 2:
                stamp("core")
        passes.append(True)
        return expectation(plan.source, params)

    plan.expectation.numpy_expectation = numpy_pass
    stats = plan.expectation(plan.source, params)
    assert plan.expectation.handed_over_at == 0 and not passes  # the pass did not finish
    kernel = plan.data.expectation_for("numba")(plan.data.fit_source("numba", 512), params)
    np.testing.assert_allclose(stats.x_sum, kernel.x_sum, rtol=1e-12)


@pytest.mark.slow
def test_the_warm_up_compiles_the_video_kernel_into_the_cache(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "GAUSSMIX_COMPILE": "foreground"}
    subprocess.run([sys.executable, "-c", "from gaussmix._fitting import warmup; "
                    "warmup.compile_video_kernels()"], env=env, check=True, timeout=600)
    script = ("import numpy as np; from gaussmix.video import BackgroundModel; "
              "from gaussmix._kernels import background as b; "
              "BackgroundModel().apply(np.zeros((3, 4, 3), np.uint8)); "
              "BackgroundModel().apply(np.zeros((3, 4), np.float32)); "
              "s = b._apply.kernel.stats; print(sum(s.cache_hits.values()), "
              "sum(s.cache_misses.values()))")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, check=True, timeout=600)
    assert out.stdout.split() == ["2", "0"]
