"""Dask arrays: the same fit as in memory, on any scheduler, despite lost workers."""

import os
import threading
import warnings

import numpy as np
import pytest

da = pytest.importorskip("dask.array")

from gaussmix import GaussianMixture  # noqa: E402

from ..conftest import (  # noqa: E402
    COVARIANCE_TYPES,
    assert_same_fit,
    fit_quietly,
    identity_start,
    make_blobs,
)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_dask_fit_equals_the_in_memory_fit(covariance_type, backend):
    X = make_blobs(n_per=400)
    w = np.random.RandomState(2).uniform(0, 2, len(X))
    kw = dict(covariance_type=covariance_type, max_iter=15, tol=0, backend=backend,
              **identity_start(X, 4, covariance_type))
    ref = fit_quietly(GaussianMixture(4, **kw), X, sample_weight=w)
    Xd = da.from_array(X, chunks=((250, 300, 100, 550), (3,)))  # uneven blocks
    wd = da.from_array(w, chunks=100)
    ours = fit_quietly(GaussianMixture(4, **kw), Xd, sample_weight=wd)
    assert_same_fit(ours, ref)
    assert ours.n_features_in_ == 3 and ours.lower_bound_ == pytest.approx(ref.lower_bound_,
                                                                             rel=1e-10)


def test_dask_default_initialisation_fits_well():
    X = np.concatenate([make_blobs(n_per=500, seed=s) + 10 * s for s in range(3)])
    # Single starts land in different local optima (either way round); compare best of three.
    batch = GaussianMixture(9, n_init=3, random_state=0).fit(X)
    ours = GaussianMixture(9, n_init=3, random_state=0).fit(da.from_array(X, chunks=700))
    assert ours.score(X) >= batch.score(X) - 0.02 * abs(batch.score(X))


def test_small_dask_data_with_the_default_start_equals_the_in_memory_fit():
    # An initialisation sample that would hold every row is every row, drawn without the RNG.
    X = make_blobs(n_per=300)
    for covariance_type in ("full", "diag"):
        kw = dict(covariance_type=covariance_type, random_state=0)
        ref = GaussianMixture(5, **kw).fit(X)
        ours = GaussianMixture(5, **kw).fit(da.from_array(X, chunks=(200, 3)))
        assert_same_fit(ours, ref, rtol=1e-12)


def test_inference_on_dask_arrays_is_lazy_and_equal():
    X = make_blobs()
    gm = GaussianMixture(3, random_state=0).fit(X)
    Xd = da.from_array(X, chunks=70)
    for method in ("score_samples", "predict", "predict_proba"):
        out = getattr(gm, method)(Xd)
        assert isinstance(out, da.Array)
        np.testing.assert_allclose(out.compute(), getattr(gm, method)(X), rtol=1e-12)
    assert gm.score(Xd) == pytest.approx(gm.score(X), rel=1e-12)
    w = np.random.RandomState(3).uniform(0, 2, len(X))
    assert gm.score(Xd, sample_weight=da.from_array(w, chunks=70)) == pytest.approx(
        gm.score(X, sample_weight=w), rel=1e-12)
    with pytest.raises(ValueError, match="one weight per row"):
        gm.score(Xd, sample_weight=w[:10])
    with pytest.raises(ValueError, match="X has 2 features"):
        gm.predict(da.from_array(X[:, :2]))


def test_bad_dask_input():
    X = make_blobs()
    X[5, 1] = np.inf  # NaN marks a missing value (tests/test_missing.py); inf is refused
    with pytest.raises(ValueError, match=r"infinity \(inf\) in 1 row \(first at row 5\);"):
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
    kw = dict(max_iter=10, tol=0, **identity_start(X, 3, "full"))
    ref = fit_quietly(GaussianMixture(3, **kw), X)
    ours = fit_quietly(GaussianMixture(3, **kw), da.from_array(X, chunks=200))
    assert_same_fit(ours, ref)


def test_killing_a_worker_mid_fit_does_not_change_the_result(cluster):
    X = make_blobs(n_per=2000)
    kw = dict(max_iter=12, tol=0, **identity_start(X, 3, "full"))
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
    assert_same_fit(ours, ref)


def test_paint_on_a_cluster_equals_paint_in_memory(cluster, tmp_path):
    from PIL import Image

    from gaussmix import load

    from ..imaging.pictures import disc_and_bar
    from ..test_cli import run

    picture = tmp_path / "shapes.png"
    Image.fromarray(disc_and_bar()).save(picture)
    address = cluster.scheduler.address
    common = [str(picture), "-k", "6", "--renders", "density", "--quiet"]
    code, _, stderr = run(["paint", *common, "--out", str(tmp_path / "local")])
    assert code == 0, stderr
    code, _, stderr = run(["paint", *common, "--out", str(tmp_path / "remote"), "--dask", address])
    assert code == 0, stderr
    local, remote = load(tmp_path / "local" / "model.npz"), load(tmp_path / "remote" / "model.npz")
    # Same initialisation, same EM; only the order of the sums differs.
    np.testing.assert_allclose(remote.means_, local.means_, rtol=1e-6, atol=1e-6)


def test_paint_with_an_unreachable_scheduler_is_one_sentence(tmp_path):
    from PIL import Image

    from ..imaging.pictures import disc_and_bar
    from ..test_cli import run

    picture = tmp_path / "shapes.png"
    Image.fromarray(disc_and_bar()).save(picture)
    out = tmp_path / "out"
    code, _, stderr = run(["paint", str(picture), "-k", "4", "--out", str(out), "--dask",
                           "tcp://127.0.0.1:9"])
    assert code == 2 and "Cannot reach the dask scheduler" in stderr
    assert "Traceback" not in stderr
    assert not out.exists() or not any(out.iterdir())  # nothing half-written


def test_one_dimensional_dask_input_to_predict_is_refused_with_one_sentence():
    da = pytest.importorskip("dask.array")
    X = make_blobs()
    gm = GaussianMixture(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="Expected a 2-D array, got a 1-D dask array"):
        gm.predict(da.from_array(X[:, 0], chunks=50))
