import numpy as np
import pytest
from scipy.stats import multivariate_normal

from gaussmix._data.chunks import ArrayChunks
from gaussmix._mathematics.em import (
    CANCELLATION_LIMIT,
    DEAD_COMPONENT_MASS,
    EStepPlan,
    MaximumLikelihood,
    Params,
    cancellation_ratios,
    e_step,
    features,
    log_normaliser,
    log_prob_and_resp,
    logit_coefficients,
    m_step,
    plan_e_step,
    softmax_inplace,
    weighted_log_prob,
)
from gaussmix._fitting.loop import run_em

from ..conftest import COVARIANCE_TYPES, make_blobs
from ..foundations.test_stats import some_params


def dense_covariances(params):
    k, d = params.means.shape
    c = params.covariances
    return {
        "full": lambda: c,
        "tied": lambda: np.broadcast_to(c, (k, d, d)),
        "diag": lambda: np.stack([np.diag(v) for v in c]),
        "spherical": lambda: np.stack([v * np.eye(d) for v in c]),
    }[params.covariance_type]()


def fitted_like_params(covariance_type, seed=0):
    """Parameters with unequal weights and non-trivial covariances."""
    rng = np.random.RandomState(seed)
    x = make_blobs(seed=seed)
    params = some_params(covariance_type, x, k=3, seed=seed)
    stats = e_step(x, rng.uniform(0.5, 1.5, len(x)), params)
    return m_step(stats, 1e-6, 1e-6)[0], x


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_log_densities_match_the_closed_form(covariance_type):
    params, x = fitted_like_params(covariance_type)
    logits = weighted_log_prob(x, params)
    covs = dense_covariances(params)
    for k in range(params.n_components):
        expected = np.log(params.weights[k]) + multivariate_normal(params.means[k], covs[k]).logpdf(x)
        np.testing.assert_allclose(logits[:, k], expected, rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_responsibilities_are_a_normalised_softmax(covariance_type):
    params, x = fitted_like_params(covariance_type)
    log_prob, resp = log_prob_and_resp(x, params)
    logits = weighted_log_prob(x, params)
    np.testing.assert_allclose(log_prob, np.log(np.exp(logits).sum(axis=1)), rtol=1e-12)
    np.testing.assert_allclose(resp.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(resp, np.exp(logits - log_prob[:, None]), rtol=1e-10, atol=1e-300)


def test_rows_nobody_explains_do_not_produce_nan():
    logits = np.array([[-np.inf, -np.inf], [0.0, -np.inf], [1.0, 1.0]])
    log_prob = softmax_inplace(logits)
    assert not np.isnan(logits).any()
    np.testing.assert_array_equal(log_prob, [-np.inf, 0.0, 1.0 + np.log(2.0)])
    np.testing.assert_array_equal(logits[1:], [[1.0, 0.0], [0.5, 0.5]])


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_m_step_is_the_weighted_maximum_likelihood(covariance_type):
    params, x = fitted_like_params(covariance_type)
    w = np.random.RandomState(5).uniform(0, 2, len(x))
    _, resp = log_prob_and_resp(x, params)
    new, report = m_step(e_step(x, w, params), reg_covar=1e-3, jitter_floor=1e-3)
    assert report.n_reseeded == 0 and report.n_regularized == 0
    rw = resp * w[:, None]
    nk = rw.sum(axis=0)
    np.testing.assert_allclose(new.weights, nk / nk.sum(), rtol=1e-10)
    means = rw.T @ x / nk[:, None]
    np.testing.assert_allclose(new.means, means, rtol=1e-10, atol=1e-12)
    scatter = np.stack([np.cov(x.T, aweights=rw[:, k], bias=True) for k in range(len(nk))])
    d = x.shape[1]
    expected = {
        "full": lambda: scatter + 1e-3 * np.eye(d),
        "tied": lambda: np.tensordot(nk / nk.sum(), scatter, axes=1) + 1e-3 * np.eye(d),
        "diag": lambda: np.diagonal(scatter, axis1=1, axis2=2) + 1e-3,
        "spherical": lambda: np.trace(scatter, axis1=1, axis2=2) / d + 1e-3,
    }[covariance_type]()
    np.testing.assert_allclose(new.covariances, expected, rtol=1e-9, atol=1e-12)


def test_features_hold_products_for_full_covariances():
    x = np.array([[1.0, 2.0, 3.0]])
    phi = features(x, "full")
    np.testing.assert_array_equal(phi, [[1, 1, 2, 3, 1, 2, 3, 4, 6, 9]])
    np.testing.assert_array_equal(features(x, "diag"), [[1, 1, 2, 3, 1, 4, 9]])
    np.testing.assert_array_equal(features(x, "spherical"), [[1, 1, 2, 3, 14]])
    np.testing.assert_array_equal(features(x, "tied"), [[1, 1, 2, 3]])


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_lower_bound_never_decreases(covariance_type):
    x = make_blobs(n_per=150, seed=2)
    source = ArrayChunks(x, np.ones(len(x)), x.mean(axis=0), chunk_size=97)
    params = some_params(covariance_type, x - x.mean(axis=0), k=6, seed=3)
    result = run_em(source, params, MaximumLikelihood(1e-6, 1e-6), tol=0.0, max_iter=60)
    assert result.reseed_iterations == []
    bounds = np.array(result.lower_bounds)
    assert np.all(np.diff(bounds) >= -1e-10 * np.abs(bounds[1:]))
    assert bounds[-1] > bounds[0]


def test_dead_component_is_reseeded_at_the_worst_explained_row():
    x = np.concatenate([make_blobs(seed=4), [[40.0, 40.0, 40.0]]])
    w = np.ones(len(x))
    params, _ = fitted_like_params("full", seed=4)
    # A fourth component far from everything: it receives no responsibility.
    params = Params(
        np.r_[params.weights * 0.99, 0.01],
        np.r_[params.means, [[-1e3, -1e3, -1e3]]],
        np.r_[params.precisions_cholesky, [np.eye(3)]],
        np.r_[params.covariances, [np.eye(3)]],
        "full",
    )
    stats = e_step(x, w, params)
    assert stats.resp_sum[3] < DEAD_COMPONENT_MASS
    new, report = m_step(stats, 1e-6, 1e-6)
    assert report.n_reseeded == 1
    np.testing.assert_array_equal(new.means[3], [40.0, 40.0, 40.0])
    assert new.weights[3] == pytest.approx(1.0 / len(x), rel=1e-6)
    assert np.isfinite(new.precisions_cholesky).all()


def test_run_em_with_zero_iterations_returns_the_start():
    x = make_blobs()
    params = some_params("diag", x)
    result = run_em([(x, np.ones(len(x)))], params, MaximumLikelihood(1e-6, 1e-6), tol=1e-3,
                    max_iter=0)
    assert result.params is params and result.n_iter == 0 and not result.converged
    assert result.lower_bound == -np.inf


def test_run_em_reports_each_iteration_and_converges():
    x = make_blobs()
    seen = []
    result = run_em([(x, np.ones(len(x)))], some_params("full", x, k=3),
                    MaximumLikelihood(1e-6, 1e-6), tol=1e-6, max_iter=500,
                    on_iteration=lambda *a: seen.append(a))
    assert result.converged and 1 < result.n_iter < 500
    assert [s[0] for s in seen] == list(range(1, result.n_iter + 1))
    assert abs(seen[-1][2]) < 1e-6


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_exact_and_fast_paths_agree(covariance_type):
    params, x = fitted_like_params(covariance_type)
    w = np.random.RandomState(6).uniform(0, 2, len(x))
    fast, exact = plan_e_step(params, exact=False), plan_e_step(params, exact=True)
    np.testing.assert_allclose(weighted_log_prob(x, params, exact),
                               weighted_log_prob(x, params, fast), rtol=1e-11, atol=1e-10)
    s_fast, s_exact = e_step(x, w, params, fast), e_step(x, w, params, exact)
    np.testing.assert_array_equal(s_exact.center, params.means)
    assert s_exact.log_likelihood == pytest.approx(s_fast.log_likelihood, rel=1e-12)
    p_fast, _ = m_step(s_fast, 1e-6, 1e-6)
    p_exact, _ = m_step(s_exact, 1e-6, 1e-6)
    for name in ("weights", "means", "covariances", "precisions_cholesky"):
        np.testing.assert_allclose(getattr(p_exact, name), getattr(p_fast, name), rtol=1e-9,
                                   atol=1e-12)


def test_exact_path_is_chosen_when_the_expansion_would_cancel():
    params, _ = fitted_like_params("diag")
    assert cancellation_ratios(params).max() < CANCELLATION_LIMIT
    assert len(plan_e_step(params).exact) == 0
    far = params.shifted(np.full(3, 1e6))
    assert plan_e_step(far).all_exact(3)
    # Only the component that moved far away changes path.
    one_far = Params(params.weights, params.means + [[1e6, 0, 0], [0, 0, 0], [0, 0, 0]],
                     params.precisions_cholesky, params.covariances, "diag")
    np.testing.assert_array_equal(plan_e_step(one_far).exact, [0])


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_tight_clusters_far_apart_keep_their_precision(covariance_type):
    """Unit-spread clusters 2e8 apart: the expanded form would lose every digit."""
    rng = np.random.RandomState(0)
    x = np.r_[rng.randn(200, 2) + 1e8, rng.randn(200, 2) - 1e8]
    source = ArrayChunks(x, np.ones(len(x)), x.mean(axis=0), chunk_size=128)
    start = Params(np.array([0.5, 0.5]), np.array([[1e8, 1e8], [-1e8, -1e8]]) + 0.5,
                   *_unit(covariance_type), covariance_type)
    result = run_em(source, start, MaximumLikelihood(1e-6, 1e-6), tol=0.0, max_iter=20)
    assert result.n_regularized == 0 and result.n_reseeded == 0
    bounds = np.array(result.lower_bounds)
    assert np.all(np.diff(bounds) >= -1e-9 * np.abs(bounds[1:]))
    np.testing.assert_allclose(result.params.means + x.mean(axis=0),
                               [x[:200].mean(axis=0), x[200:].mean(axis=0)], rtol=0, atol=1e-6)
    var = result.params.covariances
    per_cluster = np.r_[x[:200].var(axis=0).mean(), x[200:].var(axis=0).mean()] + 1e-6
    if covariance_type in ("diag", "spherical"):
        np.testing.assert_allclose(var.reshape(2, -1).mean(axis=1), per_cluster, rtol=1e-6)


def _unit(covariance_type):
    shapes = {"full": np.tile(np.eye(2), (2, 1, 1)), "tied": np.eye(2), "diag": np.ones((2, 2)),
              "spherical": np.ones(2)}
    return shapes[covariance_type], shapes[covariance_type]


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_mixed_paths_agree_with_a_single_path(covariance_type):
    params, x = fitted_like_params(covariance_type)
    w = np.random.RandomState(7).uniform(0, 2, len(x))
    mixed = EStepPlan(np.array([0, 2]), logit_coefficients(params), log_normaliser(params))
    fast = plan_e_step(params, exact=False)
    np.testing.assert_allclose(weighted_log_prob(x, params, mixed),
                               weighted_log_prob(x, params, fast), rtol=1e-11, atol=1e-10)
    s_mixed, s_fast = e_step(x, w, params, mixed), e_step(x, w, params, fast)
    np.testing.assert_array_equal(s_mixed.center[[0, 2]], params.means[[0, 2]])
    np.testing.assert_array_equal(s_mixed.center[1], 0.0)
    p_mixed, p_fast = m_step(s_mixed, 1e-6, 1e-6)[0], m_step(s_fast, 1e-6, 1e-6)[0]
    for name in ("weights", "means", "covariances"):
        np.testing.assert_allclose(getattr(p_mixed, name), getattr(p_fast, name), rtol=1e-9,
                                   atol=1e-12)


def plain_moments(x, weights, labels_or_resp, centres, covariance_type):
    """Weighted moments about ``centres`` by loops: the reference for the moment helpers.
    ``labels_or_resp``: labels (n,) or responsibilities (n, K)."""
    resp = labels_or_resp
    if resp.ndim == 1:
        resp = np.zeros((len(x), len(centres)))
        keep = labels_or_resp >= 0
        resp[np.flatnonzero(keep), labels_or_resp[keep]] = 1.0
    k, d = centres.shape
    resp_sum, x_sum, scatter = np.zeros(k), np.zeros((k, d)), np.zeros((k, d, d))
    for j in range(k):
        for row, w, r in zip(x, weights, resp[:, j]):
            y = row - centres[j]
            resp_sum[j] += w * r
            x_sum[j] += w * r * y
            scatter[j] += w * r * np.outer(y, y)
    xx_sum = {"full": scatter, "tied": scatter.sum(axis=0),
              "diag": np.diagonal(scatter, axis1=1, axis2=2),
              "spherical": np.trace(scatter, axis1=1, axis2=2)}[covariance_type]
    return resp_sum, x_sum, xx_sum


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("n_components", [3, 12])  # fewer labels than features, and more
def test_moments_by_label_match_loops(covariance_type, n_components):
    from gaussmix._mathematics.em import stats_from_labels

    rng = np.random.RandomState(0)
    x = make_blobs()
    weights = rng.uniform(0, 2, len(x))
    labels = rng.randint(-1, n_components - 1, len(x))  # -1: no label; the last one empty
    centres = rng.randn(n_components, 3)
    got = stats_from_labels(x, weights, labels, centres, covariance_type)
    want = plain_moments(x, weights, labels, centres, covariance_type)
    if covariance_type == "tied":  # the one matrix is about each row's own centre
        got, want = got[:2], want[:2]
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n_components", [2, 5])  # a few components in many dimensions, and more
def test_exact_moments_match_loops(n_components):
    from gaussmix._mathematics.em import _exact_moments

    rng = np.random.RandomState(1)
    x = rng.randn(300, 4) * [1, 1e3, 1e-3, 1] + 1e6
    resp = rng.dirichlet(np.ones(n_components), len(x)) * rng.uniform(0, 2, (len(x), 1))
    means = x[:n_components] + 0.5
    got = _exact_moments(x, resp, means, "full")
    want = plain_moments(x, np.ones(len(x)), resp, means, "full")
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-9)
    if n_components <= x.shape[1]:  # one triangle computed, mirrored
        np.testing.assert_array_equal(got[2], np.swapaxes(got[2], 1, 2))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("d, seed", [(400, 0), (600, 1), (800, 2)])
def test_wide_data_take_the_difference_form_in_memory_that_follows_d_squared(backend, d, seed):
    """Hundreds of features, full covariances: the expanded form's feature map would hold
    D^2/2 columns a row (64 rows at least: 93 MB a copy at D=600); the difference form holds
    the model, a bound in K D^2 at every size."""
    import tracemalloc

    from gaussmix import GaussianMixture
    from gaussmix._mathematics.em import MAX_EXPANDED_FEATURES, n_map_features

    n, k = 300, 2
    assert n_map_features(d, "full") > MAX_EXPANDED_FEATURES
    rng = np.random.RandomState(seed)
    x = rng.randn(n, d) + 3.0 * rng.randint(0, 2, (n, 1))
    means_init = x[[0, 1]] + 0.1
    settings = dict(n_components=k, weights_init=[0.5, 0.5], means_init=means_init,
                    precisions_init=np.tile(np.eye(d), (k, 1, 1)), reg_covar=1e-3, max_iter=3,
                    tol=0)
    model = GaussianMixture(backend=backend, **settings)
    model.fit(x[:50])  # what a first fit loads once (the backend's modules) is not the fit's
    tracemalloc.start()
    model.fit(x)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    model_bytes = k * d * d * 8
    assert peak < 12 * model_bytes + 10 * x.nbytes, peak / model_bytes
    # The same numbers as the plain form (scikit-learn's) from the same start.
    sklearn = pytest.importorskip("sklearn.mixture")
    theirs = sklearn.GaussianMixture(**settings).fit(x)
    assert model.score(x) == pytest.approx(theirs.score(x), rel=1e-9)
    np.testing.assert_allclose(model.covariances_, theirs.covariances_, rtol=1e-7, atol=1e-10)
    assert plan_e_step(some_params("full", x, k=k)).all_exact(k)
