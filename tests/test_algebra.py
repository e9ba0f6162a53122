import numpy as np
import pytest
from scipy import stats

from gaussmix import GaussianMixture

from .conftest import COVARIANCE_TYPES


def random_spd(d, rng):
    a = rng.randn(d, d)
    return a @ a.T + 0.5 * np.eye(d)


def random_mixture(covariance_type, k=3, d=3, seed=0, **kw):
    rng = np.random.RandomState(seed)
    weights = rng.dirichlet(np.ones(k) * 3)
    means = rng.randn(k, d) * 3
    covariances = {
        "full": lambda: np.stack([random_spd(d, rng) for _ in range(k)]),
        "tied": lambda: random_spd(d, rng),
        "diag": lambda: rng.uniform(0.3, 2.0, (k, d)),
        "spherical": lambda: rng.uniform(0.3, 2.0, k),
    }[covariance_type]()
    return GaussianMixture.from_params(weights, means, covariances, covariance_type, **kw)


def dense(gm):
    k, d = gm.means_.shape
    c = gm.covariances_
    return {
        "full": lambda: c,
        "tied": lambda: np.broadcast_to(c, (k, d, d)),
        "diag": lambda: np.stack([np.diag(v) for v in c]),
        "spherical": lambda: np.stack([v * np.eye(d) for v in c]),
    }[gm.covariance_type]()


def snapshot(gm):
    return {n: getattr(gm, n).copy() for n in ("weights_", "means_", "covariances_",
                                              "precisions_cholesky_", "precisions_")}


def assert_unchanged(gm, before):
    for name, value in before.items():
        np.testing.assert_array_equal(getattr(gm, name), value)


