import numpy as np
import pytest
from matplotlib.figure import Figure

from gaussmix import plotting


@pytest.fixture(scope="module")
def models():
    return plotting.tutorial_models(seed=0)


def test_1d_mixture_components_dashed_and_mixture_solid():
    fig = plotting.figure_1d_mixture()
    ax = fig.axes[0]
    styles = [line.get_linestyle() for line in ax.get_lines()]
    assert styles.count("--") == 3 and styles.count("-") == 1
    x, total = ax.get_lines()[-1].get_data()
    assert np.trapezoid(total, x) == pytest.approx(1.0, abs=1e-3)  # a density


def test_weights_panel_shares_components():
    fig = plotting.figure_1d_weights()
    assert len(fig.axes) == 4
    first = [line.get_ydata() for line in fig.axes[0].get_lines()]
    second = [line.get_ydata() for line in fig.axes[1].get_lines()]
    assert not np.allclose(first[-1], second[-1])  # different mixtures...
    ratio = first[0] / np.maximum(second[0], 1e-300)
    assert np.allclose(ratio[np.isfinite(ratio) & (second[0] > 1e-6)], ratio[100])  # ...same shapes


def test_1d_fit_has_histogram_rug_and_curves(models):
    fig = plotting.figure_1d_fit(models["data_1d"], models["model_1d"])
    ax = fig.axes[0]
    assert len(ax.patches) == 40  # histogram bars
    labels = [line.get_label() for line in ax.get_lines()]
    assert "rug" in labels and "mixture" in labels
    with pytest.raises(ValueError, match="needs a model of one feature"):
        plotting.figure_1d_fit(models["data_2d"], models["model_2d"])


def test_sampling_animation_frames(models, tmp_path):
    from matplotlib.animation import PillowWriter

    fig, animation = plotting.sampling_animation(models["model_1d"], n_draws=6)
    assert isinstance(fig, Figure)
    components, points = plotting.sampling_frames(models["model_1d"], 6)
    assert components.shape == points.shape == (6,)
    path = tmp_path / "s.gif"
    animation.save(path, writer=PillowWriter(fps=3))
    from PIL import Image

    with Image.open(path) as gif:
        assert gif.n_frames == 12  # two frames per draw


def test_2d_figure_has_data_contours_legend_and_ellipses(models):
    fig = plotting.figure_2d(models["data_2d"], models["model_2d"])
    data_ax, contour_ax = fig.axes[:2]
    assert data_ax.get_legend() is not None and contour_ax.get_legend() is not None
    assert len(contour_ax.patches) == 3  # one ellipse per component
    assert len(fig.axes) == 3  # with the colour bar


def test_conditionals_slices_are_densities(models):
    slices = (-1.0, 0.5)
    fig = plotting.figure_conditionals(models["gaussian"], models["mixture"], slices=slices)
    assert len(fig.axes) == 4
    for slice_ax in (fig.axes[1], fig.axes[3]):
        curves = [line for line in slice_ax.get_lines() if line.get_linestyle() == "-"]
        assert len(curves) == len(slices)
        for curve in curves:
            x, y = curve.get_data()
            assert np.trapezoid(y, x) == pytest.approx(1.0, abs=0.02)


def test_conditional_slice_of_a_gaussian_is_the_closed_form(models):
    gaussian = models["gaussian"]  # unit variances, correlation 0.8
    cond = gaussian.condition([0], [1.5])
    assert float(cond.mean()[0]) == pytest.approx(0.8 * 1.5)
    assert float(cond.covariance()[0, 0]) == pytest.approx(1 - 0.8**2)


def test_the_dirichlet_process_figure_shows_fewer_components(models):
    fig = plotting.figure_dirichlet_process(models["data_1d"], models["em_10"], models["dp_10"])
    em_axis, dp_axis, weights_axis = fig.axes[:3]
    assert "all 10 components" in em_axis.get_title()
    kept = models["dp_10"].n_active()
    assert kept < 10 and f"{kept} of 10 carry weight" in dp_axis.get_title()
    assert len(weights_axis.patches) == 20
