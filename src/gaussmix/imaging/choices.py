"""The choices a painting offers (modes and renders) and the error for a wrong one, apart
from the code that paints, so that the command line's parser names them without importing
an estimator."""

MODES = ("auto", "bw", "color")
RENDERS = ("samples", "density", "density-mapped", "contour", "conditional-mean", "components",
           "ellipses")
COLOUR_ONLY = ("conditional-mean",)
FIGURES = ("contour", "ellipses")


class PaintError(ValueError):
    """A picture or an option that cannot be painted, with one sentence saying why."""
