"""Mixtures back to pictures. Each render is a function: model -> image array (or a matplotlib
Figure for the plots with axes).

A model's first two features are ``(x, y)`` in the pixels of the picture it was fitted on; a
colour model has three more, ``(r, g, b) * colour_scale`` with r, g, b in 0-255. Renders take
the output ``shape`` (H, W) and ``factor``, the model's pixels per output pixel, so a model fitted
on a downscaled picture renders at the original size.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

from .._fitting.inference import conditional_mean, log_prob_and_labels
from .._foundations.validation import check_random_state
from .._mathematics.algebra import dense_covariances
from .points import pixel_grid, pixel_tiles

# Default tone curve: (scaled density, ink) knots. Densities below ~0.8 of the peak stay
# nearly white; ink deepens in steps above 0.8, 0.9, 0.95 and 0.98.
DEFAULT_TONE_KNOTS = ((0.0, 0.0), (0.8, 0.08), (0.9, 0.35), (0.95, 0.6), (0.98, 0.85), (1.0, 1.0))

PAPER = 255


def xy_model(model):
    """The mixture over (x, y) alone (itself for a 2-D model)."""
    return model if model.n_features_in_ == 2 else model.marginal([0, 1])


def to_pixels(xy, factor):
    """Model coordinates to output pixel coordinates (inverse of ``pixel_grid``)."""
    return (xy + 0.5) / factor - 0.5


# The scaled density is 1 at this quantile of the inked pixels' densities (and clipped above):
# the peaks of a few thin components along sharp edges would otherwise leave everything else
# pale. 1.0 scales by the maximum.
DEFAULT_PEAK_QUANTILE = 0.95


@dataclass(frozen=True)
class Grid:
    """``log p(x, y)`` and the most likely component at every output pixel, shape (H, W).

    Computed in one chunked pass (:func:`evaluate_grid`) and shared by the density, contour
    and components renders.
    """

    log_density: np.ndarray
    labels: np.ndarray


def evaluate_grid(model, shape, factor=1.0):
    """One pass over the pixel grid: log-density of (x, y) and most likely component."""
    xy = xy_model(model)
    log_density, labels = log_prob_and_labels(xy._params(), pixel_grid(shape, factor),
                                              xy.backend, xy.chunk_size, pixel_tiles(shape))
    return Grid(log_density.reshape(shape), labels.reshape(shape))


def scaled_density(log_density, peak_quantile=DEFAULT_PEAK_QUANTILE):
    """Density in [0, 1]: 1 at the ``peak_quantile`` of the pixels with noticeable density.

    Parameters
    ----------
    log_density : ndarray
    peak_quantile : float in (0, 1]
        1.0 scales by the maximum.
    """
    density = np.exp(log_density - log_density.max())
    if peak_quantile < 1.0:
        inked = density[density >= 1e-3]
        density = density / np.quantile(inked, peak_quantile)
    return np.clip(density, 0.0, 1.0)


def parse_tone_knots(text):
    """Knots from text like ``"0:0,0.8:0.1,1:1"`` (scaled density : ink)."""
    try:
        knots = tuple(tuple(float(v) for v in part.split(":")) for part in text.split(","))
    except ValueError:
        knots = ()
    if len(knots) < 2 or any(len(k) != 2 for k in knots):
        raise ValueError(f"Tone knots must look like '0:0,0.8:0.1,1:1' (density:ink pairs), got "
                         f"{text!r}.")
    return check_tone_knots(knots)


def check_tone_knots(knots):
    """Validated knots: at least two, densities increasing in [0, 1], inks in [0, 1]."""
    arr = np.asarray(knots, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) < 2:
        raise ValueError("Tone knots must be at least two (density, ink) pairs.")
    if (not np.isfinite(arr).all() or (arr < 0).any() or (arr > 1).any()
            or (np.diff(arr[:, 0]) <= 0).any()):
        raise ValueError("Tone knots need densities increasing from 0 to 1 and inks within "
                         "[0, 1]; for example '0:0,0.8:0.1,1:1'.")
    return tuple(map(tuple, arr))


def tone_map(density, knots=None):
    """Ink in [0, 1] for scaled densities through a piecewise-linear curve.

    Parameters
    ----------
    density : ndarray, values in [0, 1]
    knots : sequence of (density, ink) pairs, optional
        None is the linear map (ink = density).
    """
    if knots is None:
        return np.clip(density, 0.0, 1.0)
    knots = np.asarray(check_tone_knots(knots))
    return np.interp(density, knots[:, 0], knots[:, 1])


def ink_on_paper(ink):
    """Ink (0 paper, 1 black) as a uint8 grey picture: high density dark."""
    return np.round(PAPER * (1.0 - np.clip(ink, 0.0, 1.0))).astype(np.uint8)


def render_density(grid, knots=None, peak_quantile=DEFAULT_PEAK_QUANTILE):
    """Density of (x, y) as ink on paper; ``knots`` None is the linear mapping.

    Parameters
    ----------
    grid : Grid
        From :func:`evaluate_grid`.
    knots : sequence of (density, ink), optional
        Tone curve (see :func:`tone_map`).
    peak_quantile : float in (0, 1]
        See :func:`scaled_density`.

    Returns
    -------
    image : ndarray of shape (H, W), uint8
    """
    return ink_on_paper(tone_map(scaled_density(grid.log_density, peak_quantile), knots))


def render_samples(model, shape, n_samples, factor=1.0, colour_scale=1.0, dot_radius=0):
    """``n_samples`` draws from the model as dots on white paper.

    Black dots for a 2-D model; for a colour model each dot has its sampled colour, clipped to
    [0, 255]. Draws come from ``model.sample`` (seeded by the model's ``random_state``).

    Returns
    -------
    image : ndarray of shape (H, W) uint8 (2-D model) or (H, W, 3) uint8 (colour model)
    """
    import copy

    colour = model.n_features_in_ == 5
    canvas = np.full(tuple(shape) + ((3,) if colour else ()), PAPER, dtype=np.uint8)
    drawer = copy.copy(model)  # one generator for every block, so blocks never repeat
    drawer.random_state = check_random_state(model.random_state)
    for start in range(0, n_samples, SAMPLE_BLOCK):
        samples, _ = drawer.sample(min(SAMPLE_BLOCK, n_samples - start))
        ink = (np.clip(np.round(samples[:, 2:5] / colour_scale), 0, 255).astype(np.uint8)
               if colour else 0)
        _dot(canvas, to_pixels(samples[:, :2], factor), ink, dot_radius)
    return canvas


# Samples drawn at once by render_samples: memory stays O(block) for any number of dots.
SAMPLE_BLOCK = 1_000_000


def _dot(canvas, xy, ink, dot_radius):
    """Ink dots of ``dot_radius`` pixels at ``xy`` (output pixels) on ``canvas``, in place."""
    h, w = canvas.shape[:2]
    xy = np.round(np.clip(xy, -2**31, 2**31)).astype(np.int64)
    for dy in range(-dot_radius, dot_radius + 1):
        for dx in range(-dot_radius, dot_radius + 1):
            if dx * dx + dy * dy > dot_radius * dot_radius:
                continue
            x, y = xy[:, 0] + dx, xy[:, 1] + dy
            inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
            canvas[y[inside], x[inside]] = ink[inside] if np.ndim(ink) else ink


def render_conditional_mean(model, shape, factor=1.0, colour_scale=1.0):
    """``E[r, g, b | x, y]`` at every pixel: the painterly picture of a colour model.

    Returns
    -------
    image : ndarray of shape (H, W, 3), uint8
    """
    rgb = conditional_mean(model._params(), np.array([0, 1]), pixel_grid(shape, factor),
                           backend=model.backend, tiles=pixel_tiles(shape)) / colour_scale
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8).reshape(shape + (3,))


def palette(n_colours, seed=0):
    """``n_colours`` distinct, saturated RGB colours (golden-ratio hues), uint8 (n, 3)."""
    golden = 0.618033988749895
    rng = np.random.RandomState(seed)
    hues = (rng.uniform() + golden * np.arange(n_colours)) % 1.0
    sat = 0.55 + 0.35 * ((np.arange(n_colours) * 7) % 3) / 2.0
    val = 0.75 + 0.2 * ((np.arange(n_colours) * 5) % 2)
    rgb = [colorsys.hsv_to_rgb(h, s, v) for h, s, v in zip(hues, sat, val)]
    return np.round(np.array(rgb) * 255).astype(np.uint8)


def render_components(grid, colours, min_density=1e-3):
    """Each pixel coloured by its most likely component; white where the (x, y) density is
    below ``min_density`` of its peak.

    Parameters
    ----------
    grid : Grid
    colours : ndarray of shape (K, 3), uint8
        One colour per component (:func:`palette` or :func:`mean_colours`).

    Returns
    -------
    image : ndarray of shape (H, W, 3), uint8
    """
    image = colours[grid.labels]
    image[scaled_density(grid.log_density, 1.0) < min_density] = PAPER
    return image


def mean_colours(model, colour_scale=1.0):
    """Each component's mean colour (colour model), uint8 (K, 3)."""
    return np.clip(np.round(model.means_[:, 2:5] / colour_scale), 0, 255).astype(np.uint8)


def _figure(shape, dpi=100, extra_width=0.0):
    from matplotlib.figure import Figure

    h, w = shape
    return Figure(figsize=(w / dpi + extra_width, h / dpi), dpi=dpi)


# Contour levels in nats below the peak: fine near the top, where the inside of a shape
# varies, coarse in the tails.
CONTOUR_DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 11.0, 15.0, 20.0, 25.0)


