import numpy as np
import pytest

from gaussmix._foundations.covariance import precision_cholesky
from gaussmix._data.chunks import ArrayChunks
from gaussmix._data.tiled import TiledSource
from gaussmix._mathematics.em import Params, e_step, m_step, plan_e_step, weighted_log_prob
from gaussmix._kernels import fused
from gaussmix._kernels import numba_estep as numba_backend
from gaussmix._kernels.numba_estep import (
    SPATIAL_MIN_K,
    fused_expectation,
    fused_scores,
    streaming_fused_expectation,
    tile_order,
)

from ..conftest import COVARIANCE_TYPES


def test_polynomial_exp_is_within_two_ulp():
    x = -np.concatenate([np.linspace(0, 700, 200_001),
                         np.random.RandomState(0).uniform(0, 40, 10_000)])
    out = np.empty_like(x)
    bits = np.empty_like(x)
    fused.exp_nonpositive(x, out, bits, len(x))
    np.testing.assert_allclose(out, np.exp(x), rtol=4.5e-16, atol=0)


def grid_clusters(k_side, spread, n_per, seed=0, d=2):
    """Clusters on a grid: most components are far from most rows (pruning territory)."""
    rng = np.random.RandomState(seed)
    centres = np.stack(np.meshgrid(*[np.arange(k_side)] * 2), -1).reshape(-1, 2) * 10.0
    if d > 2:
        centres = np.c_[centres, rng.uniform(0, 30, (len(centres), d - 2))]
    x = np.concatenate([c + spread * rng.randn(n_per, d) for c in centres])
    return x, centres


def params_for(covariance_type, means, scale, seed=0):
    rng = np.random.RandomState(seed)
    k, d = means.shape
    if covariance_type == "full":
        a = rng.randn(k, d, d) * 0.3
        cov = (a @ a.transpose(0, 2, 1) + np.eye(d)) * scale
    elif covariance_type == "tied":
        cov = np.eye(d) * scale + 0.1 * scale
    elif covariance_type == "diag":
        cov = rng.uniform(0.5, 1.5, (k, d)) * scale
    else:
        cov = rng.uniform(0.5, 1.5, k) * scale
    weights = rng.dirichlet(np.ones(k) * 5)
    prec_chol, cov, _, _ = precision_cholesky(cov, covariance_type, 1e-12)
    return Params(weights, means + 0.3 * rng.randn(k, d), prec_chol, cov, covariance_type)


def assert_stats_agree(fast, ref, params):
    p_fast, _ = m_step(fast, 1e-6, 1e-6)
    p_ref, _ = m_step(ref, 1e-6, 1e-6)
    for name in ("weights", "means", "covariances"):
        a, b = getattr(p_fast, name), getattr(p_ref, name)
        assert np.linalg.norm(a - b) <= 1e-10 * np.linalg.norm(b), name
    assert fast.log_likelihood == pytest.approx(ref.log_likelihood, rel=1e-12)
    assert fast.weight_sum == ref.weight_sum and fast.n_rows == ref.n_rows
    np.testing.assert_array_equal(fast.center, params.means)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("k_side", [3, 10])  # 9 components: all taken; 100: pruned
