import numpy as np
import pytest

from gaussmix._kernels.tiles import consecutive_starts, kd_tiles, tile_boxes


def test_kd_tiles_is_a_permutation_into_small_tiles():
    x = np.random.RandomState(0).randn(1000, 3)
    order, starts, _ = kd_tiles(x, leaf_rows=50)
    np.testing.assert_array_equal(np.sort(order), np.arange(1000))
    sizes = np.diff(starts)
    assert starts[0] == 0 and starts[-1] == 1000 and (sizes > 0).all() and (sizes <= 50).all()


def test_tiles_are_spatially_compact():
    x = np.random.RandomState(1).rand(4096, 2) * 100
    order, starts, _ = kd_tiles(x, leaf_rows=64)
    boxes = tile_boxes(x[order], starts)
    widths = boxes[:, 1] - boxes[:, 0]
    assert np.median(widths.max(axis=1)) < 25  # far smaller than the 100 x 100 field


def test_boxes_contain_their_rows():
    x = np.random.RandomState(2).randn(300, 4)
    order, starts, tiled = kd_tiles(x, leaf_rows=16)
    np.testing.assert_array_equal(tiled, x[order])
    boxes = tile_boxes(tiled, starts)
    for t in range(len(starts) - 1):
        rows = tiled[starts[t]:starts[t + 1]]
        assert (rows >= boxes[t, 0]).all() and (rows <= boxes[t, 1]).all()


def test_consecutive_starts():
    np.testing.assert_array_equal(consecutive_starts(10, 4), [0, 4, 8, 10])


def test_kd_tiles_splits_at_the_median_with_many_ties():
    """Pixel coordinates repeat: every split still halves its rows, and no row of a left
    half lies beyond its right half along the split."""
    x = np.random.RandomState(3).randint(0, 4, size=(5000, 2)).astype(float)
    order, starts, _ = kd_tiles(x, leaf_rows=40)
    np.testing.assert_array_equal(np.sort(order), np.arange(5000))
    sizes = np.diff(starts)
    assert sizes.max() - sizes.min() <= 1
    left, right = x[order[:2500]], x[order[2500:]]
    dim = int(np.argmax(np.ptp(x, axis=0)))
    assert left[:, dim].max() <= right[:, dim].min()


def test_kd_tiles_of_sorted_and_constant_rows():
    for x in (np.arange(20000.0)[:, None], np.zeros((3000, 3))):
        order, starts, _ = kd_tiles(x, leaf_rows=96)
        np.testing.assert_array_equal(np.sort(order), np.arange(len(x)))
        assert np.diff(starts).max() <= 96
    order, starts, _ = kd_tiles(np.arange(20000.0)[:, None], leaf_rows=96)
    for s, e in zip(starts[:-1], starts[1:]):  # 1-D: each tile a run of consecutive values
        np.testing.assert_array_equal(np.sort(order[s:e]), np.arange(s, e))


def test_kd_tiles_of_no_rows():
    order, starts, _ = kd_tiles(np.empty((0, 2)))
    assert len(order) == 0 and list(starts) == [0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tile_boxes_are_each_tiles_least_and_largest_values(dtype):
    rng = np.random.RandomState(0)
    x = (rng.standard_cauchy((1000, 3)) * 1e3).astype(dtype)
    starts = np.array([0, 1, 2, 96, 500, 999, 1000])  # one-row tiles among them
    boxes = tile_boxes(x, starts)
    assert boxes.dtype == np.float64 and boxes.shape == (6, 2, 3)
    for t in range(6):
        rows = x[starts[t]:starts[t + 1]]
        np.testing.assert_array_equal(boxes[t, 0], rows.min(axis=0))
        np.testing.assert_array_equal(boxes[t, 1], rows.max(axis=0))
