"""From a picture to a fitted mixture and its renders, in memory (files live in ``files.py``)."""

from __future__ import annotations

import numbers
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from .._foundations.validation import MAX_SEED
from ..bayesian import BayesianGaussianMixture
from ..exceptions import ConvergenceWarning
from ..mixture import GaussianMixture
from . import render
from .choices import COLOUR_ONLY, MODES, RENDERS, PaintError
from .points import (
    as_float_image,
    colour_pixel_points,
    dark_pixel_points,
    downscale_to_budget,
    is_colour,
    mask_from_picture,
)
from .progress import QuietReporter

DEFAULT_COMPONENTS = {"bw": 500, "color": 1000}
# Pixel budgets: a 512x512 colour picture is fitted at full size; a fit stays well under a
# minute on 2 cores.
DEFAULT_MAX_PIXELS = {"bw": 1_000_000, "color": 262_144}
# A pixel is a unit square, not a point: its coordinates (and 0-255 colour levels) carry a
# variance of 1/12, the floor every covariance gets.
PIXEL_REG_COVAR = 1.0 / 12.0
# A Bayesian painting's prior on its components' means: weak enough not to pull them to the
# picture's centre (scikit-learn's default, 1, stretches them radially towards it).
WEAK_MEAN_PRECISION = 1e-6


@dataclass
class Painting:
    """A fitted picture and its renders.

    Attributes
    ----------
    model : GaussianMixture
        Over (x, y) ('bw') or (x, y, r, g, b) * colour scale ('color'), in the pixels of the
        picture it was fitted on.
    mode : {'bw', 'color'}
    picture : ndarray
        The picture as fitted (downscaled to the pixel budget), floats in [0, 1].
    shape : (int, int)
        Size of the original picture: every raster render has this size.
    factor : float
        Fitted size over original size.
    renders : dict
        Render name to uint8 array (raster) or matplotlib Figure ('contour', 'ellipses').
    report : dict
        Sizes, points, fit summary and seconds per stage.
    colour_scale : float
    n_points : int
        Points fitted.
    image : ndarray, optional
        The picture at its original size (the ellipses are drawn over it).
    """

    model: GaussianMixture
    mode: str
    picture: np.ndarray
    shape: tuple
    factor: float
    colour_scale: float = 1.0
    n_points: int = 0
    image: object = None
    renders: dict = field(default_factory=dict)
    report: dict = field(default_factory=dict)

    @property
    def shown_model(self):
        """The mixture the renders draw: a Bayesian fit's components that carry weight."""
        return self.model.active() if isinstance(self.model, BayesianGaussianMixture) \
            else self.model

    def default_samples(self):
        """Dots of the samples render: as many as points ('bw'), a dot per pixel ('color')."""
        if self.mode == "bw":
            return min(MAX_SAMPLES, self.n_points)
        return min(MAX_SAMPLES, self.shape[0] * self.shape[1])


class Renderer:
    """Every render of a :class:`Painting` at one ``sharpen``, sharing the work they have in
    common: the sharpened mixture, the component colours and the (x, y) grid of the density,
    contour and components renders (computed on first use).
    """

    def __init__(self, painting, sharpen=1.0):
        self.painting = painting
        fitted = painting.shown_model
        self.model = fitted if sharpen == 1.0 else fitted.scale_covariances(sharpen)
        self.colours = (render.mean_colours(self.model, painting.colour_scale)
                        if painting.mode == "color"
                        else render.palette(painting.model.n_components))
        self._grid = None

    @property
    def grid(self):
        if self._grid is None:
            self._grid = render.evaluate_grid(self.model, self.painting.shape,
                                              self.painting.factor)
        return self._grid

    def render(self, name, n_samples=None, tone_knots=render.DEFAULT_TONE_KNOTS,
               peak_quantile=render.DEFAULT_PEAK_QUANTILE, seed=None):
        """Render ``name`` (one of ``RENDERS``): a uint8 array or, for ``FIGURES``, a
        matplotlib Figure. ``seed`` draws the samples (default: the model's own)."""
        painting, model = self.painting, self.model
        shape, factor, scale = painting.shape, painting.factor, painting.colour_scale
        if name == "samples":
            if seed is not None:
                model = _with_seed(model, seed)
            n = painting.default_samples() if n_samples is None else n_samples
            return render.render_samples(model, shape, n, factor, scale)
        if name == "density":
            return render.render_density(self.grid, None, peak_quantile)
        if name == "density-mapped":
            return render.render_density(self.grid, tone_knots, peak_quantile)
        if name == "contour":
            return render.render_contour(self.grid)
        if name == "conditional-mean":
            return render.render_conditional_mean(model, shape, factor, scale)
        if name == "components":
            return render.render_components(self.grid, self.colours)
        if painting.image is None:  # over the picture as fitted
            return render.render_ellipses(model, painting.picture, 1.0, colours=self.colours)
        return render.render_ellipses(model, as_float_image(painting.image), factor,
                                      colours=self.colours)


