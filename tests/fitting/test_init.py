import subprocess
import sys

import numpy as np
import pytest

from gaussmix._fitting import init as _init
from gaussmix._data.chunks import ArrayChunks
from gaussmix._fitting.init import INIT_METHODS, initial_params, kmeans, kmeans_plusplus

from ..conftest import COVARIANCE_TYPES, make_blobs

CENTERS = np.array([[0.0, 0.0, 0.0], [6.0, 0.0, 0.0], [0.0, 6.0, 3.0]])


def source_of(x, w=None, chunk_size=64):
    w = np.ones(len(x)) if w is None else w
    return ArrayChunks(x, w, np.zeros(x.shape[1]), chunk_size)


def test_kmeans_finds_separated_clusters():
    x = make_blobs(scale=(0.3, 0.3, 0.3))
    labels, centers = kmeans(source_of(x), 3, np.random.RandomState(0))
    order = np.argsort(centers[:, 0] + 10 * centers[:, 1])
    np.testing.assert_allclose(centers[order], CENTERS, atol=0.15)
    # every blob of 100 rows has one label
    assert all(len(np.unique(labels[i:i + 100])) == 1 for i in (0, 100, 200))


@pytest.mark.parametrize("path", ["tree", "matrix-products", "numpy-only"])
def test_kmeans_assignment_paths_agree(monkeypatch, path):
    x = make_blobs(scale=(0.3, 0.3, 0.3))
    ref_labels, ref_centers = kmeans(source_of(x), 3, np.random.RandomState(0))
    monkeypatch.setattr(_init, "BRUTE_FORCE_MAX_K", 0)  # away from the numba kernel
    if path == "matrix-products":
        monkeypatch.setattr(_init, "KDTREE_MAX_DIM", 0)
    if path == "numpy-only":
        monkeypatch.setattr(_init, "_kernels", lambda: None)
    labels, centers = kmeans(source_of(x), 3, np.random.RandomState(0))
    np.testing.assert_array_equal(ref_labels, labels)
    np.testing.assert_allclose(ref_centers, centers, rtol=1e-10)


def test_kmeans_plusplus_weights_act_like_repeated_rows_in_any_order():
    rng = np.random.RandomState(1)
    x = rng.randn(40, 2)
    counts = rng.randint(0, 4, size=40)
    counts[0] = 1
    repeated = np.repeat(x, counts, axis=0)
    perm = rng.permutation(40)
    c_rep, _ = kmeans_plusplus(repeated, np.ones(len(repeated)), 5, np.random.RandomState(7))
    c_w, _ = kmeans_plusplus(x[perm], counts[perm].astype(float), 5, np.random.RandomState(7))
    np.testing.assert_array_equal(c_rep, c_w)


def test_kmeans_plusplus_numba_and_numpy_agree(monkeypatch):
    x = np.random.RandomState(3).randn(3000, 2)
    w = np.random.RandomState(4).uniform(0, 2, 3000)
    fast = kmeans_plusplus(x, w, 12, np.random.RandomState(1))
    monkeypatch.setattr(_init, "_kernels", lambda: None)
    slow = kmeans_plusplus(x, w, 12, np.random.RandomState(1))
    np.testing.assert_array_equal(fast[1], slow[1])


def test_large_problems_seed_from_a_weighted_sample(monkeypatch):
    monkeypatch.setattr(_init, "SEED_PAIRS", 100)
    x = np.random.RandomState(5).randn(5000, 2)
    sx, sw = _init.seeding_sample(x, np.ones(5000), 10, np.random.RandomState(0))
    assert len(sx) == 160 and (sw == 1).all()
    assert all((np.abs(x - row).sum(axis=1) == 0).any() for row in sx[:20])


def test_kmeans_plusplus_never_picks_zero_weight_rows():
    x = np.random.RandomState(2).randn(200, 2)
    w = np.zeros(200)
    w[::10] = 1.0
    _, idx = kmeans_plusplus(x, w, 15, np.random.RandomState(0))
    assert set(idx) <= set(range(0, 200, 10))


def test_kmeans_survives_identical_rows():
    x = np.ones((30, 2))
    labels, centers = kmeans(source_of(x), 4, np.random.RandomState(0))
    assert np.isfinite(centers).all() and labels.min() >= 0


@pytest.mark.parametrize("method", INIT_METHODS)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_every_init_method_gives_valid_parameters(method, covariance_type):
    x = make_blobs()
    params = initial_params(source_of(x), 5, covariance_type, method, np.random.RandomState(0),
                            reg_covar=1e-6, jitter_floor=1e-6)
    assert params.weights.shape == (5,)
    assert params.weights.sum() == pytest.approx(1.0)
    assert np.isfinite(params.means).all() and np.isfinite(params.precisions_cholesky).all()
    if method in ("k-means++", "random_from_data"):
        # one row per component, as scikit-learn: means are data rows
        assert all((np.abs(x - m).sum(axis=1) < 1e-12).any() for m in params.means)


def test_nearest_centres_in_threads_match_brute_force():
    from scipy.spatial import cKDTree

    rng = np.random.RandomState(3)
    x, centres = rng.normal(size=(3 * _init.BLOCK_ROWS + 17, 3)), rng.normal(size=(90, 3))
    brute = ((x[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
    np.testing.assert_array_equal(_init.nearest_centres(cKDTree(centres), x), brute)
    np.testing.assert_array_equal(_init.nearest_centres(cKDTree(centres), x[:5]), brute[:5])


# An interrupt at points spread over a whole fit (k-means on a k-d tree, then EM), in one
# process: each lands as a KeyboardInterrupt and the next fit runs (scipy's own query
# threads crashed the interpreter when the interrupt came while it joined them).
INTERRUPTED_FITS = """
import os, signal, sys, threading, time, warnings
import numpy as np
from gaussmix import GaussianMixture

warnings.simplefilter("ignore")
# Python's own handler, as in a terminal or a notebook (a shell's background job starts with
# SIGINT ignored, which Python then keeps).
signal.signal(signal.SIGINT, signal.default_int_handler)
X = np.random.RandomState(0).rand(100_000, 3)
def fit():
    return GaussianMixture(300, random_state=0, max_iter=3).fit(X)
start = time.perf_counter()
fit()
whole = time.perf_counter() - start
interrupted = 0
for fraction in np.linspace(0.05, 0.95, 10):
    timer = threading.Timer(fraction * whole, os.kill, (os.getpid(), signal.SIGINT))
    try:
        timer.start()
        fit()
        timer.join()
    except KeyboardInterrupt:
        interrupted += 1
        timer.join()
assert interrupted >= 5, interrupted
assert np.isfinite(GaussianMixture(3, random_state=0).fit(X[:5000]).score(X[:5000]))
print("ok")
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to oneself")
def test_an_interrupt_during_a_fit_leaves_a_usable_interpreter():
    done = subprocess.run([sys.executable, "-c", INTERRUPTED_FITS], capture_output=True,
                          text=True, timeout=540)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
