"""The fit plan and the shared loop (``_fit``)."""

import numpy as np
import pytest

import gaussmix._data.backends as backends
from gaussmix import GaussianMixture
from gaussmix._data.chunks import FitData
from gaussmix._data.streams import StreamData, single_pass
from gaussmix._mathematics.em import expectation
from gaussmix._fitting.fit import (
    InitSpec,
    Reporter,
    fit_best,
    initial_starts,
    plan_fit,
    plan_statistics,
)
from gaussmix._data.inputs import ARRAY, STREAM, input_for
from gaussmix.mixture import FitProgress
from gaussmix._foundations.validation import check_random_state

from ..conftest import identity_start, make_blobs


def prepared(X, k=3, backend=None):
    return ARRAY.prepare(X, None, k, backend)[0]


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_the_plan_resolves_everything_once(backend):
    X = make_blobs()
    data = prepared(X)
    plan = plan_fit(data, 3, backend=backend, chunk_size=64, reg_covar=1e-6)
    assert plan.backend == backend and plan.chunk_size == 64 and plan.reg_covar == 1e-6
    if backend == "numba":
        from gaussmix._data.tiled import TiledSource
        from gaussmix._kernels.numba_estep import fused_expectation

        assert isinstance(plan.source, TiledSource) and plan.expectation is fused_expectation
    else:
        assert plan.expectation is expectation and plan.source.chunk_size == 64
    # The origin: each feature's median (a mean would follow a few far rows).
    np.testing.assert_array_equal(plan.shift, np.sort(X, axis=0)[(len(X) - 1) // 2])
    assert plan.jitter_floor == max(1e-6, 1e-10 * X.var(axis=0).mean())
    assert plan.dtype == np.float64 and plan.n_features == 3


def test_a_fit_resolves_its_backend_once(monkeypatch):
    calls = []
    resolve = backends.resolve

    def counting(*args, **kwargs):
        calls.append(args)
        return resolve(*args, **kwargs)

    monkeypatch.setattr(backends, "resolve", counting)
    GaussianMixture(3, n_init=3, random_state=0).fit(make_blobs())
    planned = [c for c in calls if len(c) > 1]  # the other call validates the parameter
    assert len(planned) == 1 and len(calls) == 2


def test_input_adapters_are_chosen_from_the_type(tmp_path):
    np.save(tmp_path / "x.npy", make_blobs())
    assert input_for(make_blobs()) is ARRAY and input_for([[1.0, 2.0]]) is ARRAY
    assert input_for(str(tmp_path / "x.npy")) is STREAM
    assert input_for(tmp_path / "x.npy") is STREAM
    assert input_for(np.load(tmp_path / "x.npy", mmap_mode="r")) is STREAM
    assert input_for(lambda: iter([make_blobs()])) is STREAM
    data = STREAM.prepare(str(tmp_path / "x.npy"), None, 3)[0]
    assert isinstance(data, StreamData) and data.n_rows == 300
    assert isinstance(prepared(make_blobs()), FitData)


def test_given_initial_parameters_start_every_initialisation():
    X = make_blobs()
    data = prepared(X)
    plan = plan_fit(data, 4, backend="numpy", reg_covar=1e-6)
    given = identity_start(X, 4, "full")
    spec = InitSpec(4, "full", "kmeans", given["weights_init"], given["means_init"],
                    np.tile(np.eye(3), (4, 1, 1)))
    starts = initial_starts(plan, spec, check_random_state(0), 3)
    assert len(starts) == 3
    for start in starts:
        np.testing.assert_allclose(start().means + plan.shift, given["means_init"])


def test_fit_best_keeps_the_highest_lower_bound_in_data_coordinates():
    X = make_blobs()
    plan = plan_fit(prepared(X), 3, backend="numpy", reg_covar=1e-6)
    spec = InitSpec(3, "full", "random")
    starts = initial_starts(plan, spec, check_random_state(0), 4)
    seen = []
    reporter = Reporter(callback=lambda progress: seen.append(progress),
                        progress=FitProgress._make)
    best = fit_best(plan, starts, tol=1e-3, max_iter=50, reporter=reporter)
    finals = {}
    for p in seen:
        finals[p.init] = p.lower_bound
    assert best.lower_bound == max(finals.values()) and len(finals) == 4
    assert np.linalg.norm(best.params.means.mean(axis=0) - X.mean(axis=0)) < 3


def test_plan_statistics_are_in_data_coordinates():
    X = make_blobs() + 1e3
    gm = GaussianMixture(3, random_state=0).fit(X)
    plan = plan_fit(prepared(X), 3, backend="numpy")
    stats = plan_statistics(plan, gm._params())
    assert stats.weight_sum == len(X)
    assert np.abs(stats.worst_points).min() > 900  # rows of X, not of the centred data
    assert stats.log_likelihood / stats.weight_sum == pytest.approx(gm.score(X), rel=1e-9)


def test_one_pass_data_are_streamed_not_reordered():
    """A partial_fit chunk is seen once: no k-d reordering of its rows into a held source."""
    from gaussmix._kernels.numba_estep import streaming_fused_expectation

    data = prepared(make_blobs())
    once = single_pass(data, 64)
    assert isinstance(once, StreamData) and not once.held_in_memory
    assert once.n_rows == data.n_rows and once.total_weight == data.n_rows
    np.testing.assert_array_equal(once.shift, data.shift)
    plan = plan_fit(once, 3, backend="numba")
    assert plan.expectation is streaming_fused_expectation
    assert plan.jitter_floor == plan_fit(data, 3, backend="numba").jitter_floor
