import numpy as np

from gaussmix.backends import kmeans_kernels as kk


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
    kk.update_closest(kk.transposed(x), x[0], closest)
    np.testing.assert_allclose(closest, ((x - x[0]) ** 2).sum(axis=1))
    candidates = x[[5, 9, 11]]
    d2 = ((x[:, None] - candidates[None]) ** 2).sum(axis=2)
    expected = (w[:, None] * np.minimum(d2, closest[:, None])).sum(axis=0)
    np.testing.assert_allclose(kk.candidate_potentials(kk.transposed(x), w, closest, candidates),
                               expected, rtol=1e-10)