def test_fused_statistics_equal_the_exact_numpy_ones(covariance_type, k_side):
    x, centres = grid_clusters(k_side, 1.5, 60, d=3 if covariance_type == "full" else 2)
    w = np.random.RandomState(1).uniform(0, 2, len(x))
    w[::13] = 0.0
    params = params_for(covariance_type, centres, 2.0)
    tiled = TiledSource(ArrayChunks(x, w, np.zeros(x.shape[1]), 500))
    report = {}
    fast = fused_expectation(tiled, params, report=report)
    ref = e_step(tiled.x, tiled.sample_weight, params, plan_e_step(params, exact=True))
    assert_stats_agree(fast, ref, params)
    if k_side == 10:
        assert report["pair_fraction"] < 0.5  # pruning did its work


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_fused_statistics_equal_the_exact_ones_with_blas_products(covariance_type):
    """Five features: 21 (full) or 11 (diagonal) per row, where BLAS runs the products."""
    x, centres = grid_clusters(10, 1.5, 40, d=5)
    params = params_for(covariance_type, centres, 2.0)
    n_feat = 1 + 5 + (15 if covariance_type in ("full", "tied") else 5)
    assert n_feat >= fused.BLAS_MIN_FEATURES
    tiled = TiledSource(ArrayChunks(x, np.ones(len(x)), np.zeros(5), 500))
    fast = fused_expectation(tiled, params)
    ref = e_step(tiled.x, tiled.sample_weight, params, plan_e_step(params, exact=True))
    assert_stats_agree(fast, ref, params)


def test_hints_make_pruning_tight_and_any_hint_keeps_it_exact():
    """The E-step records each row's most likely component; the next E-step bounds the rows'
    best logits with them. Stale or arbitrary hints change the work, never the result."""
    x, centres = grid_clusters(12, 1.5, 30, d=3)
    params = params_for("full", centres, 2.0)
    tiled = TiledSource(ArrayChunks(x, np.ones(len(x)), np.zeros(3), 500))
    ref = e_step(tiled.x, tiled.sample_weight, params, plan_e_step(params, exact=True))
    hints = tiled.hints(len(centres))
    assert (hints == -1).all()
    report = {}
    first = fused_expectation(tiled, params, report=report)
    unhinted_pairs = report["pair_fraction"]
    best = weighted_log_prob(tiled.x, params, plan_e_step(params, exact=True)).argmax(axis=1)
    np.testing.assert_array_equal(tiled.hints(len(centres)), best)
    second = fused_expectation(tiled, params, report=report)
    assert report["pair_fraction"] <= unhinted_pairs
    hints[:] = np.random.RandomState(0).randint(-1, len(centres), len(hints))
    hints[::7] = len(centres) + 5  # out of range: ignored
    third = fused_expectation(tiled, params)
    for stats in (first, second, third):
        assert_stats_agree(stats, ref, params)
    assert (tiled.hints(len(centres) - 1) == -1).all()  # another K starts without hints


def test_tight_tiles_far_apart_keep_their_digits():
    """Clusters a thousandth wide and a million apart, two tiles each: features about any
    centre but their own tile's would put the rows a million widths away, and the expanded
    quadratic forms would lose every digit."""
    rng = np.random.RandomState(3)
    centres = np.stack(np.meshgrid(np.arange(8), np.arange(8)), -1).reshape(-1, 2) * 1e6
    x = np.concatenate([c + 1e-3 * rng.randn(2 * 96, 2) for c in centres])
    cov = np.tile(np.eye(2) * 1e-6, (len(centres), 1, 1))
    prec_chol, cov, _, _ = precision_cholesky(cov, "full", 1e-12)
    params = Params(np.full(len(centres), 1 / len(centres)), centres + 1e-4, prec_chol, cov,
                    "full")
    tiled = TiledSource(ArrayChunks(x, np.ones(len(x)), np.zeros(2), 500))
    assert len(tiled.starts) - 1 == 2 * len(centres)  # every tile inside one cluster
    ref = e_step(tiled.x, tiled.sample_weight, params, plan_e_step(params, exact=True))
    assert_stats_agree(fused_expectation(tiled, params), ref, params)


def test_stale_workspace_contents_never_reach_the_statistics():
    """The kernel's buffers live across E-steps uninitialised: filled with NaN between
    passes (and resized by another K), the statistics are still exact."""
    x, centres = grid_clusters(10, 1.5, 40, d=3)
    tiled = TiledSource(ArrayChunks(x, np.ones(len(x)), np.zeros(3), 500))
    for k in (100, 30, 100):
        params = params_for("full", centres[:k], 2.0)
        ref = e_step(tiled.x, tiled.sample_weight, params, plan_e_step(params, exact=True))
        for buffer in tiled.workspace._buffers.values():
            buffer.fill(np.nan if buffer.dtype.kind == "f" else -7)
        assert_stats_agree(fused_expectation(tiled, params), ref, params)