def render_contour(grid, depths=CONTOUR_DEPTHS):
    """Filled contours of ``log p(x, y)`` with a colour bar, image-oriented (y down).

    Parameters
    ----------
    grid : Grid
    depths : sequence of float
        Levels, in nats below the peak; lower densities share the last level.

    Returns
    -------
    matplotlib.figure.Figure
    """
    log_p = grid.log_density
    shape = log_p.shape
    levels = np.sort(log_p.max() - np.asarray(depths, dtype=float))
    fig = _figure(shape, extra_width=1.6)
    ax = fig.add_axes([0.06, 0.06, 0.72, 0.88])
    h, w = shape
    extent = (-0.5, w - 0.5, h - 0.5, -0.5)
    from matplotlib import colormaps
    from matplotlib.colors import BoundaryNorm

    cmap = colormaps["magma"]
    # One distinct colour per band, however unevenly the levels are spaced.
    norm = BoundaryNorm(levels, cmap.N)
    filled = ax.contourf(np.clip(log_p, levels[0], None), levels=levels, cmap=cmap, norm=norm,
                         extent=extent, origin="upper")
    ax.contour(log_p, levels=levels, colors="k", linewidths=0.25, extent=extent, origin="upper")
    ax.set_aspect("equal")
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.tick_params(labelsize=7)
    cax = fig.add_axes([0.82, 0.1, 0.03, 0.8])
    bar = fig.colorbar(filled, cax=cax)
    bar.set_label("log p(x, y)", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    return fig


def ellipse_parameters(model, factor=1.0, n_std=2.0):
    """Centres, widths, heights and angles (degrees) of each component's ``n_std`` ellipse on
    the (x, y) plane, in output pixels.

    Returns
    -------
    centres : ndarray (K, 2); widths, heights, angles : ndarray (K,)
    """
    xy = xy_model(model)
    cov = dense_covariances(xy._params()) / factor**2
    values, vectors = np.linalg.eigh(cov)
    values = np.clip(values, 0.0, None)
    angles = np.degrees(np.arctan2(vectors[:, 1, 1], vectors[:, 0, 1]))
    widths = 2.0 * n_std * np.sqrt(values[:, 1])
    heights = 2.0 * n_std * np.sqrt(values[:, 0])
    return to_pixels(xy.means_.astype(np.float64), factor), widths, heights, angles


def render_ellipses(model, picture, factor=1.0, colours=None, n_std=2.0, fade=0.55):
    """The picture, faded towards white, with every component's ``n_std`` ellipse over it.

    Parameters
    ----------
    model : GaussianMixture
    picture : ndarray of shape (H, W) or (H, W, 3), floats in [0, 1]
    colours : ndarray of shape (K, 3) uint8, optional
        Ellipse colours (a distinct palette by default).
    fade : float in [0, 1]
        How far the picture is blended towards white, so that the ellipses stand out.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.collections import EllipseCollection

    shape = picture.shape[:2]
    fig = _figure(shape)
    ax = fig.add_axes([0, 0, 1, 1])
    # As uint8: matplotlib resamples a float picture in float64 copies (~100 bytes a pixel).
    shown = np.round(255.0 * (picture * (1.0 - fade) + fade)).astype(np.uint8)
    ax.imshow(shown, cmap="gray" if picture.ndim == 2 else None, vmin=0, vmax=255,
              interpolation="nearest")
    centres, widths, heights, angles = ellipse_parameters(model, factor, n_std)
    colours = palette(model.n_components) if colours is None else colours
    ax.add_collection(EllipseCollection(
        widths, heights, angles, units="xy", offsets=centres, offset_transform=ax.transData,
        facecolors="none", edgecolors=colours / 255.0, linewidths=0.7,
    ))
    ax.set_xlim(-0.5, shape[1] - 0.5)
    ax.set_ylim(shape[0] - 0.5, -0.5)
    ax.axis("off")
    return fig
