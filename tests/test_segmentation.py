import numpy as np
import pytest

from gaussmix import segment
from gaussmix.segmentation import (
    SegmentationError,
    box_mask,
    intersection_over_union,
    overlay,
)


def textured_scene(kind, size=96, noise=12.0, seed=0):
    """A textured object on a textured background whose colour palettes partly overlap.

    Returns
    -------
    picture : uint8 (size, size, 3)
    truth : bool (size, size)
    box : (x0, y0, x1, y1) with a margin around the object
    """
    rng = np.random.RandomState(seed)
    rows, cols = np.mgrid[:size, :size]
    # Four colours each, one of them in both palettes (a quarter of each texture).
    if kind == "ellipse":
        truth = ((cols - 50) / 26.0) ** 2 + ((rows - 46) / 18.0) ** 2 < 1
        fg_palette = [(200, 60, 50), (230, 150, 40), (240, 220, 120), (90, 140, 200)]
        bg_palette = [(90, 140, 200), (60, 160, 80), (40, 90, 60), (30, 60, 110)]
    elif kind == "blob":
        angle = np.arctan2(rows - 48, cols - 48)
        radius = 22 + 6 * np.sin(3 * angle)
        truth = np.hypot(rows - 48, cols - 48) < radius
        fg_palette = [(240, 230, 200), (180, 120, 80), (220, 170, 140), (120, 110, 100)]
        bg_palette = [(120, 110, 100), (40, 40, 60), (70, 80, 120), (60, 100, 90)]
    else:  # a rectangle with stripes on a checkerboard
        truth = (rows > 20) & (rows < 76) & (cols > 28) & (cols < 70)
        fg_palette = [(250, 200, 0), (200, 30, 120), (240, 120, 40), (30, 30, 30)]
        bg_palette = [(30, 30, 30), (220, 220, 220), (100, 200, 200), (150, 160, 170)]
    fg_index = (cols // 4 + rows // 6) % len(fg_palette)                  # stripes
    bg_index = ((cols // 9) + 3 * (rows // 9)) % len(bg_palette)          # blocks
    picture = np.where(truth[:, :, None], np.array(fg_palette)[fg_index],
                       np.array(bg_palette)[bg_index]).astype(float)
    picture += rng.normal(0, noise, picture.shape)
    ys, xs = np.nonzero(truth)
    margin = 6
    box = (xs.min() - margin, ys.min() - margin, xs.max() + 1 + margin, ys.max() + 1 + margin)
    return np.clip(picture, 0, 255).astype(np.uint8), truth, box


@pytest.mark.parametrize("kind", ["ellipse", "blob", "stripes"])
def test_segmentation_recovers_textured_objects(kind):
    picture, truth, box = textured_scene(kind)
    mask = segment(picture, box=box)
    assert mask.dtype == bool and mask.shape == truth.shape
    assert intersection_over_union(mask, truth) >= 0.95


def test_spatial_coherence_matters_where_palettes_overlap():
    picture, truth, box = textured_scene("ellipse", noise=25.0)
    coherent = intersection_over_union(segment(picture, box=box), truth)
    per_pixel = intersection_over_union(segment(picture, box=box, coherence="none"), truth)
    assert coherent >= 0.95 and coherent > per_pixel


def test_smoothing_coherence_also_helps():
    picture, truth, box = textured_scene("ellipse")
    smooth = intersection_over_union(segment(picture, box=box, coherence="smooth"), truth)
    per_pixel = intersection_over_union(segment(picture, box=box, coherence="none"), truth)
    assert smooth >= per_pixel + 0.1


def test_a_rough_mask_instead_of_a_box():
    picture, truth, box = textured_scene("stripes")
    rough = box_mask(truth.shape, box)
    mask = segment(picture, mask=rough)
    assert intersection_over_union(mask, truth) >= 0.9


def test_outside_the_box_stays_background():
    picture, truth, box = textured_scene("ellipse")
    mask = segment(picture, box=box)
    assert not mask[~box_mask(truth.shape, box)].any()


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(), "Give either box"),
        (dict(box=(0, 0, 5, 5), mask=np.ones((20, 20), bool)), "Give either box"),
        (dict(box=(5, 5, 50, 10)), "does not fit the 20x20 picture"),
        (dict(box=(0, 0, 20, 20)), "covers the whole picture"),
        (dict(box=(0, 0, 5)), "box must be four integers"),
        (dict(box=(2, 2, 8, 8), iterations=0), "iterations must be a positive integer"),
        (dict(box=(2, 2, 8, 8), coherence="magic"), "coherence must be one of"),
        (dict(mask=np.ones((5, 5), bool)), "mask has shape"),
        (dict(mask=np.ones((20, 20), bool)), "needs both foreground and background"),
        (dict(box=(2, 2, 8, 8), strength=np.inf), "strength must be a finite number"),
        (dict(box=(2, 2, 8, 8), strength=np.nan), "strength must be a finite number"),
    ],
)
def test_bad_arguments(kwargs, pattern):
    picture = np.random.RandomState(0).randint(0, 255, (20, 20, 3)).astype(np.uint8)
    with pytest.raises(SegmentationError, match=pattern):
        segment(picture, **kwargs)


@pytest.mark.parametrize("coherence", ["graphcut", "smooth"])
@pytest.mark.parametrize("strength", [1e30, 1e300])
def test_any_finite_strength_keeps_the_pixels_together_without_overflow(coherence, strength):
    """A neighbour penalty beyond every pixel's evidence (or smoothing beyond the picture)
    acts as the largest one: the box's pixels stay one label, and no integer overflows (the
    suite turns warnings into errors)."""
    import warnings

    picture, _, box = textured_scene("ellipse")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        foreground = segment(picture, box=box, iterations=2, coherence=coherence,
                             strength=strength)
    inside = box_mask(foreground.shape, box)
    assert foreground[inside].all() or not foreground[inside].any()
    assert not foreground[~inside].any()


def test_overlay_and_iou():
    picture, truth, box = textured_scene("ellipse")
    out = overlay(picture, truth)
    assert out.shape == picture.shape and out.dtype == np.uint8
    assert intersection_over_union(truth, truth) == 1.0
    assert intersection_over_union(truth, ~truth) == 0.0
