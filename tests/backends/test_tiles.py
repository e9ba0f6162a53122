import numpy as np

from gaussmix.backends.tiles import consecutive_starts, kd_order, tile_boxes


def test_kd_order_is_a_permutation_into_small_tiles():
    x = np.random.RandomState(0).randn(1000, 3)
    order, starts = kd_order(x, leaf_rows=50)
    np.testing.assert_array_equal(np.sort(order), np.arange(1000))
    sizes = np.diff(starts)
    assert starts[0] == 0 and starts[-1] == 1000 and (sizes > 0).all() and (sizes <= 50).all()


def test_tiles_are_spatially_compact():
    x = np.random.RandomState(1).rand(4096, 2) * 100
    order, starts = kd_order(x, leaf_rows=64)
    boxes = tile_boxes(x[order], starts)
    widths = boxes[:, 1] - boxes[:, 0]
    assert np.median(widths.max(axis=1)) < 25  # far smaller than the 100 x 100 field


def test_boxes_contain_their_rows():
    x = np.random.RandomState(2).randn(300, 4)
    order, starts = kd_order(x, leaf_rows=16)
    tiled = x[order]
    boxes = tile_boxes(tiled, starts)
    for t in range(len(starts) - 1):
        rows = tiled[starts[t]:starts[t + 1]]
        assert (rows >= boxes[t, 0]).all() and (rows <= boxes[t, 1]).all()


def test_consecutive_starts():
    np.testing.assert_array_equal(consecutive_starts(10, 4), [0, 4, 8, 10])
