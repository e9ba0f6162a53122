import numpy as np
import pytest
from matplotlib.figure import Figure

from gaussmix import GaussianMixture
from gaussmix.imaging import render


def two_blobs():
    return GaussianMixture.from_params(
        [0.5, 0.5], [[10.0, 8.0], [30.0, 20.0]],
        [[[9.0, 0.0], [0.0, 4.0]], [[4.0, 1.0], [1.0, 4.0]]], random_state=0)


SHAPE = (32, 40)


def test_density_is_darkest_at_the_means():
    grid = render.evaluate_grid(two_blobs(), SHAPE)
    image = render.render_density(grid, peak_quantile=1.0)
    assert image.shape == SHAPE and image.dtype == np.uint8
    assert image[8, 10] == image.min() or image[20, 30] == image.min()
    for x, y in ((10, 8), (30, 20)):
        local = image[y - 3:y + 4, x - 3:x + 4]
        assert image[y, x] == local.min()
    assert image[0, 39] == 255  # paper far away


def test_grid_log_density_matches_score_samples():
    gm = two_blobs()
    grid = render.evaluate_grid(gm, SHAPE)
    from gaussmix.imaging.points import pixel_grid

    np.testing.assert_allclose(grid.log_density.ravel(), gm.score_samples(pixel_grid(SHAPE)),
                               rtol=1e-12)
    np.testing.assert_array_equal(grid.labels.ravel(), gm.predict(pixel_grid(SHAPE)))


def test_tone_map_and_knots():
    d = np.array([0.0, 0.5, 0.8, 0.9, 1.0])
    np.testing.assert_allclose(render.tone_map(d), d)
    ink = render.tone_map(d, render.DEFAULT_TONE_KNOTS)
    assert ink[1] < 0.05 and ink[2] == pytest.approx(0.08) and ink[-1] == 1.0
    assert render.parse_tone_knots("0:0,0.5:0.2,1:1") == ((0, 0), (0.5, 0.2), (1, 1))
    for bad in ("0:0", "a:b,1:1", "0:0,0.5:2,1:1", "0.5:0,0.4:0.1"):
        with pytest.raises(ValueError, match="knots"):
            render.parse_tone_knots(bad)


def test_scaled_density_peak_quantile():
    log_p = np.log(np.array([1e-9, 0.2, 0.5, 0.5, 1.0]))
    np.testing.assert_allclose(render.scaled_density(log_p, 1.0), [1e-9, 0.2, 0.5, 0.5, 1.0])
    scaled = render.scaled_density(log_p, 0.5)
    assert scaled.max() == 1.0 and scaled[2] == 1.0 and scaled[1] == pytest.approx(0.4)


def test_samples_are_dots_of_their_colour():
    gm = GaussianMixture.from_params([1.0], [[20.0, 15.0, 300.0, -40.0, 100.0]],
                                     np.diag([9.0, 9.0, 1e-4, 1e-4, 1e-4])[None], random_state=1)
    image = render.render_samples(gm, SHAPE, 200)
    assert image.shape == SHAPE + (3,)
    inked = image[(image != 255).any(axis=2)]
    assert 100 < len(inked) <= 200
    # colours are clipped to [0, 255]
    assert set(map(tuple, inked)) == {(255, 0, 100)}
    small = render.render_samples(two_blobs(), SHAPE, 300)
    large = render.render_samples(two_blobs(), SHAPE, 300, dot_radius=1)
    assert small.shape == SHAPE and 100 < (small == 0).sum() <= 300
    assert (large == 0).sum() > 1.5 * (small == 0).sum()  # same draws, bigger dots


def test_one_component_colour_model_paints_a_linear_ramp():
    """E[rgb | x, y] of one Gaussian is affine in (x, y): the render is that ramp, rounded."""
    rng = np.random.RandomState(0)
    a = rng.randn(5, 5)
    cov = a @ a.T + np.eye(5)
    mean = np.array([20.0, 16.0, 120.0, 130.0, 140.0])
    gm = GaussianMixture.from_params([1.0], [mean], cov[None])
    image = render.render_conditional_mean(gm, SHAPE).astype(float)
    rows, cols = np.mgrid[:SHAPE[0], :SHAPE[1]]
    xy = np.c_[cols.ravel(), rows.ravel()] - mean[:2]
    gain = cov[2:, :2] @ np.linalg.inv(cov[:2, :2])
    ramp = np.clip(mean[2:] + xy @ gain.T, 0, 255).reshape(SHAPE + (3,))
    assert np.abs(image - ramp).max() <= 0.5 + 1e-9
    assert np.ptp(image) > 50  # a real ramp, not a flat colour


def test_components_colour_each_pixel_by_its_component():
    grid = render.evaluate_grid(two_blobs(), SHAPE)
    colours = np.array([[255, 0, 0], [0, 0, 255]], dtype=np.uint8)
    image = render.render_components(grid, colours)
    assert tuple(image[8, 10]) == (255, 0, 0) and tuple(image[20, 30]) == (0, 0, 255)
    far = render.render_components(grid, colours, min_density=0.5)
    assert tuple(far[0, 39]) == (255, 255, 255)


def test_palette_is_distinct():
    colours = render.palette(300)
    assert colours.shape == (300, 3) and colours.dtype == np.uint8
    assert len({tuple(c) for c in colours}) == 300


def test_contour_and_ellipses_are_figures_at_picture_size():
    gm = two_blobs()
    grid = render.evaluate_grid(gm, SHAPE)
    fig = render.render_contour(grid)
    assert isinstance(fig, Figure) and len(fig.axes) == 2  # plot and colour bar
    assert "log p" in fig.axes[1].get_ylabel()
    picture = np.ones(SHAPE)
    fig = render.render_ellipses(gm, picture)
    width, height = fig.get_size_inches() * fig.dpi
    assert (round(width), round(height)) == (SHAPE[1], SHAPE[0])


def test_ellipse_parameters():
    gm = GaussianMixture.from_params([1.0], [[5.0, 6.0]], [[[16.0, 0.0], [0.0, 1.0]]])
    centres, widths, heights, angles = render.ellipse_parameters(gm, n_std=2.0)
    np.testing.assert_allclose(centres, [[5.0, 6.0]])
    assert widths[0] == pytest.approx(16.0) and heights[0] == pytest.approx(4.0)
    assert angles[0] % 180 == pytest.approx(0.0, abs=1e-9)
    half = render.ellipse_parameters(gm, factor=0.5)
    np.testing.assert_allclose(half[0], [[10.5, 12.5]])
    assert half[1][0] == pytest.approx(32.0)


def test_the_grid_on_pixel_tiles_equals_the_grid_row_by_row(monkeypatch):
    from gaussmix import GaussianMixture
    from gaussmix._fitting import inference as _inference
    from gaussmix.imaging.points import pixel_grid

    rng = np.random.RandomState(0)
    k, shape = 80, (30, 45)
    model = GaussianMixture.from_params(
        rng.dirichlet(np.ones(k)), np.column_stack([rng.uniform(0, 45, k), rng.uniform(0, 30, k)]),
        rng.uniform(0.5, 6.0, (k, 2)), "diag")
    plain = _inference.log_prob_and_labels(model._params(), pixel_grid(shape))
    monkeypatch.setattr(_inference, "FUSED_INFERENCE_PAIRS", 0)
    model.backend = "numba"
    grid = render.evaluate_grid(model, shape)
    np.testing.assert_allclose(grid.log_density.ravel(), plain[0], rtol=1e-10)
    np.testing.assert_array_equal(grid.labels.ravel(), plain[1])
