import numpy as np
import pytest

from gaussmix._foundations import covariance as cov

from ..conftest import COVARIANCE_TYPES


def random_covariances(covariance_type, k=4, d=3, seed=0):
    rng = np.random.RandomState(seed)
    if covariance_type in ("full", "tied"):
        a = rng.randn(k, d, d)
        mats = a @ a.transpose(0, 2, 1) + 0.5 * np.eye(d)
        return mats if covariance_type == "full" else mats[0]
    if covariance_type == "diag":
        return rng.uniform(0.2, 3.0, size=(k, d))
    return rng.uniform(0.2, 3.0, size=k)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_precision_cholesky_round_trip(covariance_type):
    covariances = random_covariances(covariance_type)
    prec_chol, used, n_fixed, _ = cov.precision_cholesky(covariances, covariance_type, 1e-12)
    assert n_fixed == 0
    np.testing.assert_allclose(used, covariances)
    back = cov.covariances_from_precision_cholesky(prec_chol, covariance_type)
    np.testing.assert_allclose(back, covariances, rtol=1e-10)
    precisions = cov.precisions_from_precision_cholesky(prec_chol, covariance_type)
    again = cov.precision_cholesky_from_precisions(precisions, covariance_type)
    np.testing.assert_allclose(again, prec_chol, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_precision_cholesky_is_upper_and_inverts_covariance(covariance_type):
    covariances = random_covariances(covariance_type)
    prec_chol = cov.precision_cholesky(covariances, covariance_type, 1e-12)[0]
    np.testing.assert_allclose(np.tril(prec_chol, -1), 0.0, atol=1e-14)
    precision = prec_chol @ np.swapaxes(prec_chol, -1, -2)
    np.testing.assert_allclose(precision @ covariances, np.broadcast_to(np.eye(3), covariances.shape),
                               atol=1e-10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_log_det_is_half_the_precision_log_det(covariance_type):
    covariances = random_covariances(covariance_type)
    prec_chol = cov.precision_cholesky(covariances, covariance_type, 1e-12)[0]
    log_det = cov.log_det_precision_cholesky(prec_chol, covariance_type, 3)
    if covariance_type in ("full", "tied"):
        expected = -0.5 * np.linalg.slogdet(covariances)[1]
    elif covariance_type == "diag":
        expected = -0.5 * np.log(covariances).sum(axis=1)
    else:
        expected = -0.5 * 3 * np.log(covariances)
    np.testing.assert_allclose(log_det, expected, rtol=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_covariance_cholesky_factors_covariance(covariance_type):
    covariances = random_covariances(covariance_type)
    prec_chol = cov.precision_cholesky(covariances, covariance_type, 1e-12)[0]
    factor = cov.covariance_cholesky_from_precision_cholesky(prec_chol, covariance_type)
    if covariance_type in ("full", "tied"):
        np.testing.assert_allclose(factor @ np.swapaxes(factor, -1, -2), covariances, rtol=1e-10)
    else:
        np.testing.assert_allclose(factor**2, covariances, rtol=1e-12)


def test_singular_full_covariance_gets_minimal_jitter():
    v = np.array([1.0, 2.0, 3.0])
    singular = np.stack([np.outer(v, v), np.eye(3)])  # rank one, then fine
    prec_chol, used, n_fixed, max_jitter = cov.precision_cholesky(singular, "full", 1e-9)
    assert n_fixed == 1
    assert 1e-9 <= max_jitter < 1e-3
    assert np.isfinite(prec_chol).all()
    assert cov.is_positive_definite(used)
    np.testing.assert_allclose(used[1], np.eye(3))


def test_non_finite_covariance_becomes_scaled_identity():
    bad = np.full((1, 2, 2), np.nan)
    prec_chol, used, n_fixed, _ = cov.precision_cholesky(bad, "full", 1e-6)
    assert n_fixed == 1
    assert np.isfinite(prec_chol).all() and np.isfinite(used).all()


@pytest.mark.parametrize("covariance_type", ["diag", "spherical"])
def test_non_positive_variances_are_floored(covariance_type):
    variances = np.array([[1.0, -1e-9], [0.0, 2.0]]) if covariance_type == "diag" else np.array(
        [1.0, -1e-9, 0.0]
    )
    prec_chol, used, n_fixed, max_jitter = cov.precision_cholesky(variances, covariance_type, 1e-7)
    assert n_fixed == 2
    assert max_jitter == 1e-7
    assert (used > 0).all() and np.isfinite(prec_chol).all()


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_n_parameters_matches_scikit_learn(covariance_type):
    from sklearn.mixture import GaussianMixture

    gm = GaussianMixture(4, covariance_type=covariance_type).fit(np.random.RandomState(0).randn(50, 3))
    assert cov.n_parameters(4, 3, covariance_type) == gm._n_parameters()


def test_is_positive_definite():
    assert cov.is_positive_definite(np.eye(2))
    assert not cov.is_positive_definite(np.array([[1.0, 2.0], [2.0, 1.0]]))
    assert not cov.is_positive_definite(np.array([[1.0, 0.5], [0.0, 1.0]]))


def test_batched_triangular_solves_match_scipy():
    import scipy.linalg

    rng = np.random.RandomState(0)
    a = rng.randn(5, 4, 4)
    lower = np.tril(a) + 4 * np.eye(4)
    rhs = rng.randn(5, 4, 3)
    expected = np.stack([scipy.linalg.solve_triangular(l, b, lower=True) for l, b in zip(lower, rhs)])
    np.testing.assert_allclose(cov.solve_lower(lower, rhs), expected, rtol=1e-12)
    upper = np.swapaxes(lower, 1, 2)
    expected = np.stack([scipy.linalg.solve_triangular(u, b) for u, b in zip(upper, rhs)])
    np.testing.assert_allclose(cov.solve_upper(upper, rhs), expected, rtol=1e-12)
    np.testing.assert_allclose(cov.inverse_lower(lower) @ lower, np.broadcast_to(np.eye(4), lower.shape),
                               atol=1e-12)


def test_packed_upper_triangles_unpack_to_symmetric_matrices():
    m = random_covariances("full")
    rows, cols = cov.upper_triangle(3)
    np.testing.assert_array_equal(cov.unpack_upper(m[:, rows, cols], 3), m)
    np.testing.assert_array_equal(cov.second_moments_from_packed(m[:, rows, cols], "tied", 3),
                                  m.sum(axis=0))
    diag = random_covariances("diag")
    np.testing.assert_array_equal(cov.second_moments_from_packed(diag, "diag", 3), diag)
    np.testing.assert_array_equal(cov.second_moments_from_packed(diag, "spherical", 3),
                                  diag.sum(axis=1))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_as_full_expands_every_type_to_stacked_matrices(covariance_type):
    c = random_covariances(covariance_type)
    full = cov.as_full(c, covariance_type, 4, 3)
    assert full.shape == (4, 3, 3)
    if covariance_type == "full":
        expected = c
    elif covariance_type == "tied":
        expected = np.stack([c] * 4)
    elif covariance_type == "diag":
        expected = np.stack([np.diag(v) for v in c])
    else:
        expected = np.stack([v * np.eye(3) for v in c])
    np.testing.assert_array_equal(full, expected)


@pytest.mark.parametrize("stack", [(2,), (40,)])  # fewer matrices than rows (LAPACK), more
def test_triangular_solves_and_inverses_match_scipy_in_both_layouts(stack):
    import scipy.linalg

    rng = np.random.RandomState(1)
    d = 12
    lower = np.tril(rng.randn(*stack, d, d)) + 5 * np.eye(d)
    rhs = rng.randn(*stack, d, 3)
    want = np.stack([scipy.linalg.solve_triangular(m, b, lower=True) for m, b in zip(lower, rhs)])
    np.testing.assert_allclose(cov.solve_lower(lower, rhs), want, rtol=1e-12)
    inverses = np.stack([scipy.linalg.inv(m) for m in lower])
    np.testing.assert_allclose(cov.inverse_lower(lower), inverses, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(cov._invert_lower_in_place(lower.copy()), inverses, rtol=1e-12,
                               atol=1e-15)
    covariances = lower @ np.swapaxes(lower, 1, 2)
    prec_chol = cov.precision_cholesky(covariances, "full", 1e-12)[0]
    np.testing.assert_allclose(np.swapaxes(prec_chol, 1, 2), inverses, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("stack", [(2,), (40,)])
def test_a_zero_on_the_diagonal_gives_the_same_infinities_in_both_layouts(stack):
    rng = np.random.RandomState(2)
    d = 12
    lower = np.tril(rng.randn(*stack, d, d)) + 5 * np.eye(d)
    lower[0, 3, 3] = 0.0
    eye = np.broadcast_to(np.eye(d), lower.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        plain = cov._substitution(lower, eye, lower.shape)
        results = (cov.inverse_lower(lower), cov._invert_lower_in_place(lower.copy()),
                   cov.solve_lower(lower, eye))
    assert not np.isfinite(plain[0]).all()
    for got in results:
        np.testing.assert_array_equal(got[0], plain[0])
        np.testing.assert_allclose(got[1:], plain[1:], rtol=1e-12, atol=1e-15)
