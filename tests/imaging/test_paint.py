import numpy as np
import pytest
from matplotlib.figure import Figure

from gaussmix.imaging import RENDERS, PaintError, paint

from .pictures import colour_quadrants, disc_and_bar


def test_black_and_white_painting():
    picture = disc_and_bar()
    result = paint(picture, n_components=12, seed=1)
    assert result.mode == "bw" and result.model.n_features_in_ == 2
    assert set(result.renders) == set(RENDERS) - {"conditional-mean"}
    for name, image in result.renders.items():
        if isinstance(image, Figure):
            continue
        assert image.shape[:2] == picture.shape and image.dtype == np.uint8, name
    report = result.report
    assert report["points"] == int((picture == 0).sum()) and report["n_components"] == 12
    assert report["picture"] == {"width": 64, "height": 48}
    assert set(report["seconds"]) >= {"prepare", "fit", "density"}
    # ink lands where the picture's ink is
    density = result.renders["density"]
    assert density[picture == 0].mean() < density[picture == 255].mean() - 100


def test_colour_painting_paints_the_colours_back():
    picture = colour_quadrants()
    result = paint(picture, n_components=16, seed=0)
    assert result.mode == "color" and result.model.n_features_in_ == 5
    painted = result.renders["conditional-mean"].astype(float)
    assert painted.shape == picture.shape
    assert np.abs(painted - picture).mean() < 25
    assert result.renders["components"].shape == picture.shape


def test_large_pictures_are_fitted_small_and_rendered_full_size():
    picture = np.kron(colour_quadrants(), np.ones((2, 2, 1), dtype=np.uint8))  # 80 x 96
    result = paint(picture, n_components=8, max_pixels=2000, renders=["conditional-mean"])
    assert result.factor < 1 and result.picture.shape[0] * result.picture.shape[1] <= 2000
    assert result.renders["conditional-mean"].shape == picture.shape
    assert result.report["fitted_on"]["factor"] == result.factor


def test_sharpening_scales_the_rendered_model_only():
    result = paint(disc_and_bar(), n_components=6, sharpen=0.5, renders=["density"])
    assert result.report["sharpen"] == 0.5
    soft = paint(disc_and_bar(), n_components=6, renders=["density"])
    np.testing.assert_allclose(result.model.covariances_, soft.model.covariances_)
    assert (result.renders["density"] == 255).sum() > (soft.renders["density"] == 255).sum()


@pytest.mark.parametrize(
    "picture, kwargs, pattern",
    [
        (np.full((10, 10), 255, np.uint8), {}, "No pixels are darker than the threshold"),
        (disc_and_bar(), {"n_components": 10_000}, r"the picture gives only \d+ points; use a smaller -k"),
        (disc_and_bar(), {"renders": ["watercolour"]}, "Unknown render 'watercolour'"),
        (disc_and_bar(), {"renders": ["conditional-mean"]}, "needs colour mode"),
        (disc_and_bar(), {"mode": "sepia"}, "mode must be one of"),
        (disc_and_bar(), {"sharpen": 0}, r"--sharpen must lie in \[0.001, 1000\]"),
        (disc_and_bar(), {"sharpen": 1e-300}, r"--sharpen must lie in"),
        (disc_and_bar(), {"sharpen": np.inf}, r"--sharpen must lie in"),
        (disc_and_bar(), {"sharpen": np.nan}, r"--sharpen must lie in"),
        (disc_and_bar(), {"colour_scale": 1e200}, r"--color-scale must lie in"),
        (disc_and_bar(), {"colour_scale": np.inf}, r"--color-scale must lie in"),
        (disc_and_bar(), {"seed": -1}, r"--seed must be a whole number from 0 to 4294967295"),
        (disc_and_bar(), {"seed": 2**40}, r"--seed must be a whole number"),
        (disc_and_bar(), {"seed": 1.5}, r"--seed must be a whole number"),
        (disc_and_bar(), {"n_samples": 10**9}, r"--samples must lie in \[1, 100000000\]"),
        (disc_and_bar(), {"tone_knots": ((np.nan, 0.0), (1.0, 1.0))}, "Tone knots need"),
        (np.zeros((1, 1)), {}, "The picture is 1x1 pixels; painting needs at least 2x2"),
        (np.zeros((1, 30)), {}, "needs at least 2x2"),
        (disc_and_bar(), {"threshold": 2}, r"--threshold must lie in \[0, 1\]"),
        (disc_and_bar(), {"peak_quantile": 0}, r"--peak must lie in \(0, 1\]"),
        (np.zeros((3, 3, 2)), {}, "Expected a picture"),
    ],
)
def test_paint_refuses_bad_input_with_one_sentence(picture, kwargs, pattern):
    with pytest.raises(PaintError, match=pattern):
        paint(picture, **kwargs)


