"""Pictures to points: functions on arrays (reading files lives in ``gaussmix.imaging.files``).

Coordinates: ``x`` is the column (to the right), ``y`` the row (down), both in pixels of the
picture given, so a model of the points renders upright on the same pixel grid.
"""

from __future__ import annotations

import numpy as np


def as_float_image(image):
    """``image`` as floats in [0, 1]: (H, W) grey or (H, W, 3) colour.

    Accepts uint8/uint16/bool/float arrays, greyscale, RGB or RGBA (alpha is composited
    onto white, as a viewer shows it).

    Raises
    ------
    ValueError
        For arrays that are not pictures.
    """
    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise ValueError(f"Expected a picture of shape (H, W), (H, W, 3) or (H, W, 4), got "
                         f"{arr.shape}; pass a greyscale or RGB(A) image.")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"The picture is empty (shape {arr.shape}); pass a picture with pixels.")
    if arr.dtype == bool:
        out = arr.astype(np.float64)
    elif arr.dtype.kind in "ui":
        out = arr.astype(np.float64) / np.iinfo(arr.dtype).max
    elif arr.dtype.kind == "f":
        out = np.clip(arr.astype(np.float64), 0.0, 1.0)
    else:
        raise ValueError(f"Unsupported pixel type {arr.dtype}; pass integer or float pixels.")
    if out.ndim == 3 and out.shape[2] == 1:
        out = out[:, :, 0]
    if out.ndim == 3 and out.shape[2] == 4:
        alpha = out[:, :, 3:]
        out = out[:, :, :3] * alpha + (1.0 - alpha)
    return out


def mask_from_picture(image):
    """A picture's light pixels (above half its brightest grey level) as a boolean mask of
    shape (H, W): how a hand-drawn mask (white on black) reads."""
    arr = np.asarray(image)
    grey = arr if arr.ndim == 2 else arr[:, :, :3].mean(axis=2)
    top = grey.max()
    return grey > (top / 2 if top > 0 else 0)


def is_colour(image, tolerance=2.0 / 255.0):
    """Whether a picture has real colour (not grey stored as RGB)."""
    img = as_float_image(image)
    if img.ndim == 2:
        return False
    spread = img.max(axis=2) - img.min(axis=2)
    return bool((spread > tolerance).mean() > 0.01)


def to_grey(image):
    """Luminance in [0, 1], shape (H, W) (ITU-R 601 weights for colour)."""
    img = as_float_image(image)
    if img.ndim == 2:
        return img
    from skimage.color import rgb2gray

    return rgb2gray(img)


def otsu_threshold(grey):
    """Otsu's threshold of a greyscale picture (0.5 for a picture of one value)."""
    from skimage.filters import threshold_otsu

    if np.ptp(grey) == 0:
        return 0.5
    return float(threshold_otsu(grey))


def dark_pixel_points(image, threshold=None, keep="dark"):
    """``(x, y)`` of the pixels darker (or lighter) than a threshold: black-and-white mode.

    Parameters
    ----------
    image : ndarray of shape (H, W) or (H, W, 3|4)
    threshold : float in [0, 1], optional
        Grey level that splits ink from paper; Otsu's threshold by default.
    keep : {'dark', 'light'}
        Which side of the threshold becomes points.

    Returns
    -------
    points : ndarray of shape (N, 2), float64
        Columns x (to the right) and y (down).
    threshold : float
        The threshold used.

    Examples
    --------
    >>> img = np.ones((3, 4)); img[1, 2] = 0.0
    >>> dark_pixel_points(img)[0]
    array([[2., 1.]])
    """
    grey = to_grey(image)
    if threshold is None:
        threshold = otsu_threshold(grey)
    mask = grey < threshold if keep == "dark" else grey > threshold
    rows, cols = np.nonzero(mask)
    return np.column_stack([cols, rows]).astype(np.float64), float(threshold)


def colour_pixel_points(image, colour_scale=1.0):
    """``(x, y, r, g, b)`` of every pixel: colour mode.

    Parameters
    ----------
    image : ndarray of shape (H, W, 3|4) (a greyscale picture gives r = g = b)
    colour_scale : float
        Colour channels are 0-255 times this: above 1 colour dominates position (more
        faithful colours, blurrier shapes), below 1 position dominates.

    Returns
    -------
    points : ndarray of shape (H * W, 5), float64, rows in reading order
    """
    img = as_float_image(image)
    if img.ndim == 2:
        img = np.repeat(img[:, :, np.newaxis], 3, axis=2)
    h, w, _ = img.shape
    rows, cols = np.mgrid[:h, :w]
    return np.column_stack([cols.ravel(), rows.ravel(),
                            img.reshape(-1, 3) * 255.0 * colour_scale]).astype(np.float64)


def downscale_to_budget(image, max_pixels):
    """The picture shrunk (anti-aliased) so that H * W <= max_pixels.

    Returns
    -------
    image : ndarray, float in [0, 1]
    factor : float
        New size over old size (1.0 when nothing changed).
    """
    img = as_float_image(image)
    new_shape = budget_shape(img.shape[:2], max_pixels)
    if new_shape == img.shape[:2]:
        return img, 1.0
    from skimage.transform import resize

    small = resize(img, new_shape + img.shape[2:], anti_aliasing=True)
    return np.clip(small, 0.0, 1.0), new_shape[0] / img.shape[0]


def budget_shape(shape, max_pixels):
    """The (H, W) a picture of ``shape`` is fitted at: shrunk, keeping its aspect, so that
    H * W <= max_pixels (unchanged when it fits)."""
    h, w = shape
    if h * w <= max_pixels:
        return (h, w)
    factor = np.sqrt(max_pixels / (h * w))
    return (max(1, int(h * factor)), max(1, int(w * factor)))


def pixel_grid(shape, factor=1.0):
    """Coordinates of every pixel centre of a picture of ``shape`` in a model's coordinates.

    Parameters
    ----------
    shape : (H, W)
        The size to render at.
    factor : float
        Model pixels per rendered pixel (a model fitted on a picture downscaled by ``factor``
        renders at full size with ``factor``).

    Returns
    -------
    grid : ndarray of shape (H * W, 2), columns (x, y), rows in reading order
    """
    h, w = shape
    rows, cols = np.mgrid[:h, :w]
    xy = np.column_stack([cols.ravel(), rows.ravel()]).astype(np.float64)
    return (xy + 0.5) * factor - 0.5


# A pixel grid's tiles: blocks this many pixels high and wide (96 pixels, the kernel's tile).
TILE_HEIGHT, TILE_WIDTH = 8, 12


def pixel_tiles(shape):
    """The rows of :func:`pixel_grid` grouped into spatial tiles without sorting: blocks of
    ``TILE_HEIGHT`` x ``TILE_WIDTH`` pixels, for the pruned scoring kernel.

    Returns
    -------
    order : ndarray of shape (H * W,), int64
        Row indices, block by block (blocks and the pixels in each in reading order).
    starts : ndarray of shape (n_tiles + 1,), int64
    """
    h, w = shape
    rows, cols = np.divmod(np.arange(h * w, dtype=np.int64), w)
    block = (rows // TILE_HEIGHT) * -(-w // TILE_WIDTH) + cols // TILE_WIDTH
    order = np.argsort(block, kind="stable")
    counts = np.bincount(block)
    return order, np.concatenate([[0], np.cumsum(counts[counts > 0])]).astype(np.int64)
