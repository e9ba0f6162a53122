"""Moving objects in video: an adaptive Gaussian mixture per pixel for background subtraction
(``BackgroundModel``), a tracker over its masks (``track``), synthetic scenes with ground truth
to measure both (``scenes``), and reading and writing video (``files``, the ``video`` extra).
The names below are imported on first use."""

from __future__ import annotations

from .._foundations.lazy import lazy_names

_LAZY = {
    "BackgroundModel": ".background",
    "Detection": ".tracking",
    "Track": ".tracking",
    "Tracker": ".tracking",
    "detect": ".tracking",
    "track": ".tracking",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_names(__name__, _LAZY)