@pytest.mark.parametrize("kwargs", [{"sharpen": 1e-3}, {"sharpen": 1e3}, {"colour_scale": 1e-3},
                                    {"colour_scale": 1e3}, {"seed": 2**32 - 1}])
def test_the_ends_of_every_range_paint(kwargs):
    rng = np.random.default_rng(0)
    picture = (rng.random((12, 16, 3)) * 255).astype(np.uint8)
    result = paint(picture, n_components=3, max_iter=5, **kwargs)
    for name, image in result.renders.items():
        if name not in ("contour", "ellipses"):
            assert image.shape[:2] == (12, 16), name


def test_a_two_by_two_picture_paints():
    result = paint(np.array([[0, 255], [255, 0]], np.uint8), n_components=1)
    assert result.renders["density"].shape == (2, 2)


def test_samples_are_drawn_in_blocks(monkeypatch):
    from gaussmix.imaging import render

    picture = disc_and_bar()
    monkeypatch.setattr(render, "SAMPLE_BLOCK", 7)
    small = paint(picture, n_components=4, renders=["samples"], n_samples=100)
    monkeypatch.setattr(render, "SAMPLE_BLOCK", 10**6)
    whole = paint(picture, n_components=4, renders=["samples"], n_samples=100)
    for result in (small, whole):  # the same number of distinct draws, however drawn
        assert 0 < (result.renders["samples"] == 0).sum() <= 100
    assert (small.renders["samples"] == 0).sum() > 50


def test_a_bayesian_painting_keeps_the_components_that_carry_weight():
    result = paint(disc_and_bar(), n_components=40, bayesian=True,
                   renders=["density", "components", "samples"])
    report = result.report
    assert report["bayesian"] and report["n_components"] == 40
    assert 1 <= report["active_components"] <= 40
    assert np.isfinite(report["log_likelihood"])
    for name in ("density", "components", "samples"):
        assert result.renders[name].shape[:2] == disc_and_bar().shape


def test_inpainting_fills_the_masked_colours_from_their_surroundings():
    from .pictures import colour_quadrants

    picture = colour_quadrants()
    mask = np.zeros(picture.shape[:2], bool)
    mask[4:12, 4:14] = True  # inside the top-left quadrant
    damaged = picture.copy()
    damaged[mask] = [0, 255, 0]  # what is under the mask must not matter
    result = paint(damaged, mode="color", n_components=12, mask=mask,
                   renders=["conditional-mean"])
    filled = result.renders["conditional-mean"][mask].astype(float)
    truth = picture[mask].astype(float)
    assert np.abs(filled - truth).mean() < 25  # the quadrant's colour, not the green paint
    assert result.report["masked_pixels"] == mask.sum()
    assert result.model.n_missing_ == 3 * mask.sum()


@pytest.mark.parametrize("mask, kwargs, pattern", [
    (np.zeros((5, 5), bool), {}, "The mask is 5x5 pixels but the picture is 48x40"),
    (np.ones((40, 48), bool), {}, "covers the whole picture"),
    (np.eye(40, 48, dtype=bool), {"mode": "bw"}, "needs colour mode"),
    (np.eye(40, 48, dtype=bool), {"bayesian": True}, "leave out --bayesian"),
])
def test_bad_masks_get_one_sentence(mask, kwargs, pattern):
    from .pictures import colour_quadrants

    with pytest.raises(PaintError, match=pattern):
        paint(colour_quadrants(), **{"mode": "color", **kwargs}, mask=mask)
