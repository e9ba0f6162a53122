"""The fused kernel over rows with holes (every pattern in one pass) against the numpy path
of ``_missing``, which is itself proven against a plain reference EM (tests/test_missing.py).
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gaussmix import GaussianMixture
from gaussmix._data import missing as _missing
from gaussmix._kernels import holes
from gaussmix._kernels.fused import PRUNE_MIN_K
from gaussmix.exceptions import ConvergenceWarning

from ..conftest import COVARIANCE_TYPES

pytestmark = pytest.mark.filterwarnings("ignore", category=ConvergenceWarning)


def clustered_with_holes(n=3000, d=4, k=12, share=0.2, seed=0):
    rng = np.random.RandomState(seed)
    centres = rng.normal(scale=6.0, size=(k, d))
    x = centres[rng.randint(k, size=n)] + rng.normal(size=(n, d)) * rng.uniform(0.3, 1.5, d)
    x[rng.uniform(size=x.shape) < share] = np.nan
    x[rng.uniform(size=n) < 0.3, 1:] = np.nan  # many rows observe only the first feature
    return x


def start_params(x, k, covariance_type):
    """Parameters near a fit (so that pruning has far components to skip), in the working
    coordinates of the prepared data."""
    data = _missing.prepare(x, np.ones(len(x)), 4096)
    model = GaussianMixture(k, covariance_type=covariance_type, max_iter=3, random_state=0)
    model.fit(x)
    return data, model._params().shifted(-data.shift)


def assert_same_stats(ours, ref, log_likelihood_rel=1e-12):
    np.testing.assert_allclose(ours.resp_sum, ref.resp_sum, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ours.x_sum, ref.x_sum, rtol=1e-9, atol=1e-7)
    np.testing.assert_allclose(ours.xx_sum, ref.xx_sum, rtol=1e-9, atol=1e-7)
    assert ours.log_likelihood == pytest.approx(ref.log_likelihood, rel=log_likelihood_rel)
    assert ours.weight_sum == pytest.approx(ref.weight_sum)
    assert ours.n_rows == ref.n_rows


@pytest.mark.parametrize("k", [3, 2 * PRUNE_MIN_K])
def test_kernel_statistics_equal_the_pattern_by_pattern_ones(covariance_type, k):
    x = clustered_with_holes()
    data, params = start_params(x, k, covariance_type)
    patterns = data._hole_patterns()
    tiles = holes.HoleTiles(patterns, data.holes, data.hole_weights)
    ref = _missing.stats(data.holes, data.hole_weights, params, {"patterns": patterns})
    first = holes.hole_stats(tiles, params)
    assert_same_stats(first, ref)
    assert_same_stats(holes.hole_stats(tiles, params), ref)  # now with hints


def test_stale_workspace_contents_never_reach_the_statistics(monkeypatch):
    """Marginal parameters, bound layout, slots and scratch live across E-steps uninitialised:
    filled with NaN between passes, over batches of a few patterns and another K, the
    statistics still equal the pattern-by-pattern ones."""
    x = clustered_with_holes(n=2000)
    monkeypatch.setattr(holes, "BATCH_VALUES", 2000)  # a few patterns per batch
    data, _ = start_params(x, 3, "full")
    patterns = data._hole_patterns()
    tiles = holes.HoleTiles(patterns, data.holes, data.hole_weights)
    for k, covariance_type in ((2 * PRUNE_MIN_K, "full"), (30, "diag"), (2 * PRUNE_MIN_K, "full")):
        _, params = start_params(x, k, covariance_type)
        ref = _missing.stats(data.holes, data.hole_weights, params, {"patterns": patterns})
        for _ in range(2):
            for buffer in tiles.workspace._buffers.values():
                buffer.fill(np.nan if buffer.dtype.kind == "f" else -7)
            assert_same_stats(holes.hole_stats(tiles, params), ref)


def test_pruning_skips_pairs_and_batches_change_nothing(monkeypatch):
    x = clustered_with_holes(n=6000, k=40)
    data, params = start_params(x, 2 * PRUNE_MIN_K, "full")
    patterns = data._hole_patterns()
    tiles = holes.HoleTiles(patterns, data.holes, data.hole_weights, tile_rows=16)
    whole = holes.hole_stats(tiles, params)
    from gaussmix._kernels import numba_estep as numba_backend

    evaluated = []
    original = numba_backend.grouped_e_step

    def counting(*args):
        sums = original(*args)
        evaluated.append(sums.pairs)
        return sums

    monkeypatch.setattr(holes, "grouped_e_step", counting)
    monkeypatch.setattr(holes, "BATCH_VALUES", 1)  # one pattern per batch
    assert_same_stats(holes.hole_stats(tiles, params), whole)
    tiled = sum(level.n_tiled for level in tiles.levels)
    assert len(evaluated) == tiled > 1  # the patterns of few rows take no tiles
    tiled_rows = sum(int(level.starts[level.pattern_tiles[level.n_tiled]])
                     for level in tiles.levels)
    assert sum(evaluated) < 0.5 * tiled_rows * params.n_components


@pytest.mark.parametrize("direct_rows", [0, 10**9])
def test_patterns_of_few_rows_meet_every_component_directly(monkeypatch, covariance_type,
                                                            direct_rows):
    """Every pattern on the tiles, or every one direct (each row against every component):
    the same statistics, zero weights included."""
    monkeypatch.setattr(holes, "DIRECT_MAX_ROWS", direct_rows)
    x = clustered_with_holes(n=1500)
    w = np.random.RandomState(3).choice([0.0, 0.5, 2.0], size=len(x))
    data = _missing.prepare(x, w, 4096)
    _, params = start_params(x, 2 * PRUNE_MIN_K, covariance_type)
    patterns = data._hole_patterns()
    tiles = holes.HoleTiles(patterns, data.holes, data.hole_weights)
    n_direct = sum(len(level.observed) - level.n_tiled for level in tiles.levels)
    assert n_direct == (len(patterns) if direct_rows else 0)
    assert_same_stats(holes.hole_stats(tiles, params),
                      _missing.stats(data.holes, data.hole_weights, params,
                                     {"patterns": patterns}))


@pytest.mark.parametrize("k", [PRUNE_MIN_K, PRUNE_MIN_K + 1])
def test_the_patterns_of_few_rows_run_direct_only_where_the_tiles_are_bounded(k):
    """With at most PRUNE_MIN_K components the kernel takes them all for every tile (no
    bounds to skip) and every pattern stays on the tiles; with more, the small ones run
    direct. The statistics are the same either way."""
    x = clustered_with_holes(n=1500)
    data, params = start_params(x, k, "full")
    patterns = data._hole_patterns()
    tiles = holes.HoleTiles(patterns, data.holes, data.hole_weights)
    direct = [batch for _, _, batch in tiles.batches(k) if batch.direct]
    small = sum(len(p.rows) <= holes.DIRECT_MAX_ROWS for p in patterns)
    assert small > 0
    assert sum(len(batch.starts) - 1 for batch in direct) == (small if k > PRUNE_MIN_K else 0)
    # The tiles' expanded quadratic forms round differently from the numpy path's (3e-12
    # relative over these rows with 24 components).
    assert_same_stats(holes.hole_stats(tiles, params),
                      _missing.stats(data.holes, data.hole_weights, params,
                                     {"patterns": patterns}), log_likelihood_rel=1e-11)


def test_direct_rows_with_components_that_weigh_nothing(monkeypatch):
    """Components of weight 0 (logits of -inf, a whole chunk of the direct kernels' and
    more): no NaN, responsibilities at the exponential's floor (exp(-700) of a row's
    largest), and the other components' statistics."""
    from dataclasses import replace

    monkeypatch.setattr(holes, "DIRECT_MAX_ROWS", 10**9)
    k = holes.DIRECT_CHUNK + 40
    x = clustered_with_holes(n=1200)
    data, params = start_params(x, k, "full")
    weights = params.weights.copy()
    weights[:holes.DIRECT_CHUNK + 1] = 0.0
    params = replace(params, weights=weights / weights.sum())
    patterns = data._hole_patterns()
    tiles = holes.HoleTiles(patterns, data.holes, data.hole_weights)
    ours = holes.hole_stats(tiles, params)
    assert np.isfinite(ours.log_likelihood)
    assert np.all(ours.resp_sum[:holes.DIRECT_CHUNK + 1] < 1e-290 * len(data.holes))
    assert_same_stats(ours, _missing.stats(data.holes, data.hole_weights, params,
                                           {"patterns": patterns}))


