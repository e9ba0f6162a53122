import numpy as np
import pytest

from gaussmix._mathematics.em import e_step, params_from_precision_cholesky, plan_e_step
from gaussmix._foundations.covariance import precision_cholesky
from gaussmix._foundations.stats import Stats, merge_worst, sum_stats

from ..conftest import COVARIANCE_TYPES, make_blobs


def some_params(covariance_type, x, k=4, seed=1):
    rng = np.random.RandomState(seed)
    d = x.shape[1]
    means = x[rng.choice(len(x), k, replace=False)]
    covariances = {
        "full": np.tile(np.eye(d), (k, 1, 1)) * 2.0,
        "tied": np.eye(d) * 2.0,
        "diag": np.full((k, d), 2.0),
        "spherical": np.full(k, 2.0),
    }[covariance_type]
    prec_chol = precision_cholesky(covariances, covariance_type, 1e-12)[0]
    return params_from_precision_cholesky(np.full(k, 1.0 / k), means, prec_chol, covariance_type)


def assert_stats_close(a, b, rtol=1e-12):
    assert a.covariance_type == b.covariance_type
    for name in ("center", "resp_sum", "x_sum", "xx_sum", "worst_log_prob", "worst_points"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=rtol, atol=1e-12)
    assert a.log_likelihood == pytest.approx(b.log_likelihood, rel=rtol)
    assert a.weight_sum == pytest.approx(b.weight_sum, rel=rtol)
    assert a.n_rows == b.n_rows


@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_statistics_of_disjoint_chunks_add_up_to_the_union(covariance_type, exact):
    x = make_blobs() - 1.0
    w = np.random.RandomState(3).uniform(0, 2, len(x))
    w[::7] = 0.0
    params = some_params(covariance_type, x)
    plan = plan_e_step(params, exact=exact)
    whole = e_step(x, w, params, plan)
    for split in (1, 50, 151, 299):
        parts = e_step(x[:split], w[:split], params, plan) + e_step(x[split:], w[split:], params, plan)
        assert_stats_close(parts, whole)
    three = sum_stats(e_step(x[i:i + 100], w[i:i + 100], params, plan) for i in range(0, len(x), 100))
    assert_stats_close(three, whole)
    assert sum([whole]) is whole  # sum() starts from 0


def test_adding_statistics_of_different_mixtures_is_refused():
    x = make_blobs()
    w = np.ones(len(x))
    a = e_step(x, w, some_params("diag", x))
    b = e_step(x, w, some_params("diag", x, k=3))
    with pytest.raises(ValueError, match="different shapes"):
        a + b
    with pytest.raises(ValueError, match="different shapes"):
        a + e_step(x, w, some_params("spherical", x))
    assert a.__add__("no") is NotImplemented
    with pytest.raises(ValueError, match="different centres"):
        a + e_step(x, w, some_params("diag", x), plan_e_step(some_params("diag", x), exact=True))


def test_merge_worst_is_independent_of_order():
    rng = np.random.RandomState(0)
    lp = [rng.randn(5), rng.randn(5)]
    pts = [rng.randn(5, 2), rng.randn(5, 2)]
    a = merge_worst(lp, pts, 4)
    b = merge_worst(lp[::-1], pts[::-1], 4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert np.all(np.diff(a[0]) >= 0)


def test_sum_of_nothing_is_an_error():
    with pytest.raises(ValueError, match="no rows"):
        sum_stats([])


def test_stats_are_immutable_values():
    x = make_blobs()
    s = e_step(x, np.ones(len(x)), some_params("full", x))
    assert isinstance(s, Stats)
    with pytest.raises(AttributeError):
        s.log_likelihood = 0.0
    assert s.n_components == 4 and s.n_features == 3


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_recentred_statistics_give_the_same_parameters(covariance_type):
    x = make_blobs()
    params = some_params(covariance_type, x)
    stats = e_step(x, np.ones(len(x)), params, plan_e_step(params, exact=True))
    moved = stats.recentered(np.random.RandomState(0).randn(4, 3))
    from gaussmix._mathematics.em import m_step

    a, _ = m_step(stats, 1e-6, 1e-6)
    b, _ = m_step(moved, 1e-6, 1e-6)
    for name in ("weights", "means", "covariances"):
        np.testing.assert_allclose(getattr(b, name), getattr(a, name), rtol=1e-9, atol=1e-12)
    half = stats.scaled(0.5)
    assert half.weight_sum == 0.5 * stats.weight_sum and half.n_rows == stats.n_rows


@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_translated_statistics_are_those_of_the_moved_rows(covariance_type, exact):
    x = make_blobs()
    w = np.random.RandomState(0).uniform(0.5, 2, len(x))
    params = some_params(covariance_type, x)
    offset = np.array([3.0, -7.0, 1e3])
    far = params.shifted(offset)
    moved = e_step(x + offset, w, far, plan_e_step(far, exact=True))  # accurate far away
    stats = e_step(x, w, params, plan_e_step(params, exact=exact)).translated(offset)
    assert_stats_close(stats, moved.recentered(stats.center), rtol=1e-9)


@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_the_spread_of_statistics_is_the_weighted_mean_and_variance_of_the_rows(
        covariance_type, exact):
    """Read off the moments of any E-step (about the means, or the origin of working
    coordinates near the rows) without the rows: the weighted mean and per-feature variance
    (spherical: their mean over features)."""
    x = make_blobs() * [1.0, 1e3, 1e-2] + [1e6 if exact else 10.0, -5.0, 0.0]
    w = np.random.RandomState(3).uniform(0, 2, len(x))
    w[::7] = 0.0
    stats = e_step(x, w, some_params(covariance_type, x), plan_e_step(
        some_params(covariance_type, x), exact=exact))
    mean, variance = stats.spread()
    expected_mean = np.average(x, axis=0, weights=w)
    expected = np.average((x - expected_mean) ** 2, axis=0, weights=w)
    if covariance_type == "spherical":
        expected = np.full(3, expected.mean())
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-12)
    np.testing.assert_allclose(variance, expected, rtol=1e-9)


def test_statistics_without_responsibility_have_no_spread():
    x = make_blobs()
    stats = e_step(x, np.zeros(len(x)), some_params("diag", x))
    mean, variance = stats.spread()
    assert not mean.any() and not variance.any()