def _with_seed(model, seed):
    import copy

    seeded = copy.copy(model)
    seeded.random_state = seed
    return seeded


def choose_mode(image, mode):
    if mode not in MODES:
        raise PaintError(f"mode must be one of {', '.join(MODES)}, got {mode!r}.")
    if mode != "auto":
        return mode
    return "color" if is_colour(image) else "bw"


def check_renders(renders, mode):
    """The renders to make, in canonical order; colour-only ones are skipped in 'bw'."""
    if renders is None:
        renders = RENDERS
    unknown = [r for r in renders if r not in RENDERS]
    if unknown:
        raise PaintError(f"Unknown render {unknown[0]!r}; choose from {', '.join(RENDERS)}.")
    if mode == "bw" and any(r in COLOUR_ONLY for r in renders) and tuple(renders) != RENDERS:
        raise PaintError("The conditional-mean render needs colour mode (--mode color).")
    return tuple(r for r in RENDERS if r in renders and not (mode == "bw" and r in COLOUR_ONLY))


def picture_points(picture, mode, threshold=None, keep="dark", colour_scale=1.0):
    """The points of a picture in the chosen mode (see ``points.py``)."""
    if mode == "bw":
        points, used = dark_pixel_points(picture, threshold=threshold, keep=keep)
        if len(points) == 0:
            side = "darker" if keep == "dark" else "lighter"
            raise PaintError(f"No pixels are {side} than the threshold {used:.3g}: nothing to "
                             "fit; choose another --threshold or --keep-light.")
        return points, used
    return colour_pixel_points(picture, colour_scale=colour_scale), None


