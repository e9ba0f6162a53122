"""Torch tensors: the whole fit on the tensor's device (tested here on the CPU)."""


import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gaussmix import GaussianMixture  # noqa: E402

from ..conftest import (  # noqa: E402
    COVARIANCE_TYPES,
    FITTED_PARAMS,
    fit_quietly,
    identity_start,
    make_blobs,
)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_torch_fit_equals_the_numpy_fit(covariance_type):
    X = make_blobs(n_per=200)
    w = np.random.RandomState(1).uniform(0, 2, len(X))
    kw = dict(covariance_type=covariance_type, max_iter=12, tol=0,
              **identity_start(X, 4, covariance_type))
    ref = fit_quietly(GaussianMixture(4, backend="numpy", **kw), X, sample_weight=w)
    ours = fit_quietly(GaussianMixture(4, **kw), torch.tensor(X), sample_weight=torch.tensor(w))
    for name in FITTED_PARAMS:
        a, b = getattr(ours, name), getattr(ref, name)
        assert isinstance(a, np.ndarray) and a.dtype == np.float64
        assert np.linalg.norm(a - b) <= 1e-9 * np.linalg.norm(b), name
    assert ours.lower_bound_ == pytest.approx(ref.lower_bound_, rel=1e-10)


def test_float32_tensors_accumulate_without_cancellation():
    rng = np.random.RandomState(0)
    X = (1e4 + 0.01 * rng.randn(3000, 2)).astype(np.float32)
    gm = GaussianMixture(2, covariance_type="diag", random_state=0).fit(torch.tensor(X))
    assert gm.means_.dtype == np.float32
    assert np.isfinite(gm.covariances_).all() and (gm.covariances_ > 0).all()
    ref = GaussianMixture(2, covariance_type="diag", random_state=0, backend="numpy").fit(
        X.astype(np.float64))
    assert gm.score(X.astype(np.float64)) == pytest.approx(ref.score(X.astype(np.float64)),
                                                           abs=0.05)


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_default_initialisations_on_the_device(init_params):
    X = np.concatenate([make_blobs(seed=s) + 10 * s for s in range(3)])
    gm = GaussianMixture(9, init_params=init_params, random_state=0).fit(torch.tensor(X))
    ref = GaussianMixture(9, init_params=init_params, random_state=0).fit(X)
    assert gm.converged_ and np.isfinite(gm.means_).all()
    assert gm.score(X) >= ref.score(X) - 0.05 * abs(ref.score(X))


def test_inference_sampling_and_conditioning_on_tensors():
    X = make_blobs()
    gm = GaussianMixture(3, random_state=0).fit(torch.tensor(X))
    Xt = torch.tensor(X)
    np.testing.assert_allclose(gm.score_samples(Xt).numpy(), gm.score_samples(X), rtol=1e-10)
    np.testing.assert_array_equal(gm.predict(Xt).numpy(), gm.predict(X))
    np.testing.assert_allclose(gm.predict_proba(Xt).numpy(), gm.predict_proba(X), atol=1e-12)
    assert gm.score(Xt) == pytest.approx(gm.score(X))
    samples, labels = gm.sample(20000)
    assert isinstance(samples, torch.Tensor) and samples.shape == (20000, 3)
    np.testing.assert_allclose(samples.mean(dim=0).numpy(), gm.mean(), atol=0.1)
    queries = torch.tensor(X[:7, :2])
    np.testing.assert_allclose(gm.conditional_mean([0, 1], queries).numpy(),
                               gm.conditional_mean([0, 1], X[:7, :2]), rtol=1e-9, atol=1e-12)


def test_degenerate_tensors_stay_finite():
    X = np.repeat(np.random.RandomState(0).randn(5, 2), 20, axis=0)
    gm = GaussianMixture(4, random_state=0).fit(torch.tensor(X))
    assert np.isfinite(gm.covariances_).all() and np.isfinite(gm.score_samples(X)).all()


def test_bad_tensors():
    X = torch.tensor(make_blobs())
    X[3, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinity in 1 rows"):
        GaussianMixture(2).fit(X)
    gm = GaussianMixture(2, random_state=0).fit(torch.tensor(make_blobs()))
    with pytest.raises(ValueError, match="X has 2 features"):
        gm.predict(torch.zeros(4, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="sample_weight must be finite and non-negative"):
        GaussianMixture(2).fit(torch.tensor(make_blobs()), sample_weight=-torch.ones(300))
