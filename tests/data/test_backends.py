import numpy as np
import pytest

import gaussmix._data.backends as backends
from gaussmix import GaussianMixture


def test_auto_picks_numba_for_large_problems_only():
    assert backends.resolve(None, 10) == "numpy"
    assert backends.resolve("auto", backends.NUMBA_MIN_PAIRS) == "numba"
    assert backends.resolve(None) == "numba"
    assert backends.resolve("numpy", 10**9) == "numpy"
    assert backends.resolve("numba", 10) == "numba"


def test_backend_errors(monkeypatch):
    with pytest.raises(ValueError, match="backend must be None, 'auto', 'numpy', 'numba' or "
                                         "'torch'"):
        backends.resolve("cuda")
    monkeypatch.setattr(backends, "numba_available", lambda: False)
    assert backends.resolve(None, 10**9) == "numpy"
    with pytest.raises(ValueError, match="needs numba; install it"):
        backends.resolve("numba")


def test_kernel_threads_limits_blas():
    from threadpoolctl import threadpool_info

    assert any(p["user_api"] == "blas" for p in threadpool_info()), "numpy's BLAS not seen"
    with backends.kernel_threads():
        blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
        assert blas and all(p["num_threads"] == 1 for p in blas)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_both_backends_fit_the_same_model(covariance_type):
    rng = np.random.RandomState(0)
    X = np.concatenate([rng.randn(400, 2) + c for c in ([0, 0], [8, 0], [0, 8], [8, 8])])
    kw = dict(covariance_type=covariance_type, random_state=0, tol=1e-8, max_iter=500)
    a = GaussianMixture(4, backend="numpy", **kw).fit(X)
    b = GaussianMixture(4, backend="numba", **kw).fit(X)
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-8)
    np.testing.assert_allclose(a.covariances_, b.covariances_, rtol=1e-7)
    np.testing.assert_allclose(a.score_samples(X), b.score_samples(X), rtol=1e-10)


def test_import_gaussmix_imports_no_heavy_libraries():
    import subprocess
    import sys

    code = ("import sys, gaussmix; heavy = [m for m in ('numba', 'torch', 'dask', 'sklearn', "
            "'matplotlib', 'skimage') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