def paint(image, *, mode="auto", n_components=None, renders=None, n_samples=None, sharpen=1.0,
          seed=0, max_pixels=None, threshold=None, keep="dark", colour_scale=1.0,
          tone_knots=render.DEFAULT_TONE_KNOTS, peak_quantile=render.DEFAULT_PEAK_QUANTILE,
          max_iter=100, tol=1e-3, dask_address=None, reporter=None, bayesian=False,
          mask=None, on_iteration=None):
    """Fit a mixture to a picture and render it back.

    Parameters
    ----------
    image : ndarray of shape (H, W) or (H, W, 3|4)
    mode : {'auto', 'bw', 'color'}
        'bw': the (x, y) of the dark (or light) pixels; 'color': (x, y, r, g, b) of every
        pixel; 'auto' picks 'color' for pictures with colour.
    n_components : int, optional
        500 ('bw') or 1000 ('color') by default.
    renders : sequence of str, optional
        Subset of ``RENDERS`` (all by default).
    n_samples : int, optional
        Dots in the samples render: as many as points ('bw'), half the pixels ('color').
    sharpen : float
        Covariances are multiplied by this before rendering (0.6 sharpens).
    seed : int
        Seeds the fit and the samples.
    max_pixels : int, optional
        Pictures with more pixels are downscaled for fitting; renders keep the full size.
    threshold : float in [0, 1], optional
        Grey level of the 'bw' split (Otsu's by default).
    keep : {'dark', 'light'}
    colour_scale : float
        Weight of colour against position in 'color' mode.
    tone_knots : sequence of (density, ink)
        Tone curve of the density-mapped render.
    peak_quantile : float in (0, 1]
        Quantile of the inked pixels' density that the density renders scale to 1.
    max_iter, tol : EM limits.
    dask_address : str, optional
        Address of a dask.distributed scheduler: the fit's E-steps run on that cluster.
    reporter : Reporter, optional
        Progress display (see ``progress.py``).
    mask : ndarray of shape (H, W), bool, optional
        Inpainting: the colours of these pixels are missing values (their (x, y) are known);
        the 5-D mixture is fitted with those holes, and E[r, g, b | x, y] fills them in the
        conditional-mean render. Colour mode only.
    bayesian : bool
        Fit a :class:`~gaussmix.BayesianGaussianMixture` (Dirichlet process) with
        ``n_components`` as the upper bound; the renders show the components that carry
        weight (its :meth:`~gaussmix.BayesianGaussianMixture.active` mixture).
    on_iteration : callable, optional
        Called with each EM iteration's :class:`~gaussmix.FitProgress` (its ``mixture()``
        draws a preview).

    Returns
    -------
    Painting
    """
    reporter = reporter or QuietReporter()
    try:
        image = as_float_image(image)
    except ValueError as exc:
        raise PaintError(str(exc)) from None
    if min(image.shape[:2]) < 2:
        raise PaintError(f"The picture is {image.shape[1]}x{image.shape[0]} pixels; painting "
                         "needs at least 2x2.")
    mode = choose_mode(image, mode)
    mask = _check_mask(mask, image.shape[:2], mode, bayesian)
    renders = check_renders(renders, mode)
    _check_options(sharpen, colour_scale, threshold, keep, n_samples, max_pixels, n_components,
                   seed)
    if not 0.0 < peak_quantile <= 1.0:
        raise PaintError(f"--peak must lie in (0, 1], got {peak_quantile}.")
    try:
        tone_knots = render.check_tone_knots(tone_knots)
    except ValueError as exc:
        raise PaintError(str(exc)) from None
    seconds = {}

    start = time.perf_counter()
    budget = DEFAULT_MAX_PIXELS[mode] if max_pixels is None else max_pixels
    picture, factor = downscale_to_budget(image, budget)
    if mask is not None and factor != 1.0:
        small, _ = downscale_to_budget(mask.astype(np.float64), budget)
        fitted_mask = small >= 0.5
    else:
        fitted_mask = mask
    if factor != 1.0:
        reporter.note(f"Downscaled {image.shape[1]}x{image.shape[0]} to "
                      f"{picture.shape[1]}x{picture.shape[0]} pixels for fitting "
                      f"(--max-pixels {budget}); renders keep the full size.")
    points, used_threshold = picture_points(picture, mode, threshold, keep, colour_scale)
    if fitted_mask is not None:
        points[fitted_mask.ravel(), 2:] = np.nan  # the colours under the mask are missing
    k = DEFAULT_COMPONENTS[mode] if n_components is None else n_components
    if k > len(points):
        raise PaintError(f"Asked for {k} components but the picture gives only {len(points)} "
                         "points; use a smaller -k.")
    seconds["prepare"] = time.perf_counter() - start

    start = time.perf_counter()
    model = _fit(points, k, seed, max_iter, tol, reporter, dask_address, bayesian,
                 on_iteration)
    seconds["fit"] = time.perf_counter() - start

    shape = image.shape[:2]
    painting = Painting(model=model, mode=mode, picture=picture, shape=shape, factor=factor,
                        colour_scale=colour_scale, n_points=len(points), image=image)
    renderer = Renderer(painting, sharpen)
    shown = painting.shown_model
    with reporter.stage("render", total=len(renders)) as advance:
        for name in renders:
            start = time.perf_counter()
            painting.renders[name] = renderer.render(name, n_samples, tone_knots,
                                                     peak_quantile)
            seconds[name] = time.perf_counter() - start
            advance(note=name)
    painting.report = {
        "picture": {"width": shape[1], "height": shape[0]},
        "fitted_on": {"width": picture.shape[1], "height": picture.shape[0], "factor": factor},
        "mode": mode,
        "points": len(points),
        "threshold": used_threshold,
        "n_components": int(k),
        "bayesian": bool(bayesian),
        "masked_pixels": 0 if mask is None else int(mask.sum()),
        "active_components": int(shown.n_components),
        "iterations": int(model.n_iter_),
        "converged": bool(model.converged_),
        # A Bayesian fit's bound is not a log-likelihood: score the points under its mixture.
        "log_likelihood": float(shown.score(points) if bayesian else model.lower_bound_),
        "sharpen": float(sharpen),
        "peak_quantile": float(peak_quantile),
        "seed": int(seed),
        "seconds": {name: round(value, 3) for name, value in seconds.items()},
    }
    return painting


