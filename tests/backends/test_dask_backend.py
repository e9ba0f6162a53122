"""Dask arrays: the same fit as in memory, on any scheduler, despite lost workers."""

import os
import threading
import warnings

import numpy as np
import pytest

da = pytest.importorskip("dask.array")

from gaussmix import GaussianMixture  # noqa: E402
from gaussmix.exceptions import ConvergenceWarning  # noqa: E402

from ..conftest import COVARIANCE_TYPES, make_blobs  # noqa: E402

PARAMS = ("weights_", "means_", "covariances_", "precisions_cholesky_")


def start(X, k, covariance_type):
    rng = np.random.RandomState(0)
    d = X.shape[1]
    prec = {"full": np.tile(np.eye(d), (k, 1, 1)), "tied": np.eye(d), "diag": np.ones((k, d)),
            "spherical": np.ones(k)}[covariance_type]
    return dict(weights_init=np.full(k, 1.0 / k), means_init=X[rng.choice(len(X), k, replace=False)],
                precisions_init=prec)


def assert_same(a, b, rtol=1e-10):
    for name in PARAMS:
        x, y = getattr(a, name), getattr(b, name)
        assert np.linalg.norm(x - y) <= rtol * np.linalg.norm(y), name


def fit_quietly(model, X, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, **kw)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_dask_fit_equals_the_in_memory_fit(covariance_type, backend):
    X = make_blobs(n_per=400)
    w = np.random.RandomState(2).uniform(0, 2, len(X))
    kw = dict(covariance_type=covariance_type, max_iter=15, tol=0, backend=backend,
              **start(X, 4, covariance_type))
    ref = fit_quietly(GaussianMixture(4, **kw), X, sample_weight=w)
    Xd = da.from_array(X, chunks=((250, 300, 100, 550), (3,)))  # uneven blocks
    wd = da.from_array(w, chunks=100)
    ours = fit_quietly(GaussianMixture(4, **kw), Xd, sample_weight=wd)
    assert_same(ours, ref)
    assert ours.n_features_in_ == 3 and ours.lower_bound_ == pytest.approx(ref.lower_bound_,
                                                                             rel=1e-10)


def test_dask_default_initialisation_fits_well():
    X = np.concatenate([make_blobs(n_per=500, seed=s) + 10 * s for s in range(3)])
    # Single starts land in different local optima (either way round); compare best of three.
    batch = GaussianMixture(9, n_init=3, random_state=0).fit(X)
    ours = GaussianMixture(9, n_init=3, random_state=0).fit(da.from_array(X, chunks=700))
    assert ours.score(X) >= batch.score(X) - 0.02 * abs(batch.score(X))


def test_inference_on_dask_arrays_is_lazy_and_equal():
    X = make_blobs()
    gm = GaussianMixture(3, random_state=0).fit(X)
    Xd = da.from_array(X, chunks=70)
    for method in ("score_samples", "predict", "predict_proba"):
        out = getattr(gm, method)(Xd)
        assert isinstance(out, da.Array)
        np.testing.assert_allclose(out.compute(), getattr(gm, method)(X), rtol=1e-12)
    assert gm.score(Xd) == pytest.approx(gm.score(X), rel=1e-12)
    with pytest.raises(ValueError, match="X has 2 features"):
        gm.predict(da.from_array(X[:, :2]))


def test_bad_dask_input():
    X = make_blobs()
    X[5, 1] = np.nan
    with pytest.raises(ValueError, match="NaN in 1 rows"):
        GaussianMixture(2).fit(da.from_array(X, chunks=50))
    with pytest.raises(ValueError, match="larger than the number of samples"):
        GaussianMixture(500).fit(da.from_array(make_blobs(), chunks=50))
    with pytest.raises(ValueError, match="Expected a 2-D array"):
        GaussianMixture(2).fit(da.from_array(np.ones(10)))


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None)
        client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_distributed_fit_equals_the_in_memory_fit(cluster):
    X = make_blobs(n_per=500)
    kw = dict(max_iter=10, tol=0, **start(X, 3, "full"))
    ref = fit_quietly(GaussianMixture(3, **kw), X)
    ours = fit_quietly(GaussianMixture(3, **kw), da.from_array(X, chunks=200))
    assert_same(ours, ref)


def test_killing_a_worker_mid_fit_does_not_change_the_result(cluster):
    X = make_blobs(n_per=2000)
    kw = dict(max_iter=12, tol=0, **start(X, 3, "full"))
    ref = fit_quietly(GaussianMixture(3, **kw), da.from_array(X, chunks=500))
    victims = list(cluster.scheduler_info()["workers"])[:1]
    killed = []

    def end_victim_process():
        try:
            cluster.run(os._exit, 1, workers=victims)
        except Exception:  # the worker dies before it can answer
            pass

    def kill_a_worker(progress):
        if progress.iteration == 3 and not killed:
            # Ends the worker process abruptly while the next E-step is being scheduled.
            threading.Timer(0.01, end_victim_process).start()
            killed.append(True)

    ours = fit_quietly(GaussianMixture(3, callback=kill_a_worker, **kw),
                       da.from_array(X, chunks=500))
    assert killed
    assert victims[0] not in cluster.scheduler_info()["workers"]  # it really went away
    assert_same(ours, ref)
