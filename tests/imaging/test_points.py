import numpy as np
import pytest

from gaussmix.imaging.points import (
    as_float_image,
    colour_pixel_points,
    dark_pixel_points,
    downscale_to_budget,
    is_colour,
    pixel_grid,
    to_grey,
)
from gaussmix.imaging.render import to_pixels


def test_dark_pixels_are_x_right_y_down():
    img = np.ones((4, 6))
    img[1, 4] = 0.0  # row 1, column 4
    img[3, 0] = 0.2
    points, threshold = dark_pixel_points(img)
    assert sorted(map(tuple, points)) == [(0.0, 3.0), (4.0, 1.0)]
    assert 0.2 < threshold < 1.0


def test_threshold_and_light_pixels():
    img = np.linspace(0, 1, 10).reshape(1, 10)
    dark, _ = dark_pixel_points(img, threshold=0.25)
    light, _ = dark_pixel_points(img, threshold=0.75, keep="light")
    np.testing.assert_array_equal(dark[:, 0], [0, 1, 2])
    np.testing.assert_array_equal(light[:, 0], [7, 8, 9])


def test_colour_points_are_every_pixel_in_reading_order():
    img = np.zeros((2, 3, 3), dtype=np.uint8)
    img[1, 2] = [255, 128, 0]
    pts = colour_pixel_points(img, colour_scale=0.5)
    assert pts.shape == (6, 5)
    np.testing.assert_array_equal(pts[:3, :2], [[0, 0], [1, 0], [2, 0]])
    np.testing.assert_allclose(pts[5], [2, 1, 127.5, 64.0, 0], rtol=1e-12)


def test_float_conversion_handles_common_pixel_types():
    assert as_float_image(np.array([[0, 255]], dtype=np.uint8)).max() == 1.0
    assert as_float_image(np.array([[65535]], dtype=np.uint16))[0, 0] == 1.0
    assert as_float_image(np.array([[True, False]])).tolist() == [[1.0, 0.0]]
    rgba = np.zeros((1, 1, 4), dtype=np.uint8)  # fully transparent black shows as white
    np.testing.assert_allclose(as_float_image(rgba), np.ones((1, 1, 3)))
    for bad in (np.zeros(5), np.zeros((2, 2, 2)), np.zeros((0, 3))):
        with pytest.raises(ValueError):
            as_float_image(bad)


def test_grey_and_colour_detection():
    grey_rgb = np.repeat(np.random.RandomState(0).rand(8, 8, 1), 3, axis=2)
    assert not is_colour(grey_rgb)
    assert is_colour(np.random.RandomState(0).rand(8, 8, 3))
    np.testing.assert_allclose(to_grey(grey_rgb), grey_rgb[:, :, 0], atol=1e-6)


def test_downscale_to_budget():
    img = np.random.RandomState(0).rand(100, 200, 3)
    small, factor = downscale_to_budget(img, 5000)
    assert small.shape[0] * small.shape[1] <= 5000 and small.shape[2] == 3
    assert factor == pytest.approx(small.shape[0] / 100)
    same, one = downscale_to_budget(img, 10**6)
    assert one == 1.0 and same.shape == img.shape


def test_pixel_grid_maps_output_pixels_into_model_coordinates():
    grid = pixel_grid((2, 3))
    np.testing.assert_array_equal(grid, [[0, 0], [1, 0], [2, 0], [0, 1], [1, 1], [2, 1]])
    half = pixel_grid((4, 4), factor=0.5)
    np.testing.assert_allclose(half[:2], [[-0.25, -0.25], [0.25, -0.25]])
    np.testing.assert_allclose(to_pixels(half, 0.5), pixel_grid((4, 4)))


@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (17, 30), (8, 12), (9, 25)])
def test_pixel_tiles_are_blocks_that_cover_every_pixel_once(shape):
    from gaussmix.imaging.points import TILE_HEIGHT, TILE_WIDTH, pixel_grid, pixel_tiles

    order, starts = pixel_tiles(shape)
    assert sorted(order) == list(range(shape[0] * shape[1]))
    assert starts[0] == 0 and starts[-1] == len(order) and (np.diff(starts) > 0).all()
    grid = pixel_grid(shape)[order]
    for s, e in zip(starts[:-1], starts[1:]):
        extent = grid[s:e].max(axis=0) - grid[s:e].min(axis=0)
        assert extent[0] < TILE_WIDTH and extent[1] < TILE_HEIGHT