# Beyond these the renders say nothing more (a covariance 1000x smaller is already a dot, one
# 1000x larger a blur; colour 1000x position is colour alone) and the numbers leave the
# range where densities and contour levels can be told apart.
SHARPEN_RANGE = (1e-3, 1e3)
COLOUR_SCALE_RANGE = (1e-3, 1e3)
# Dots in the samples render at most: 100 million is already ~400 per pixel of a 512x512 render.
MAX_SAMPLES = 10**8


def _check_mask(mask, shape, mode, bayesian):
    """The inpainting mask as booleans of the picture's shape, or None."""
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.shape[:2] != tuple(shape):
        raise PaintError(f"The mask is {mask.shape[1]}x{mask.shape[0]} pixels but the picture "
                         f"is {shape[1]}x{shape[0]}; draw the mask on a copy of the picture.")
    if mode != "color":
        raise PaintError("Inpainting (--mask) needs colour mode: the masked pixels' colours "
                         "are what is filled in.")
    if bayesian:
        raise PaintError("Inpainting (--mask) needs the plain mixture; leave out --bayesian.")
    mask = mask_from_picture(mask)
    if mask.all():
        raise PaintError("The mask covers the whole picture: no colour is left to learn from.")
    return mask


def _check_options(sharpen, colour_scale, threshold, keep, n_samples, max_pixels, n_components,
                   seed):
    low, high = SHARPEN_RANGE
    if not low <= sharpen <= high:
        raise PaintError(f"--sharpen must lie in [{low:g}, {high:g}], got {sharpen}; 0.6 "
                         "sharpens, 1 keeps.")
    low, high = COLOUR_SCALE_RANGE
    if not low <= colour_scale <= high:
        raise PaintError(f"--color-scale must lie in [{low:g}, {high:g}], got {colour_scale}.")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not (
            0 <= seed <= MAX_SEED):
        raise PaintError(f"--seed must be a whole number from 0 to {MAX_SEED}, got {seed!r}.")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise PaintError(f"--threshold must lie in [0, 1], got {threshold}.")
    if keep not in ("dark", "light"):
        raise PaintError(f"keep must be 'dark' or 'light', got {keep!r}.")
    if n_samples is not None and not 1 <= n_samples <= MAX_SAMPLES:
        raise PaintError(f"--samples must lie in [1, {MAX_SAMPLES}], got {n_samples}.")
    if max_pixels is not None and max_pixels < 1:
        raise PaintError(f"--max-pixels must be at least 1, got {max_pixels}.")
    if n_components is not None and n_components < 1:
        raise PaintError(f"-k must be at least 1, got {n_components}.")


def _fit(points, k, seed, max_iter, tol, reporter, dask_address=None, bayesian=False,
         listener=None):
    with reporter.stage("fit", total=max_iter) as advance:
        def on_iteration(progress):
            bound = progress.lower_bound / (len(points) if bayesian else 1)
            advance(note=f"{'lower bound' if bayesian else 'log-likelihood'} {bound:.4f}")
            if listener is not None:
                listener(progress)

        settings = dict(covariance_type="full", reg_covar=PIXEL_REG_COVAR, random_state=seed,
                        max_iter=max_iter, callback=on_iteration)
        if bayesian:
            # Its bound is a sum over the points: the same tolerance per point. The default
            # priors (the whole picture's covariance; means drawn to its centre) would widen
            # every component towards the picture's size; a picture's prior is a pixel.
            d = points.shape[1]
            model = BayesianGaussianMixture(
                k, tol=tol * len(points), covariance_prior=PIXEL_REG_COVAR * np.eye(d),
                mean_precision_prior=WEAK_MEAN_PRECISION, **settings)
        else:
            model = GaussianMixture(k, tol=tol, **settings)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            if dask_address is None:
                model.fit(points)
            else:
                _fit_on_cluster(model, points, dask_address)
    for warning in caught:
        reporter.note(str(warning.message))
    model.callback = None  # the model outlives the progress display
    return model


def _fit_on_cluster(model, points, address):
    """Fit with the E-steps on a dask.distributed cluster."""
    try:
        import dask.array as da
        from distributed import Client
    except ImportError:
        raise PaintError("--dask needs dask and distributed; install them with "
                         "pip install 'gaussmix[dask]'.") from None
    try:
        client = Client(address, timeout="10s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise PaintError(f"Cannot reach the dask scheduler at {address!r} ({exc}); check the "
                         "address (tcp://host:8786).") from None
    with client:
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        rows = max(4096, len(points) // (4 * n_workers))
        model.fit(da.from_array(points, chunks=(rows, points.shape[1])))
