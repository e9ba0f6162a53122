"""Small generated pictures for end-to-end tests."""

import numpy as np


def disc_and_bar(h=48, w=64):
    """Black ink on white paper: a disc and a slanted bar (uint8 grey)."""
    rows, cols = np.mgrid[:h, :w]
    ink = ((cols - 18) ** 2 + (rows - 20) ** 2 < 100) | (
        (np.abs((cols - 44) - 0.5 * (rows - 24)) < 3) & (rows > 6) & (rows < 42))
    return np.where(ink, 0, 255).astype(np.uint8)


def colour_quadrants(h=40, w=48):
    """Four flat colours with a soft diagonal gradient (uint8 RGB)."""
    rows, cols = np.mgrid[:h, :w]
    img = np.zeros((h, w, 3))
    img[(rows < h // 2) & (cols < w // 2)] = [220, 40, 30]
    img[(rows < h // 2) & (cols >= w // 2)] = [30, 160, 60]
    img[(rows >= h // 2) & (cols < w // 2)] = [40, 60, 200]
    img[(rows >= h // 2) & (cols >= w // 2)] = [240, 220, 60]
    img += 20 * (rows + cols)[:, :, None] / (h + w)
    return np.clip(img, 0, 255).astype(np.uint8)
