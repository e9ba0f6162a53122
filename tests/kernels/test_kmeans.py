import numpy as np

from gaussmix._kernels import kmeans as kk


def test_assignment_and_sums_equal_brute_force():
    rng = np.random.RandomState(0)
    x = rng.randn(3000, 3)
    w = rng.uniform(0, 2, 3000)
    centers = rng.randn(17, 3)
    labels = np.full(3000, -1, dtype=np.int64)
    counts, sums, changed = kk.assign_and_sum(kk.transposed(x), w, centers, labels)
    expected = ((x[:, None, :] - centers[None]) ** 2).sum(axis=2).argmin(axis=1)
    np.testing.assert_array_equal(labels, expected)
    assert changed == 3000
    np.testing.assert_allclose(counts, np.bincount(expected, weights=w, minlength=17))
    np.testing.assert_allclose(sums[3], (w[expected == 3, None] * x[expected == 3]).sum(axis=0))
    _, _, again = kk.assign_and_sum(kk.transposed(x), w, centers, labels)
    assert again == 0


def test_potentials_and_closest_distances():
    rng = np.random.RandomState(1)
    x = rng.randn(2000, 2)
    w = rng.uniform(0, 1, 2000)
    closest = np.full(2000, np.inf)
    block_mass = kk.update_closest(kk.transposed(x), w, x[0], closest)
    np.testing.assert_allclose(closest, ((x - x[0]) ** 2).sum(axis=1))
    assert len(block_mass) == -(-2000 // kk.BLOCK)
    np.testing.assert_allclose(block_mass.sum(), w @ closest, rtol=1e-12)
    candidates = x[[5, 9, 11]]
    d2 = ((x[:, None] - candidates[None]) ** 2).sum(axis=2)
    expected = (w[:, None] * np.minimum(d2, closest[:, None])).sum(axis=0)
    np.testing.assert_allclose(kk.candidate_potentials(kk.transposed(x), w, closest, candidates),
                               expected, rtol=1e-10)


def test_weighted_draw_follows_the_cumulative_mass():
    """Each draw is the row whose cumulative mass first exceeds its target, as a searchsorted
    on the cumulative sum of ``w * closest`` over all rows; zero-mass rows never come up."""
    rng = np.random.RandomState(2)
    n = 5 * kk.BLOCK + 77
    x = rng.randn(n, 2)
    w = rng.uniform(0, 1, n)
    w[rng.rand(n) < 0.3] = 0.0
    w[kk.BLOCK:2 * kk.BLOCK] = 0.0  # a block without mass
    closest = np.full(n, np.inf)
    block_mass = kk.update_closest(kk.transposed(x), w, x[3], closest)
    rows = kk.weighted_draw(w, closest, block_mass, 2000, np.random.RandomState(5))
    mass = w * closest
    assert (mass[rows] > 0).all()
    targets = np.random.RandomState(5).uniform(size=2000) * block_mass.sum()
    expected = np.searchsorted(np.cumsum(mass), targets, side="right")
    assert (rows == expected).mean() > 0.99  # equal but where rounding moves a boundary