def test_from_params_builds_a_usable_model(covariance_type):
    gm = random_mixture(covariance_type, random_state=0)
    assert gm.n_components == 3 and gm.n_features_in_ == 3
    np.testing.assert_allclose(gm.precisions_, np.linalg.inv(gm.covariances_)
                               if covariance_type in ("full", "tied") else 1 / gm.covariances_)
    x, labels = gm.sample(5)
    assert gm.score_samples(x).shape == (5,) and gm.predict(x).shape == (5,)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_mixture_mean_and_covariance_match_their_definitions(covariance_type):
    gm = random_mixture(covariance_type)
    w, mu, sig = gm.weights_, gm.means_, dense(gm)
    mean = w @ mu
    second = np.einsum("k,kij->ij", w, sig + mu[:, :, None] * mu[:, None, :])
    np.testing.assert_allclose(gm.mean(), mean, rtol=1e-12)
    np.testing.assert_allclose(gm.covariance(), second - np.outer(mean, mean), rtol=1e-10)
    samples, _ = gm.sample(400_000)
    np.testing.assert_allclose(samples.mean(axis=0), mean, atol=0.03)
    np.testing.assert_allclose(np.cov(samples.T), gm.covariance(), atol=0.15)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_marginal_takes_sub_blocks_and_keeps_the_type(covariance_type):
    gm = random_mixture(covariance_type)
    before = snapshot(gm)
    m = gm.marginal([2, 0])
    assert_unchanged(gm, before)
    assert m.covariance_type == covariance_type and m.n_features_in_ == 2
    np.testing.assert_array_equal(m.weights_, gm.weights_)
    np.testing.assert_array_equal(m.means_, gm.means_[:, [2, 0]])
    np.testing.assert_allclose(dense(m), dense(gm)[:, [2, 0]][:, :, [2, 0]], rtol=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_marginal_of_samples_is_samples_of_the_marginal(covariance_type):
    gm = random_mixture(covariance_type, random_state=1)
    joint, _ = gm.sample(20_000)
    alone, _ = gm.marginal([1]).sample(20_000)
    assert stats.ks_2samp(joint[:, 1], alone[:, 0]).pvalue > 0.001


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_conditioning_one_gaussian_matches_the_closed_form(covariance_type):
    gm = random_mixture(covariance_type, k=1, d=4, seed=3)
    mu, sigma = gm.means_[0], dense(gm)[0]
    a, b = np.array([3, 1]), np.array([0, 2])
    v = np.array([0.7, -1.2])
    gain = sigma[np.ix_(b, a)] @ np.linalg.inv(sigma[np.ix_(a, a)])
    cond = gm.condition([3, 1], v)
    np.testing.assert_allclose(cond.means_[0], mu[b] + gain @ (v - mu[a]), rtol=1e-10)
    np.testing.assert_allclose(dense(cond)[0], sigma[np.ix_(b, b)] - gain @ sigma[np.ix_(a, b)],
                               rtol=1e-10, atol=1e-12)
    assert cond.covariance_type == covariance_type
    assert cond.weights_[0] == pytest.approx(1.0)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_conditioned_weights_follow_the_marginal_densities(covariance_type):
    gm = random_mixture(covariance_type, k=4, seed=5)
    v = np.array([1.0])
    cond = gm.condition([1], v)
    dens = np.array([w * stats.norm(m[1], np.sqrt(s[1, 1])).pdf(v[0])
                     for w, m, s in zip(gm.weights_, gm.means_, dense(gm))])
    np.testing.assert_allclose(cond.weights_, dens / dens.sum(), rtol=1e-10)


def test_conditioning_agrees_with_monte_carlo():
    gm = random_mixture("full", k=3, d=2, seed=7, random_state=0)
    samples, _ = gm.sample(2_000_000)
    a = float(np.median(samples[:, 0]))
    near = samples[np.abs(samples[:, 0] - a) < 0.02, 1]
    cond = gm.condition([0], [a])
    assert len(near) > 5000
    assert cond.mean()[0] == pytest.approx(near.mean(), abs=0.05)
    assert cond.covariance()[0, 0] == pytest.approx(near.var(), rel=0.05)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_conditional_mean_equals_the_mean_of_each_conditioned_mixture(covariance_type):
    gm = random_mixture(covariance_type, k=4, d=4, seed=11)
    given = [2, 0]
    queries = np.random.RandomState(0).randn(7, 2) * 3
    means, covs, weights = gm.conditional_mean(given, queries, return_covariance=True,
                                               return_weights=True, chunk_size=3)
    for q, v in enumerate(queries):
        cond = gm.condition(given, v)
        np.testing.assert_allclose(means[q], cond.mean(), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(covs[q], cond.covariance(), rtol=1e-8, atol=1e-9)
        np.testing.assert_allclose(weights[q], cond.weights_, rtol=1e-9, atol=1e-12)
    single = gm.conditional_mean(given, queries[0])
    np.testing.assert_allclose(single, means[0], rtol=1e-12)
    np.testing.assert_allclose(gm.conditional_mean(given, queries), means, rtol=1e-12)


def test_conditional_mean_of_a_one_component_colour_model_is_a_linear_ramp():
    """E[rgb | x, y] of a single Gaussian is affine in (x, y): the painting of a ramp."""
    rng = np.random.RandomState(2)
    cov5 = random_spd(5, rng)
    gm = GaussianMixture.from_params([1.0], [[10, 20, 100, 120, 140]], cov5[None])
    grid = np.stack(np.meshgrid(np.arange(8.0), np.arange(6.0)), -1).reshape(-1, 2)
    rgb = gm.conditional_mean([0, 1], grid)
    design = np.c_[np.ones(len(grid)), grid]
    coef, residual, *_ = np.linalg.lstsq(design, rgb, rcond=None)
    np.testing.assert_allclose(design @ coef, rgb, atol=1e-9)


def test_scale_covariances_and_subset(covariance_type):
    gm = random_mixture(covariance_type, k=4)
    before = snapshot(gm)
    sharp = gm.scale_covariances(0.6)
    np.testing.assert_allclose(sharp.covariances_, gm.covariances_ * 0.6, rtol=1e-12)
    np.testing.assert_array_equal(sharp.means_, gm.means_)
    rebuilt = GaussianMixture.from_params(gm.weights_, gm.means_, gm.covariances_ * 0.6,
                                          covariance_type)
    x = gm.sample(50)[0]
    np.testing.assert_allclose(sharp.score_samples(x), rebuilt.score_samples(x), rtol=1e-10)
    part = gm.subset([3, 1])
    np.testing.assert_allclose(part.weights_, gm.weights_[[3, 1]] / gm.weights_[[3, 1]].sum())
    np.testing.assert_array_equal(part.means_, gm.means_[[3, 1]])
    assert part.n_components == 2 and part.predict(x).max() <= 1
    assert_unchanged(gm, before)


def test_results_keep_dtype_feature_names_and_hyper_parameters():
    pd = pytest.importorskip("pandas")
    X = np.random.RandomState(0).randn(300, 3).astype(np.float32)
    gm = GaussianMixture(2, random_state=4, reg_covar=1e-5).fit(pd.DataFrame(X, columns=list("abc")))
    cond = gm.condition([1], [0.5])
    np.testing.assert_array_equal(cond.feature_names_in_, ["a", "c"])
    assert cond.means_.dtype == np.float32 and cond.reg_covar == 1e-5 and cond.random_state == 4
    assert gm.conditional_mean([0], [[0.1], [0.2]]).dtype == np.float32
    np.testing.assert_array_equal(gm.marginal([2]).feature_names_in_, ["c"])


@pytest.mark.parametrize(
    "call, pattern",
    [
        (lambda gm: gm.marginal([]), "non-empty sequence of integer indices"),
        (lambda gm: gm.marginal([0, 0]), "must not repeat"),
        (lambda gm: gm.marginal([5]), "must index into 3 entries"),
        (lambda gm: gm.marginal([0.5]), "integer indices"),
        (lambda gm: gm.condition([0, 1, 2], [1, 2, 3]), "leave at least one feature free"),
        (lambda gm: gm.condition([0], [1.0, 2.0]), r"values must have shape \(1,\)"),
        (lambda gm: gm.condition([0], [np.nan]), "NaN or infinity"),
        (lambda gm: gm.conditional_mean([0, 1], np.zeros((4, 3))), r"\(n_queries, 2\)"),
        (lambda gm: gm.scale_covariances(0), "factor must be positive"),
        (lambda gm: gm.subset([7]), "must index into 3 entries"),
    ],
)
def test_bad_algebra_arguments(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call(random_mixture("full"))


def test_algebra_needs_a_fitted_model():
    from gaussmix import NotFittedError

    with pytest.raises(NotFittedError):
        GaussianMixture().mean()
    with pytest.raises(NotFittedError):
        GaussianMixture().condition([0], [1.0])


@pytest.mark.parametrize(
    "args, pattern",
    [
        (([0.5, 0.6], [[0.0], [1.0]], [1.0, 1.0], "spherical"), "must sum to 1"),
        (([1.0], [[0.0, 0.0]], [[[1.0, 2.0], [2.0, 1.0]]], "full"), "positive definite"),
        (([1.0], [[0.0, 0.0]], [[1.0, 0.0]], "diag"), "must be positive"),
        (([1.0], [[0.0, 0.0]], [1.0, 1.0], "spherical"), r"should have the shape of \(1,\)"),
        (([1.0], [0.0, 0.0], [1.0], "spherical"), "means must have shape"),
    ],
)
def test_from_params_refuses_bad_parameters(args, pattern):
    with pytest.raises(ValueError, match=pattern):
        GaussianMixture.from_params(*args)


@pytest.mark.parametrize("tiled", [False, True])
def test_conditional_mean_on_the_pruned_kernel_equals_the_direct_one(covariance_type, tiled,
                                                                    monkeypatch):
    from gaussmix._fitting import inference
    from gaussmix._fitting import inference as _inference
    from gaussmix.imaging.points import pixel_grid, pixel_tiles

    rng = np.random.RandomState(3)
    k, shape = 60, (40, 50)  # more components than the kernel's pruning starts at
    means = np.column_stack([rng.uniform(0, 50, k), rng.uniform(0, 40, k),
                             rng.uniform(0, 255, (k, 2))])
    covariances = {"full": np.stack([random_spd(4, rng) * 4 for _ in range(k)]),
                   "tied": random_spd(4, rng) * 4, "diag": rng.uniform(1, 9, (k, 4)),
                   "spherical": rng.uniform(1, 9, k)}[covariance_type]
    gm = GaussianMixture.from_params(rng.dirichlet(np.ones(k)), means, covariances,
                                     covariance_type)
    grid = pixel_grid(shape)
    direct, _ = gm.conditional_mean([0, 1], grid, return_weights=True)  # the chunked path
    monkeypatch.setattr(_inference, "FUSED_INFERENCE_PAIRS", 0)
    fast = inference.conditional_mean(gm._params(), np.array([0, 1]), grid, backend="numba",
                                     tiles=pixel_tiles(shape) if tiled else None)
    np.testing.assert_allclose(fast, direct, rtol=1e-9, atol=1e-9)


def test_conditional_mean_of_no_queries_is_empty():
    gm = GaussianMixture(2, covariance_type="full", random_state=0).fit(
        np.random.RandomState(0).randn(100, 3))
    assert gm.conditional_mean([0], np.empty((0, 1))).shape == (0, 2)
    means, covariances = gm.conditional_mean([0, 2], np.empty((0, 2)), return_covariance=True)
    assert means.shape == (0, 1) and covariances.shape == (0, 1, 1)
