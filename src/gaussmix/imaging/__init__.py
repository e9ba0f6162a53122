"""Pictures to mixtures and back.

``points``: pixels to points; ``render``: mixtures to pictures; ``paint``: both in one call;
``files``: reading pictures and writing renders. Needs the ``images`` extra
(scikit-image, Pillow, matplotlib, rich).
"""

from .pipeline import RENDERS, Painting, PaintError, paint
from .points import colour_pixel_points, dark_pixel_points, downscale_to_budget, pixel_grid

__all__ = [
    "RENDERS",
    "PaintError",
    "Painting",
    "colour_pixel_points",
    "dark_pixel_points",
    "downscale_to_budget",
    "paint",
    "pixel_grid",
]
