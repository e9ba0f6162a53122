"""Foreground/background segmentation with colour Gaussian mixtures (as in GrabCut).

Two mixtures model the colours of the foreground and of the background. Every pixel gets the
log-likelihood ratio of its colour under the two. Per-pixel labels are noisy where the two
palettes overlap, so the labelling is made spatially coherent, by default with a graph cut: the
exact minimum of the ratio's costs plus a contrast-sensitive penalty for every pair of
neighbouring pixels with different labels (a Potts model solved as a maximum flow); or by
smoothing the bounded evidence ``tanh(ratio / 2)`` over neighbours. Both mixtures are then
re-estimated from the new labels, and the rounds repeat.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse
from scipy import ndimage
from scipy.sparse.csgraph import breadth_first_order, maximum_flow

from .exceptions import ConvergenceWarning
from .imaging.points import as_float_image
from .mixture import GaussianMixture

# Colour levels are integers 0-255: a level is a unit interval, variance 1/12.
COLOUR_REG_COVAR = 1.0 / 12.0
COHERENCE = ("graphcut", "smooth", "none")
DEFAULT_STRENGTH = {"graphcut": 3.0, "smooth": 1.5, "none": 0.0}
# The graph cut works in integer capacities: nats times this, the evidence clipped at
# CLIP_NATS (a pixel more certain than that is certain).
CAPACITY_SCALE = 1000
CLIP_NATS = 30.0
# A neighbour penalty beyond every pixel's evidence keeps all pixels together whatever it
# is: larger ones are this (int32 capacities, summed over a pixel's six edges, stay finite).
MAX_PAIR_CAPACITY = 2**27
# Share of the neighbour penalty that does not fade across colour edges: with none, a textured
# object could be cut along the edges of its own texture.
CONTRAST_FLOOR = 0.6


class SegmentationError(ValueError):
    """Arguments that cannot be segmented, with one sentence saying why."""


def _colours(image):
    """Pixels as (H * W, 3) colours in 0-255 (grey pictures give r = g = b)."""
    try:
        img = as_float_image(image)
    except ValueError as exc:
        raise SegmentationError(str(exc)) from None
    if img.ndim == 2:
        img = np.repeat(img[:, :, np.newaxis], 3, axis=2)
    return img.reshape(-1, 3) * 255.0, img.shape[:2]


def box_mask(shape, box):
    """Boolean (H, W) mask of a box ``(x0, y0, x1, y1)``: columns x0..x1-1, rows y0..y1-1."""
    h, w = shape
    try:
        x0, y0, x1, y1 = (int(v) for v in box)
    except (TypeError, ValueError):
        raise SegmentationError(f"box must be four integers (x0, y0, x1, y1), got {box!r}.") \
            from None
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        raise SegmentationError(
            f"box {box!r} does not fit the {w}x{h} picture; need 0 <= x0 < x1 <= {w} and "
            f"0 <= y0 < y1 <= {h}.")
    if (x1 - x0) * (y1 - y0) == h * w:
        raise SegmentationError("The box covers the whole picture, leaving no background "
                                "to learn from; draw it tighter around the object.")
    mask = np.zeros(shape, dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _fit(colours, n_components, random_state):
    n = min(n_components, len(colours))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return GaussianMixture(n, reg_covar=COLOUR_REG_COVAR, random_state=random_state,
                               max_iter=50).fit(colours)


def log_likelihood_ratio(colours, foreground, n_components=5, random_state=0):
    """``log p(colour | foreground) - log p(colour | background)`` for every pixel.

    Parameters
    ----------
    colours : ndarray of shape (n, 3)
    foreground : ndarray of shape (n,), bool
        Current labels; each side needs at least one pixel.
    """
    fg = _fit(colours[foreground], n_components, random_state)
    bg = _fit(colours[~foreground], n_components, random_state)
    return fg.score_samples(colours) - bg.score_samples(colours)


def _grid_edges(shape):
    """Index pairs of horizontally and vertically neighbouring pixels."""
    h, w = shape
    index = np.arange(h * w).reshape(shape)
    right = np.column_stack([index[:, :-1].ravel(), index[:, 1:].ravel()])
    down = np.column_stack([index[:-1, :].ravel(), index[1:, :].ravel()])
    return np.concatenate([right, down])


def graph_cut(ratio, colours, allowed, strength):
    """Foreground labels minimising unary costs from ``ratio`` plus Potts penalties.

    Cutting a pixel to the background costs its evidence for the foreground (``ratio`` > 0)
    and vice versa; neighbours with different labels cost
    ``strength * (floor + (1 - floor) exp(-beta |c_p - c_q|^2))``: cheaper across colour edges,
    as in GrabCut (``beta`` the inverse of twice the mean squared colour difference), but never
    below ``floor`` (``CONTRAST_FLOOR``) of the full penalty, so that a textured object is not
    cut along the edges of its own texture. Pixels outside ``allowed`` are background for sure.

    Parameters
    ----------
    ratio : ndarray of shape (H, W), log-likelihood ratios
    colours : ndarray of shape (H * W, 3)
    allowed : ndarray of shape (H, W), bool
    strength : float, >= 0

    Returns
    -------
    foreground : ndarray of shape (H, W), bool
    """
    shape = ratio.shape
    n = ratio.size
    source, sink = n, n + 1
    evidence = np.clip(ratio.ravel(), -CLIP_NATS, CLIP_NATS)
    to_fg = np.round(np.maximum(evidence, 0.0) * CAPACITY_SCALE).astype(np.int64)
    to_bg = np.round(np.maximum(-evidence, 0.0) * CAPACITY_SCALE).astype(np.int64)
    to_bg[~allowed.ravel()] = int(4 * CLIP_NATS * CAPACITY_SCALE)  # never foreground
    to_fg[~allowed.ravel()] = 0
    pairs = _grid_edges(shape)
    diff = ((colours[pairs[:, 0]] - colours[pairs[:, 1]]) ** 2).sum(axis=1)
    beta = 1.0 / (2.0 * max(diff.mean(), 1e-12))
    contrast = CONTRAST_FLOOR + (1.0 - CONTRAST_FLOOR) * np.exp(-beta * diff)
    pair_cap = np.round(np.minimum(strength * contrast * CAPACITY_SCALE,
                                   MAX_PAIR_CAPACITY)).astype(np.int64)
    pixels = np.arange(n)
    rows = np.concatenate([np.full(n, source), pixels, pairs[:, 0], pairs[:, 1]])
    cols = np.concatenate([pixels, np.full(n, sink), pairs[:, 1], pairs[:, 0]])
    caps = np.concatenate([to_fg, to_bg, pair_cap, pair_cap]).astype(np.int32)
    keep = caps > 0
    graph = scipy.sparse.csr_matrix((caps[keep], (rows[keep], cols[keep])), shape=(n + 2, n + 2))
    graph.sum_duplicates()
    flow = maximum_flow(graph, source, sink, method="dinic").flow
    residual = (graph - flow).tocsr()
    residual.data[residual.data < 0] = 0
    residual.eliminate_zeros()
    reachable = breadth_first_order(residual, source, directed=True, return_predecessors=False)
    foreground = np.zeros(n + 2, dtype=bool)
    foreground[reachable] = True
    return foreground[:n].reshape(shape) & allowed


def segment(image, box=None, mask=None, n_components=5, iterations=5, coherence="graphcut",
            strength=None, random_state=0):
    """Foreground mask of a picture from a box around the object (or a rough mask).

    Parameters
    ----------
    image : ndarray of shape (H, W, 3) or (H, W)
        Colour (or grey) picture.
    box : (x0, y0, x1, y1), optional
        Box around the object (columns x0..x1-1, rows y0..y1-1): everything outside is
        background for sure; inside starts as foreground.
    mask : ndarray of shape (H, W), bool, optional
        A rough first labelling instead of a box (True: foreground); every pixel may change.
    n_components : int, default=5
        Components of each colour mixture.
    iterations : int, default=5
        Rounds of fitting and relabelling at most (stops early once labels settle).
    coherence : {'graphcut', 'smooth', 'none'}, default='graphcut'
        How neighbouring pixels are kept together: a graph cut (see :func:`graph_cut`),
        Gaussian smoothing of ``tanh(ratio / 2)``, or nothing (each pixel by its colour).
    strength : float, optional
        Weight of the neighbour penalty for 'graphcut' (default 3) or the smoothing's standard
        deviation in pixels for 'smooth' (default 1.5).
    random_state : int, default=0

    Returns
    -------
    foreground : ndarray of shape (H, W), bool

    Examples
    --------
    >>> import numpy as np
    >>> picture = np.zeros((40, 40, 3), dtype=np.uint8); picture[10:30, 12:28] = [220, 40, 30]
    >>> fg = segment(picture, box=(5, 5, 35, 35))
    >>> int(fg.sum()), bool(fg[20, 20]), bool(fg[2, 2])
    (320, True, False)
    """
    colours, shape = _colours(image)
    if (box is None) == (mask is None):
        raise SegmentationError("Give either box=(x0, y0, x1, y1) or mask=..., not both and "
                                "not neither.")
    if not isinstance(iterations, (int, np.integer)) or iterations < 1:
        raise SegmentationError(f"iterations must be a positive integer, got {iterations!r}.")
    if not isinstance(n_components, (int, np.integer)) or n_components < 1:
        raise SegmentationError(f"n_components must be a positive integer, got "
                                f"{n_components!r}.")
    if coherence not in COHERENCE:
        raise SegmentationError(f"coherence must be one of {', '.join(COHERENCE)}, got "
                                f"{coherence!r}.")
    strength = DEFAULT_STRENGTH[coherence] if strength is None else strength
    if not 0 <= strength < np.inf:
        raise SegmentationError(f"strength must be a finite number, zero or positive, got "
                                f"{strength!r}.")
    if box is not None:
        allowed = box_mask(shape, box)
        labels = allowed.copy()
    else:
        labels = np.asarray(mask)
        if labels.shape != shape:
            raise SegmentationError(f"mask has shape {labels.shape} but the picture is "
                                    f"{shape}; pass one value per pixel.")
        labels = labels.astype(bool)
        allowed = np.ones(shape, dtype=bool)
    if labels.all() or not labels.any():
        raise SegmentationError("The first labelling needs both foreground and background "
                                "pixels.")
    for _ in range(iterations):
        ratio = log_likelihood_ratio(colours, labels.ravel(), n_components,
                                     random_state).reshape(shape)
        if coherence == "graphcut":
            new = graph_cut(ratio, colours, allowed, strength)
        else:
            evidence = np.tanh(0.5 * np.clip(ratio, -CLIP_NATS, CLIP_NATS))
            if coherence == "smooth" and strength > 0:
                # Smoothing wider than the picture is a constant: no wider kernels.
                evidence = ndimage.gaussian_filter(evidence, min(strength, max(shape)),
                                                   mode="nearest")
            new = (evidence > 0) & allowed
        if not new.any() or new.all():
            break  # a degenerate labelling: keep the previous one
        if np.array_equal(new, labels):
            break
        labels = new
    return labels


def overlay(image, foreground, dim=0.35, outline=(255, 220, 0)):
    """The picture with the background dimmed and the foreground's outline drawn.

    Returns
    -------
    ndarray of shape (H, W, 3), uint8
    """
    colours, shape = _colours(image)
    picture = colours.reshape(shape + (3,))
    out = np.where(foreground[:, :, np.newaxis], picture, picture * dim + 255 * (1 - dim) * 0.2)
    edge = foreground ^ ndimage.binary_erosion(foreground)
    out[edge] = outline
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def intersection_over_union(a, b):
    """Intersection over union of two boolean masks (1 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)
