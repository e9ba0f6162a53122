"""Benchmark data sets: pictures that ship with scikit-image, turned into points."""

from __future__ import annotations

import numpy as np


def horse_dark_pixels():
    """(x, y) of the dark pixels of scikit-image's horse silhouette: 43,412 points, 2-D."""
    from skimage import data

    rows, cols = np.nonzero(~data.horse())
    return np.column_stack([cols, rows]).astype(np.float64)


def astronaut_pixels(size=256):
    """(x, y, r, g, b) of every pixel of the astronaut picture resized to size x size."""
    from skimage import data, transform

    image = transform.resize(data.astronaut(), (size, size), anti_aliasing=True) * 255.0
    rows, cols = np.mgrid[:size, :size]
    return np.column_stack([cols.ravel(), rows.ravel(), image.reshape(-1, 3)]).astype(np.float64)


def spread_start(X, n_components, seed=0):
    """Initial parameters shared by both libraries: random rows as means, equal weights and a
    covariance of 1% of the data's mean variance (full covariance type)."""
    rng = np.random.RandomState(seed)
    means = X[rng.choice(len(X), n_components, replace=False)]
    precision = np.eye(X.shape[1]) / (0.01 * X.var(axis=0).mean())
    return dict(
        weights_init=np.full(n_components, 1.0 / n_components),
        means_init=means,
        precisions_init=np.tile(precision, (n_components, 1, 1)),
    )


def camera_dark_pixels():
    """(x, y) of the dark pixels of scikit-image's camera picture: 84,160 points, 2-D."""
    from skimage import data
    from skimage.filters import threshold_otsu

    grey = data.camera()
    rows, cols = np.nonzero(grey < threshold_otsu(grey))
    return np.column_stack([cols, rows]).astype(np.float64)
