"""Torch tensors: CPU tensors on the numba path through zero-copy views, and the torch E-step
(what GPUs run) on the shared loop: on the CPU by default, on a GPU with ``--device cuda``."""


import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gaussmix import GaussianMixture  # noqa: E402
from gaussmix._data.chunks import ArrayChunks  # noqa: E402
from gaussmix._mathematics.em import expectation as numpy_expectation  # noqa: E402
from gaussmix._mathematics.em import params_from_precision_cholesky, plan_e_step  # noqa: E402
from gaussmix._data.inputs import host_view  # noqa: E402
from gaussmix._data import torch_tensors as torch_backend

from ..conftest import (  # noqa: E402
    COVARIANCE_TYPES,
    FITTED_PARAMS,
    TORCH_DEVICE,
    assert_same_fit,
    fit_quietly,
    identity_start,
    make_blobs,
)

DEVICE = torch.device(TORCH_DEVICE[0])
cpu_only = pytest.mark.skipif(DEVICE.type != "cpu", reason="CPU tensors' own path")


def tensor(data, **kwargs):
    """A tensor on the device under test."""
    return torch.tensor(data, device=DEVICE, **kwargs)


def random_params(covariance_type, k=5, d=3, spread=1.0, seed=0):
    """Parameters with random means and random positive-definite precisions."""
    rng = np.random.RandomState(seed)
    means = rng.randn(k, d) * 3 * spread
    if covariance_type == "full":
        a = rng.randn(k, d, d) * 0.3 + np.eye(d)
        chol = np.linalg.cholesky(a @ np.swapaxes(a, 1, 2) / spread**2)
    elif covariance_type == "tied":
        a = rng.randn(d, d) * 0.3 + np.eye(d)
        chol = np.linalg.cholesky(a @ a.T / spread**2)
    elif covariance_type == "diag":
        chol = rng.uniform(0.5, 2, (k, d)) / spread
    else:
        chol = rng.uniform(0.5, 2, k) / spread
    if covariance_type in ("full", "tied"):
        chol = np.swapaxes(chol, -1, -2)  # upper factors
    weights = rng.uniform(0.5, 1.5, k)
    return params_from_precision_cholesky(weights / weights.sum(), means, chol, covariance_type)


def assert_stats_close(a, b, rtol):
    assert np.array_equal(a.center, b.center)
    for name in ("resp_sum", "x_sum", "xx_sum"):
        x, y = getattr(a, name), getattr(b, name)
        assert np.linalg.norm(x - y) <= rtol * np.linalg.norm(y), name
    assert a.log_likelihood == pytest.approx(b.log_likelihood, rel=rtol)
    assert a.weight_sum == pytest.approx(b.weight_sum, rel=1e-12)
    assert a.n_rows == b.n_rows
    np.testing.assert_allclose(a.worst_log_prob, b.worst_log_prob, rtol=rtol)
    np.testing.assert_allclose(a.worst_points, b.worst_points, rtol=rtol, atol=1e-6)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("far", [False, True])  # far: every component in difference form
