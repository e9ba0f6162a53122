"""Passes over rows in their own order (adaptation, Fisher vectors, a stream's chunk): the
kernel's pass over rows in memory against a fit's plan, the spread it reads off its
statistics, its refusals and its exact moments."""

import numpy as np
import pytest

from gaussmix import GaussianMixture
from gaussmix._fitting.one_pass import (
    KernelPass,
    PlannedPass,
    moments_may_cancel,
    one_pass,
)
from gaussmix._mathematics.em import e_step, plan_e_step
from gaussmix.features import fisher_vector

from ..conftest import COVARIANCE_TYPES
from ..test_hostile import one_sentence


def clusters(rng, n=3000, d=3, offset=0.0):
    centres = rng.normal(0, 5, (6, d))
    return centres[rng.integers(0, 6, n)] + rng.normal(0, 1, (n, d)) + offset


@pytest.fixture(scope="module", params=COVARIANCE_TYPES)
def fitted(request):
    rng = np.random.default_rng(0)
    model = GaussianMixture(6, covariance_type=request.param, random_state=0).fit(clusters(rng))
    return model


def with_backend(model, backend):
    return GaussianMixture.from_params(model.weights_, model.means_, model.covariances_,
                                       covariance_type=model.covariance_type, backend=backend)


def test_complete_rows_in_memory_take_the_kernel_and_the_rest_a_fits_plan(fitted, tmp_path):
    rng = np.random.default_rng(1)
    x = clusters(rng)
    numba, numpy = with_backend(fitted, "numba"), with_backend(fitted, "numpy")
    assert isinstance(one_pass(x, None, numba), KernelPass)
    assert isinstance(one_pass(x.astype(np.float32), None, numba), KernelPass)
    assert isinstance(one_pass(x, None, numpy), PlannedPass)
    holes = x.copy()
    holes[0, 0] = np.nan
    assert isinstance(one_pass(holes, None, numba), PlannedPass)
    np.save(tmp_path / "rows.npy", x)
    assert isinstance(one_pass(str(tmp_path / "rows.npy"), None, numba), PlannedPass)


@pytest.mark.parametrize("offset", [0.0, 1e8])
def test_the_kernels_pass_gives_a_fits_statistics(fitted, offset):
    """In the rows' own coordinates, far from the origin too: the same statistics, spread and
    jitter floor as a fit's plan (which measures the data first)."""
    rng = np.random.default_rng(2)
    model = GaussianMixture.from_params(fitted.weights_, fitted.means_ + offset,
                                        fitted.covariances_,
                                        covariance_type=fitted.covariance_type)
    x = clusters(rng, offset=offset)
    w = rng.uniform(0, 2, len(x))
    w[::9] = 0.0
    kernel = one_pass(x, w, with_backend(model, "numba"))
    planned = one_pass(x, w, with_backend(model, "numpy"))
    params = model._params()
    a, b = kernel.statistics(params), planned.statistics(params).recentered(params.means)
    scale = b.resp_sum.sum()
    np.testing.assert_allclose(a.resp_sum, b.resp_sum, rtol=1e-10, atol=1e-10 * scale)
    np.testing.assert_allclose(a.x_sum, b.x_sum, atol=1e-9 * scale)
    np.testing.assert_allclose(a.xx_sum, b.xx_sum, rtol=1e-9, atol=1e-9 * scale)
    assert a.log_likelihood == pytest.approx(b.log_likelihood, rel=1e-12)
    assert a.weight_sum == pytest.approx(b.weight_sum, rel=1e-15) and a.n_rows == b.n_rows
    variance = planned.plan.variance
    if model.covariance_type == "spherical":  # its statistics hold traces only
        variance = np.full_like(variance, variance.mean())
    for got, expected in zip(a.spread(), (np.average(x, axis=0, weights=w), variance)):
        np.testing.assert_allclose(got, expected, rtol=1e-9)
    assert kernel.jitter_floor(a) == pytest.approx(planned.jitter_floor(b), rel=1e-9)
    assert kernel.dtype == planned.dtype == np.float64


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_rows_beyond_float64_are_refused_as_a_fit_refuses_them(backend):
    rng = np.random.default_rng(3)
    x = clusters(rng)
    model = with_backend(GaussianMixture(4, random_state=0).fit(x), backend)
    wide = x.copy()
    wide[7] = 1e200  # the fit's plan finds the spread too wide, the kernel the row too far
    for attempt in (lambda: model.adapt(wide), lambda: fisher_vector(model, wide)):
        with pytest.raises(ValueError, match="spreads too widely|so far from every") as error:
            attempt()
        assert one_sentence(str(error.value))
    far = rng.normal(0, 1, (500, 3)) + 1e160  # narrow, but beyond every component's reach
    for attempt in (lambda: model.adapt(far), lambda: fisher_vector(model, far)):
        with pytest.raises(ValueError, match="so far from every component") as error:
            attempt()
        assert one_sentence(str(error.value))


def test_moments_that_could_cancel_are_summed_in_difference_form():
    """A far row in a tile of ordinary rows and a prior far wider than the rows: the
    kernel's moments are exact relative to the prior's spread only, so the adaptation's are
    summed about each mean instead, and equal the difference form's."""
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.normal(0, 1e-3, (200, 2)), [[1e7, -1e7]]])
    prior = GaussianMixture.from_params([0.5, 0.5], [[0.0, 0.0], [1e7, -1e7]],
                                        [1e12, 1e12], covariance_type="spherical",
                                        backend="numba")
    rows = one_pass(x, None, prior)
    params = prior._params()
    fast = rows.statistics(params)
    assert moments_may_cancel(fast, x.min(axis=0), x.max(axis=0), params, 0.0, 1e-6)
    exact = e_step(x, np.ones(len(x)), params, plan_e_step(params, exact=True))
    found = rows.exact_statistics(params)
    np.testing.assert_allclose(found.xx_sum, exact.xx_sum, rtol=1e-12)
    np.testing.assert_allclose(found.x_sum, exact.x_sum, rtol=1e-12, atol=1e-18)
    benign = clusters(rng)
    model = GaussianMixture(4, random_state=0, backend="numba").fit(benign)
    stats = one_pass(benign, None, model).statistics(model._params())
    assert not moments_may_cancel(stats, benign.min(axis=0), benign.max(axis=0),
                                  model._params(), 0.0, 1e-6)
