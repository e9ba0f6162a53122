"""The package version: one home, read by ``gaussmix.__version__`` and the model files."""

__version__ = "0.1.0"