def test_torch_e_step_equals_the_numpy_e_step_in_float64(covariance_type, far):
    params = random_params(covariance_type, spread=1e-3 if far else 1.0)
    if far:
        params = params.shifted(np.array([1e3, -2e3, 5e2]))
    plan = plan_e_step(params)
    assert (len(plan.exact) == params.n_components) if far else not len(plan.exact)
    rng = np.random.RandomState(1)
    x = params.means[rng.randint(0, 5, 3000)] + rng.randn(3000, 3) * (1e-3 if far else 1.0)
    w = rng.uniform(0, 2, len(x))
    w[::7] = 0.0
    ref = numpy_expectation(ArrayChunks(x, w, np.zeros(3), 700), params)
    chunks = torch_backend.TensorChunks(tensor(x), tensor(w), 700)
    ours = torch_backend.expectation(chunks, params)
    assert_stats_close(ours, ref, 1e-10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_torch_e_step_in_float32_agrees_to_float32_precision(covariance_type):
    params = random_params(covariance_type, seed=2)
    rng = np.random.RandomState(2)
    x = params.means[rng.randint(0, 5, 4000)] + rng.randn(4000, 3)
    w = np.ones(len(x))
    ref = numpy_expectation(ArrayChunks(x.astype(np.float32), w, np.zeros(3), 1000), params)
    chunks = torch_backend.TensorChunks(tensor(x, dtype=torch.float32), tensor(w),
                                        1000)
    ours = torch_backend.expectation(chunks, params)
    for name in ("resp_sum", "x_sum", "xx_sum"):
        a, b = getattr(ours, name), getattr(ref, name)
        assert a.dtype == np.float64  # accumulated in float64
        assert np.linalg.norm(a - b) <= 1e-4 * np.linalg.norm(b), name
    assert ours.log_likelihood == pytest.approx(ref.log_likelihood, rel=1e-5)


def test_float32_logits_take_a_float64_product_where_float32_would_cancel():
    base = random_params("full", seed=3)
    near = dataclasses.replace(base, means=0.1 * base.means)  # within float32's budget
    far = random_params("full", spread=0.05, seed=3).shifted(np.array([0.5, 0.0, 0.0]))
    assert len(plan_e_step(far).exact) == 0  # harmless in float64
    cpu = DEVICE
    assert torch_backend.device_params(near, cpu, torch.float32).coef.dtype == torch.float32
    assert torch_backend.device_params(far, cpu, torch.float32).coef.dtype == torch.float64
    rng = np.random.RandomState(4)
    x = far.means[rng.randint(0, 5, 2000)] + rng.randn(2000, 3) * 0.05
    ref = numpy_expectation(ArrayChunks(x, np.ones(len(x)), np.zeros(3), 500), far)
    chunks = torch_backend.TensorChunks(tensor(x, dtype=torch.float32),
                                        tensor(np.ones(len(x))), 500)
    ours = torch_backend.expectation(chunks, far)
    np.testing.assert_allclose(ours.resp_sum, ref.resp_sum, rtol=1e-4, atol=1e-3)
    assert ours.log_likelihood == pytest.approx(ref.log_likelihood, rel=1e-5)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_torch_path_fit_equals_the_numpy_fit(covariance_type):
    """backend='torch' runs the device E-step (here on the CPU) on the shared loop."""
    X = make_blobs(n_per=200)
    w = np.random.RandomState(1).uniform(0, 2, len(X))
    kw = dict(covariance_type=covariance_type, max_iter=12, tol=0,
              **identity_start(X, 4, covariance_type))
    ref = fit_quietly(GaussianMixture(4, backend="numpy", **kw), X, sample_weight=w)
    ours = fit_quietly(GaussianMixture(4, backend="torch", **kw), tensor(X),
                       sample_weight=tensor(w))
    for name in FITTED_PARAMS:
        a, b = getattr(ours, name), getattr(ref, name)
        assert isinstance(a, np.ndarray) and a.dtype == np.float64
        assert np.linalg.norm(a - b) <= 1e-9 * np.linalg.norm(b), name
    assert ours.lower_bound_ == pytest.approx(ref.lower_bound_, rel=1e-10)
    assert ours.n_iter_ == ref.n_iter_ == 12


@cpu_only
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cpu_tensors_fit_exactly_as_arrays(covariance_type, dtype):
    X = make_blobs(n_per=300).astype(np.float32 if dtype == torch.float32 else np.float64)
    kw = dict(covariance_type=covariance_type, random_state=0, n_init=2)
    ref = GaussianMixture(3, **kw).fit(X)
    ours = GaussianMixture(3, **kw).fit(tensor(X))
    assert_same_fit(ours, ref, rtol=1e-9)
    assert ours.means_.dtype == X.dtype and ours.n_iter_ == ref.n_iter_


@cpu_only
def test_cpu_tensors_are_viewed_not_copied():
    X = tensor(make_blobs())
    assert np.shares_memory(host_view(X), X.cpu().numpy())
    assert host_view(X.to(torch.float16)).dtype == np.float32  # numpy lacks bfloat16


@cpu_only
@pytest.mark.parametrize("make_state", [lambda: 0, lambda: np.random.RandomState(3)])
def test_random_state_means_the_same_for_tensors_and_arrays(make_state):
    X = make_blobs()
    ref = GaussianMixture(3, init_params="random_from_data", random_state=make_state()).fit(X)
    ours = GaussianMixture(3, init_params="random_from_data",
                           random_state=make_state()).fit(tensor(X))
    assert_same_fit(ours, ref, rtol=1e-12)
    np.testing.assert_array_equal(ours.sample(50)[0].cpu().numpy(), ref.sample(50)[0])


def test_random_state_none_is_not_deterministic_for_tensors():
    X = tensor(make_blobs())
    gm = GaussianMixture(3, random_state=None).fit(X)
    a, b = gm.sample(20)[0], gm.sample(20)[0]
    assert not torch.equal(a, b)
    fits = [fit_quietly(GaussianMixture(3, init_params="random", max_iter=2,
                                        random_state=None), X) for _ in range(2)]
    assert not np.array_equal(fits[0].means_, fits[1].means_)


@cpu_only
def test_inference_on_cpu_tensors_returns_tensors_equal_to_arrays():
    X = make_blobs()
    gm = GaussianMixture(3, random_state=0).fit(tensor(X))
    Xt = tensor(X)
    assert isinstance(gm.score_samples(Xt), torch.Tensor)
    np.testing.assert_array_equal(gm.score_samples(Xt).cpu().numpy(), gm.score_samples(X))
    np.testing.assert_array_equal(gm.predict(Xt).cpu().numpy(), gm.predict(X))
    np.testing.assert_array_equal(gm.predict_proba(Xt).cpu().numpy(), gm.predict_proba(X))
    assert gm.score(Xt) == gm.score(X)
    assert gm.bic(Xt) == gm.bic(X)
    samples, labels = gm.sample(2000)
    assert isinstance(samples, torch.Tensor) and samples.shape == (2000, 3)
    assert isinstance(labels, torch.Tensor)
    queries = tensor(X[:7, :2])
    np.testing.assert_array_equal(gm.conditional_mean([0, 1], queries).cpu().numpy(),
                                  gm.conditional_mean([0, 1], X[:7, :2]))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_device_inference_equals_the_numpy_inference(covariance_type):
    """The device functions (what a GPU tensor uses), run here on the CPU."""
    X = make_blobs()
    gm = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    Xt = tensor(X)
    lp, labels, resp = torch_backend.log_prob_labels_resp(gm._params(), Xt, want_resp=True)
    np.testing.assert_allclose(lp.cpu().numpy(), gm.score_samples(X), rtol=1e-10)
    np.testing.assert_array_equal(labels.cpu().numpy(), gm.predict(X))
    np.testing.assert_allclose(resp.cpu().numpy(), gm.predict_proba(X), atol=1e-12)
    forced = GaussianMixture(3, covariance_type=covariance_type, backend="torch",
                             random_state=0).fit(Xt)
    np.testing.assert_allclose(forced.score_samples(Xt).cpu().numpy(), forced.score_samples(X),
                               rtol=1e-10)
    cond = torch_backend.conditional_mean(gm._params(), [0, 1], tensor(X[:9, :2]))
    np.testing.assert_allclose(cond.cpu().numpy(), gm.conditional_mean([0, 1], X[:9, :2]),
                               rtol=1e-9, atol=1e-12)


def test_device_sampling_follows_the_mixture_and_the_seed():
    gm = GaussianMixture(3, random_state=0).fit(make_blobs())
    params, cpu = gm._params(), DEVICE
    a, la = torch_backend.sample(params, 30000, cpu, np.random.RandomState(5), torch.float64)
    b, lb = torch_backend.sample(params, 30000, cpu, np.random.RandomState(5), torch.float64)
    assert torch.equal(a, b) and torch.equal(la, lb)
    assert (torch.diff(la) >= 0).all()  # grouped by component
    np.testing.assert_allclose(a.mean(dim=0).cpu().numpy(), gm.mean(), atol=0.1)
    np.testing.assert_allclose(np.cov(a.cpu().numpy().T), gm.covariance(), atol=0.3)
    c, _ = torch_backend.sample(params, 10, cpu, np.random.RandomState(6), torch.float32)
    assert c.dtype == torch.float32


def test_a_torch_path_model_samples_and_conditions_on_the_device(monkeypatch):
    """What a GPU-fitted model does, through the estimator: backend='torch' on the CPU."""
    X = make_blobs()
    gm = GaussianMixture(3, backend="torch", random_state=0).fit(tensor(X))
    calls = []
    for name in ("sample", "conditional_mean"):
        original = getattr(torch_backend, name)
        monkeypatch.setattr(torch_backend, name, lambda *a, f=original, n=name, **k: (
            calls.append(n), f(*a, **k))[1])
    a, labels = gm.sample(500)
    b, _ = gm.sample(500)
    assert isinstance(a, torch.Tensor) and torch.equal(a, b)  # an int seed repeats
    assert labels.shape == (500,)
    cond = gm.conditional_mean([0, 1], tensor(X[:5, :2]))
    single = gm.conditional_mean([0, 1], tensor(X[0, :2]))
    assert calls == ["sample", "sample", "conditional_mean", "conditional_mean"]
    np.testing.assert_allclose(cond.cpu().numpy(), gm.conditional_mean([0, 1], X[:5, :2]),
                               rtol=1e-9)
    np.testing.assert_allclose(single.cpu().numpy(), cond[0].cpu().numpy(), rtol=1e-12)


def test_float32_tensors_accumulate_without_cancellation():
    rng = np.random.RandomState(0)
    X = (1e4 + 0.01 * rng.randn(3000, 2)).astype(np.float32)
    ref = GaussianMixture(2, covariance_type="diag", random_state=0, backend="numpy").fit(
        X.astype(np.float64))
    for backend in (None, "torch"):
        gm = GaussianMixture(2, covariance_type="diag", random_state=0, backend=backend).fit(
            tensor(X))
        assert gm.means_.dtype == np.float32
        assert np.isfinite(gm.covariances_).all() and (gm.covariances_ > 0).all()
        assert gm.score(X.astype(np.float64)) == pytest.approx(
            ref.score(X.astype(np.float64)), abs=0.05)


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_every_initialisation_on_the_torch_path(init_params):
    X = np.concatenate([make_blobs(seed=s) + 10 * s for s in range(3)])
    gm = GaussianMixture(9, init_params=init_params, backend="torch", random_state=0).fit(
        tensor(X))
    ref = GaussianMixture(9, init_params=init_params, random_state=0).fit(X)
    assert gm.converged_ and np.isfinite(gm.means_).all()
    assert gm.score(X) >= ref.score(X) - 0.05 * abs(ref.score(X))


def test_large_tensors_initialise_from_a_sample(monkeypatch):
    import gaussmix._fitting.fit as fit_module

    monkeypatch.setattr(fit_module, "sample_size", lambda k: 200)  # sample below 900 rows
    X = make_blobs(n_per=300)
    gm = GaussianMixture(3, backend="torch", random_state=0).fit(tensor(X))
    ref = GaussianMixture(3, random_state=0).fit(X)
    assert gm.converged_
    assert gm.score(X) == pytest.approx(ref.score(X), abs=0.02)


def test_warm_start_and_n_init_on_the_torch_path():
    X = tensor(make_blobs())
    gm = GaussianMixture(3, backend="torch", n_init=3, random_state=0).fit(X)
    ref = GaussianMixture(3, backend="numpy", n_init=3, random_state=0).fit(X.cpu().numpy())
    assert gm.lower_bound_ == pytest.approx(ref.lower_bound_, rel=1e-9)
    warm = GaussianMixture(3, backend="torch", warm_start=True, max_iter=1, random_state=0)
    fit_quietly(warm, X)
    first = warm.means_.copy()
    fit_quietly(warm, X)
    assert not np.array_equal(first, warm.means_)  # the second call went on from the first


def test_degenerate_tensors_stay_finite():
    X = np.repeat(np.random.RandomState(0).randn(5, 2), 20, axis=0)
    for backend in (None, "torch"):
        gm = GaussianMixture(4, random_state=0, backend=backend).fit(tensor(X))
        assert np.isfinite(gm.covariances_).all() and np.isfinite(gm.score_samples(X)).all()


def test_bad_tensors():
    X = tensor(make_blobs())
    X[3, 0] = float("nan")
    for backend in (None, "torch") if DEVICE.type != "cpu" else ("torch",):
        with pytest.raises(ValueError, match="NaN in 1 row .*missing values .NaN. are fitted "
                                             "on the CPU"):
            GaussianMixture(2, backend=backend).fit(X)
    if DEVICE.type == "cpu":  # a CPU tensor takes the array path, holes included
        assert GaussianMixture(2, random_state=0).fit(X).n_missing_ == 1
    gm = GaussianMixture(2, random_state=0).fit(tensor(make_blobs()))
    with pytest.raises(ValueError, match="X has 2 features"):
        gm.predict(torch.zeros(4, 2, dtype=torch.float64, device=DEVICE))
    with pytest.raises(ValueError, match="X has 2 features"):
        GaussianMixture(2, backend="torch", random_state=0).fit(
            tensor(make_blobs())).predict(tensor(np.zeros((4, 2))))
    with pytest.raises(ValueError, match="non-negative"):
        GaussianMixture(2).fit(tensor(make_blobs()), sample_weight=-tensor(np.ones(300)))
    with pytest.raises(ValueError, match="sample_weight must be finite and non-negative"):
        GaussianMixture(2, backend="torch").fit(tensor(make_blobs()),
                                                sample_weight=-tensor(np.ones(300)))
    with pytest.raises(ValueError, match="Expected a 2-D tensor"):
        GaussianMixture(2, backend="torch").fit(torch.zeros(5, device=DEVICE))


def test_impute_takes_a_cpu_tensor_with_holes_and_gives_a_tensor():
    X = make_blobs(n_per=50)
    X[::7, 1] = np.nan
    gm = GaussianMixture(2, random_state=0).fit(X)
    filled = gm.impute(torch.as_tensor(X))
    assert isinstance(filled, torch.Tensor)
    np.testing.assert_array_equal(filled.numpy(), gm.impute(X))
