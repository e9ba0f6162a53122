"""Pictures to mixtures and back.

``points``: pixels to points; ``render``: mixtures to pictures; ``paint``: both in one call;
``files``: reading pictures and writing renders; ``choices``: the modes and renders offered.
Needs the ``images`` extra (scikit-image, Pillow, matplotlib, rich). The names below are
imported on first use, so that ``gaussmix --help`` does not import an estimator.
"""

from __future__ import annotations

from .._foundations.lazy import lazy_names

_LAZY = {
    "RENDERS": ".choices",
    "PaintError": ".choices",
    "Painting": ".pipeline",
    "paint": ".pipeline",
    "colour_pixel_points": ".points",
    "dark_pixel_points": ".points",
    "downscale_to_budget": ".points",
    "pixel_grid": ".points",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_names(__name__, _LAZY)