def test_zero_weight_rows_count_for_nothing():
    x = clustered_with_holes(n=800)
    w = np.random.RandomState(1).choice([0.0, 0.5, 3.0], size=len(x))
    data = _missing.prepare(x, w, 4096)
    params = GaussianMixture(4, random_state=0, max_iter=2).fit(x)._params().shifted(
        -data.shift)
    patterns = data._hole_patterns()
    tiles = holes.HoleTiles(patterns, data.holes, data.hole_weights)
    assert_same_stats(holes.hole_stats(tiles, params),
                      _missing.stats(data.holes, data.hole_weights, params,
                                     {"patterns": patterns}))


def test_fits_with_holes_are_the_same_on_both_backends(covariance_type):
    x = clustered_with_holes(n=2000, k=6)
    fits = [GaussianMixture(30, covariance_type=covariance_type, backend=backend, max_iter=5,
                            tol=0.0, random_state=0).fit(x) for backend in ("numpy", "numba")]
    np.testing.assert_allclose(fits[1].means_, fits[0].means_, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(fits[1].covariances_, fits[0].covariances_, rtol=1e-7,
                               atol=1e-8)
    assert fits[1].lower_bound_ == pytest.approx(fits[0].lower_bound_, rel=1e-10)


def test_marginal_parameters_stay_within_their_batches_for_any_number_of_patterns(
        monkeypatch):
    import tracemalloc

    rng = np.random.RandomState(5)
    x = rng.normal(size=(3000, 10))
    x[rng.uniform(size=x.shape) < 0.4] = np.nan  # about 900 patterns
    data, params = start_params(x, 30, "full")
    patterns = data._hole_patterns()
    tiles = holes.HoleTiles(patterns, data.holes, data.hole_weights)
    # prec_chol and precisions of every pattern at once, unbatched
    whole = sum(2 * 30 * len(p.observed) ** 2 * 8 for p in patterns)
    assert len(patterns) > 800 and whole > 10e6
    monkeypatch.setattr(holes, "BATCH_VALUES", 2**15)  # 256 KB per array of marginals
    holes.hole_stats(tiles, params)  # compiled
    tracemalloc.start()
    batched = holes.hole_stats(tiles, params)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8e6, peak
    monkeypatch.setattr(holes, "BATCH_VALUES", 4 * 2**20)
    assert_same_stats(batched, holes.hole_stats(tiles, params))


def test_the_direct_rows_exponentials_stay_within_their_batches(monkeypatch):
    """Thousands of direct rows, many components: their (rows, K) exponentials are made
    batch by batch, so memory stays that of a batch (and of the (K, D, D) sums), not that
    of a level's rows."""
    import tracemalloc

    rng = np.random.RandomState(7)
    x = rng.normal(size=(12000, 10))  # 40% missing: about a thousand patterns
    x[rng.uniform(size=x.shape) < 0.4] = np.nan
    x[np.isnan(x).all(axis=1), 0] = 0.0
    data, params = start_params(x, 100, "full")
    patterns = data._hole_patterns()
    reference = holes.hole_stats(holes.HoleTiles(patterns, data.holes, data.hole_weights),
                                 params)
    monkeypatch.setattr(holes, "BATCH_VALUES", 2**14)  # 128 KB of exponentials a batch
    monkeypatch.setattr(holes, "DIRECT_MAX_ROWS", 10**9)  # every pattern direct
    tiles = holes.HoleTiles(patterns, data.holes, data.hole_weights)  # buffers not grown yet
    # A level's direct rows' exponentials at once (the levels take turns with one buffer).
    direct_rows = max(int(level.pattern_starts[-1] - level.pattern_starts[level.n_tiled])
                      for level in tiles.levels)
    whole = direct_rows * params.n_components * 8
    assert whole > 2e6
    tracemalloc.start()
    batched = holes.hole_stats(tiles, params)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < whole / 2, (peak, whole)
    assert_same_stats(batched, reference)


@pytest.mark.parametrize("scale", [1e130, 1e-130])
def test_marginals_hold_at_huge_and_tiny_scales(scale):
    """Data and mixture scaled alike: the statistics scale exactly and the log-likelihood
    moves by the observed entries' log-scale, though the marginals' log-determinants leave
    float range as products of their factors' diagonals (four features at 1e130 each)."""
    from dataclasses import replace

    x = clustered_with_holes(n=1500)
    data, params = start_params(x, 2 * PRUNE_MIN_K, "full")
    patterns = data._hole_patterns()
    unit = holes.hole_stats(holes.HoleTiles(patterns, data.holes, data.hole_weights), params)
    scaled = replace(params, means=params.means * scale,
                     covariances=params.covariances * scale**2,
                     precisions_cholesky=params.precisions_cholesky / scale)
    ours = holes.hole_stats(holes.HoleTiles(patterns, data.holes * scale, data.hole_weights),
                            scaled)
    n_observed = sum(len(p.rows) * len(p.observed) for p in patterns)
    assert ours.log_likelihood == pytest.approx(
        unit.log_likelihood - n_observed * np.log(scale), rel=1e-12)
    np.testing.assert_allclose(ours.resp_sum, unit.resp_sum, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ours.x_sum / scale, unit.x_sum, rtol=1e-9, atol=1e-7)
    np.testing.assert_allclose(ours.xx_sum / scale**2, unit.xx_sum, rtol=1e-9, atol=1e-7)


@given(seed=st.integers(0, 10**6), d=st.integers(2, 6), share=st.sampled_from([0.1, 0.4, 0.7]),
       k=st.sampled_from([1, 5, 2 * PRUNE_MIN_K, 70]),
       covariance_type=st.sampled_from(COVARIANCE_TYPES),
       direct_rows=st.sampled_from([0, 32, 10**9]), almost_empty=st.booleans())
def test_random_patterns_give_the_pattern_by_pattern_statistics(seed, d, share, k,
                                                                covariance_type,
                                                                direct_rows, almost_empty):
    """Random missingness (a column almost all missing, weights of 0, 1 to 70 components:
    runs of one component, runs across patterns, tiles or direct rows): the kernel's
    statistics are the numpy path's."""
    rng = np.random.RandomState(seed)
    x = clustered_with_holes(n=200, d=d, k=6, share=share, seed=seed)
    if almost_empty:
        x[rng.uniform(size=len(x)) < 0.97, d - 1] = np.nan
    x[np.isnan(x).all(axis=1), 0] = 0.0  # every row observes something
    x[0, :] = 0.0  # and every feature is observed
    w = rng.choice([0.0, 0.3, 1.0, 4.0], size=len(x))
    w[0] = 1.0
    data = _missing.prepare(x, w, 4096)
    params = GaussianMixture(k, covariance_type=covariance_type, max_iter=1, random_state=0,
                             backend="numpy").fit(x)._params().shifted(-data.shift)
    patterns = data._hole_patterns()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(holes, "DIRECT_MAX_ROWS", direct_rows)
        tiles = holes.HoleTiles(patterns, data.holes, data.hole_weights)
        ours = holes.hole_stats(tiles, params)
    ref = _missing.stats(data.holes, data.hole_weights, params, {"patterns": patterns})
    # Two exact computations differ by rounding, which components collapsed onto a few rows
    # (variances at the 1e-6 floor, logits of 1e7) make larger than on the fits above.
    for name in ("resp_sum", "x_sum", "xx_sum"):
        theirs = getattr(ref, name)
        np.testing.assert_allclose(getattr(ours, name), theirs, rtol=1e-7,
                                   atol=1e-9 * max(1.0, np.abs(theirs).max()))
    assert ours.log_likelihood == pytest.approx(ref.log_likelihood, rel=1e-9)
    assert ours.weight_sum == pytest.approx(ref.weight_sum)
    assert ours.n_rows == ref.n_rows
