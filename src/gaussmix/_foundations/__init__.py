"""Layer 1, foundations: input validation and its sentences, the covariance types' Cholesky
algebra, additive sufficient statistics (``Stats``), atomic file writes, BLAS's threads, and
recognising arrays of optional libraries without importing them. Imports nothing of gaussmix
but ``exceptions`` and ``_version``."""