def test_precision_facts_bound_the_smallest_eigenvalue():
    rng = np.random.RandomState(3)
    a = rng.randn(50, 5, 5)
    cov = a @ a.transpose(0, 2, 1) + 0.01 * np.eye(5)
    cov[:10] = np.diag([1e-4, 1.0, 1e2, 1e4, 1.0])  # badly conditioned
    prec_chol, cov, _, _ = precision_cholesky(cov, "full", 1e-12)
    precisions, lam_min = fused.precision_facts(prec_chol, cov)
    np.testing.assert_allclose(precisions, prec_chol @ prec_chol.transpose(0, 2, 1),
                               rtol=1e-13, atol=0)
    exact = np.linalg.eigvalsh(precisions)[:, 0]
    assert (lam_min <= exact).all()
    assert (lam_min >= exact / 5).all()  # max row sum of |S| <= D lambda_max(S)
    _, lam_tied = fused.precision_facts(prec_chol[:3], cov[:1])
    np.testing.assert_array_equal(lam_tied, np.full(3, lam_min[0]))


def test_a_degenerate_covariance_gets_no_floor_and_no_error():
    """All zeros (or non-finite) breaks the power steps: a floor of 0 (no bound) instead of
    a division error (numba raises one where numpy would not)."""
    cov = np.stack([np.zeros((4, 4)), np.eye(4), np.full((4, 4), np.nan)])
    np.testing.assert_array_equal(fused.precision_floors(cov, 3), [0.0, 1.0 - 1e-6, 0.0])


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_the_precision_floor_alone_is_the_kernels_and_a_lower_bound(covariance_type):
    """The rows with holes take the floor without the rest of the kernel's parameters."""
    _, centres = grid_clusters(4, 1.0, 1, d=3)
    params = params_for(covariance_type, centres, 2.0)
    floor = numba_backend.precision_floor(params)
    np.testing.assert_array_equal(floor, numba_backend.kernel_params(params).lam_min)
    exact = np.linalg.eigvalsh(numba_backend.kernel_params(params).precisions)[:, 0]
    assert (floor <= exact).all() and (floor >= exact / 3.01).all()


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("k_side", [8, 12])  # 64: consecutive tiles; 144: k-d tiles, pruned
def test_fused_log_density_and_labels(covariance_type, k_side):
    x, centres = grid_clusters(k_side, 2.0, 40)
    params = params_for(covariance_type, centres, 3.0)
    log_prob, labels, _ = fused_scores(x, params)
    plan = plan_e_step(params, exact=True)
    from gaussmix._mathematics.em import softmax_inplace, weighted_log_prob

    logits = weighted_log_prob(x, params, plan)
    np.testing.assert_array_equal(labels, logits.argmax(axis=1))
    np.testing.assert_allclose(log_prob, softmax_inplace(logits), rtol=1e-12, atol=1e-12)


def test_zero_weight_tiles_are_skipped():
    x, centres = grid_clusters(3, 1.0, 100)
    w = np.zeros(len(x))
    w[:100] = 1.0
    params = params_for("full", centres, 1.0)
    tiled = TiledSource(ArrayChunks(x, w, np.zeros(2), 500))
    stats = fused_expectation(tiled, params)
    assert stats.n_rows == 100 and stats.weight_sum == 100.0
    assert np.isfinite(stats.log_likelihood)


