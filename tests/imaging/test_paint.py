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
        (disc_and_bar(), {"sharpen": 0}, "--sharpen must be positive"),
        (disc_and_bar(), {"threshold": 2}, r"--threshold must lie in \[0, 1\]"),
        (disc_and_bar(), {"peak_quantile": 0}, r"--peak must lie in \(0, 1\]"),
        (np.zeros((3, 3, 2)), {}, "Expected a picture"),
    ],
)
def test_paint_refuses_bad_input_with_one_sentence(picture, kwargs, pattern):
    with pytest.raises(PaintError, match=pattern):
        paint(picture, **kwargs)