def test_far_components_are_pruned_exactly():
    """A component 1e3 standard deviations away: skipped, yet the statistics are exact."""
    x, centres = grid_clusters(8, 1.0, 30)  # 65 components: more than PRUNE_MIN_K, so pruned
    means = np.r_[centres, [[1e4, 1e4]]]
    params = params_for("diag", means, 1.0)
    tiled = TiledSource(ArrayChunks(x, np.ones(len(x)), np.zeros(2), 500))
    stats = fused_expectation(tiled, params)
    assert stats.resp_sum[-1] == 0.0
    ref = e_step(tiled.x, tiled.sample_weight, params, plan_e_step(params, exact=True))
    assert ref.resp_sum[-1] < 1e-300
    assert_stats_agree(stats, ref, params)


@pytest.mark.parametrize("k_side", [5, 12])  # 25: consecutive tiles; 144: k-d tiles
def test_streamed_chunks_give_the_exact_statistics(k_side):
    x, centres = grid_clusters(k_side, 1.5, 30)
    w = np.random.RandomState(3).uniform(0, 2, len(x))
    params = params_for("full", centres, 2.0)
    chunks = ArrayChunks(x, w, np.zeros(2), 1000)
    report = {}
    fast = streaming_fused_expectation(chunks, params, report=report)
    ref = e_step(x, w, params, plan_e_step(params, exact=True))
    assert_stats_agree(fast, ref, params)
    if k_side == 12:
        assert report["pair_fraction"] < 1.0  # k-d tiles prune
    else:
        assert report["pair_fraction"] == 1.0  # consecutive tiles evaluate every pair


def test_one_pass_tiling_is_spatial_only_when_pruning_can_pay():
    x = np.random.RandomState(0).randn(1000, 2)
    order, rows, starts, margin = tile_order(x, SPATIAL_MIN_K)
    assert order == slice(None) and margin == np.inf
    np.testing.assert_array_equal(rows, x)
    np.testing.assert_array_equal(np.diff(starts)[:-1], np.diff(starts)[0])
    order, rows, starts, margin = tile_order(x, SPATIAL_MIN_K + 1, threshold=30.0)
    np.testing.assert_array_equal(np.sort(order), np.arange(1000))
    np.testing.assert_array_equal(rows, x[order])  # the reordered rows come from the same pass
    assert margin == 30.0


def test_float32_data_run_the_float64_kernel():
    """float32 logits would keep only the first digits of a far row's responsibilities (its
    logits are large, their differences small): float32 data are tiled in float64, and the
    statistics equal those of the same values given in float64."""
    from gaussmix._data.chunks import FitData

    x = np.random.RandomState(0).randn(500, 2).astype(np.float32)
    x[0] = 1e4
    single = FitData.prepare(x, np.ones(500), 100).tiled_source(100)
    double = FitData.prepare(x.astype(np.float64), np.ones(500), 100).tiled_source(100)
    assert single.kernel_x.dtype == np.float64
    params = params_for("full", x[:30].astype(np.float64), 2.0)
    a, b = fused_expectation(single, params), fused_expectation(double, params)
    for name in ("resp_sum", "x_sum", "xx_sum"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def kept_shares(x, params, tile_rows):
    """Per tile of consecutive rows, the share of (row, component) pairs within the kernel's
    pruning margin of their row's best logit (by the exact numpy logits)."""
    logits = weighted_log_prob(x, params, plan_e_step(params, exact=True))
    near = logits >= logits.max(axis=1, keepdims=True) - fused.PRUNE_NATS
    return np.array([near[s:s + tile_rows].mean() for s in range(0, len(x), tile_rows)])


@pytest.mark.parametrize("covariance_type,d", [("diag", 20), ("full", 4), ("spherical", 12)])
def test_sparse_and_dense_tiles_in_one_pass_give_the_exact_statistics(covariance_type, d):
    """Rows near one or two of many components take the softmax and moments over their kept
    pairs, rows of a broad blob amid the components the whole block: in one pass, with
    weights (zeros among them), both equal the exact statistics."""
    rng = np.random.RandomState(4)
    centres = rng.uniform(-40, 40, (48, d))
    tight = centres[rng.randint(0, 24, 1536)] + 0.5 * rng.randn(1536, d)
    broad = 0.1 * rng.randn(768, d)
    x = np.concatenate([tight, broad])
    params = params_for(covariance_type, centres, 1.0)
    params = Params(params.weights, np.concatenate([centres[:24], 0.3 * rng.randn(24, d)]),
                    params.precisions_cholesky, params.covariances, covariance_type)
    w = rng.uniform(0, 2, len(x))
    w[::17] = 0.0
    rows = numba_backend.CONSECUTIVE_TILE_ROWS
    shares = kept_shares(x, params, rows)
    assert shares.min() <= fused.SPARSE_SHARE / 2 and shares.max() > fused.SPARSE_SHARE
    fast = streaming_fused_expectation(ArrayChunks(x, w, np.zeros(d), len(x)), params)
    ref = e_step(x, w, params, plan_e_step(params, exact=True))
    assert_stats_agree(fast, ref, params)
    log_prob, labels, _ = fused_scores(x, params)
    exact = weighted_log_prob(x, params, plan_e_step(params, exact=True))
    np.testing.assert_allclose(log_prob, np.logaddexp.reduce(exact, axis=1), rtol=1e-12)
    np.testing.assert_array_equal(labels, exact.argmax(axis=1))


def test_the_kernel_measures_the_boxes_of_tiles_left_unmeasured():
    """A one-pass chunk's tiles reach the kernel with empty boxes; each is measured from its
    rows before anything reads it: the same boxes, and the same statistics, as measured
    ahead."""
    from gaussmix._kernels.tiles import consecutive_starts, tile_boxes

    x, centres = grid_clusters(5, 1.5, 40, d=3)
    x = x[np.random.RandomState(0).permutation(len(x))]
    params = params_for("diag", centres, 2.0)
    starts = consecutive_starts(len(x), 64)
    tiled = numba_backend._Tiled(x, np.ones(len(x)), starts, numba_backend.Workspace())
    assert (tiled.boxes[:, 0] > tiled.boxes[:, 1]).all()
    stats = fused_expectation(tiled, params, np.inf)
    np.testing.assert_array_equal(tiled.boxes, tile_boxes(x, starts))
    ahead = numba_backend._Tiled(x, np.ones(len(x)), starts, numba_backend.Workspace())
    ahead.boxes = tile_boxes(x, starts)
    again = fused_expectation(ahead, params, np.inf)
    for name in ("resp_sum", "x_sum", "xx_sum"):
        np.testing.assert_array_equal(getattr(stats, name), getattr(again, name))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_many_sets_in_one_pass_keep_their_sums_apart(covariance_type):
    """Each set its own group of tiles under the same components: each set's statistics
    equal those of a pass over that set alone (weights with zeros, a one-row set, a set
    longer than a tile)."""
    from gaussmix._kernels.numba_estep import sets_fused_expectation

    x, centres = grid_clusters(4, 1.5, 60, d=3)
    rng = np.random.RandomState(6)
    params = params_for(covariance_type, centres, 2.0)
    sets = []
    for n in (1, 250, 37, 500):
        rows = x[rng.randint(0, len(x), n)]
        w = rng.uniform(0, 2, n)
        w[::5] = 0.0
        w[0] = 1.0
        sets.append((rows, w))
    resp_sum, x_sum, xx_sum, log_lik, weight_sum = sets_fused_expectation(sets, params)
    for i, (rows, w) in enumerate(sets):
        alone = streaming_fused_expectation([(rows, w)], params)
        np.testing.assert_allclose(resp_sum[i], alone.resp_sum, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(x_sum[i], alone.x_sum, rtol=1e-12, atol=1e-10)
        np.testing.assert_allclose(xx_sum[i], alone.xx_sum, rtol=1e-12, atol=1e-10)
        assert log_lik[i] == pytest.approx(alone.log_likelihood, rel=1e-12)
        assert weight_sum[i] == pytest.approx(alone.weight_sum, rel=1e-15)
