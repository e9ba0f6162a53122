"""The four covariance types: shapes, Cholesky factors of precisions, log-determinants.

Conventions follow scikit-learn: a precision matrix is stored through its Cholesky factor
``U`` with ``precision = U @ U.T`` (``U`` upper triangular, the transposed inverse of the
covariance's lower Cholesky factor), so ``(x - mu) @ U`` whitens ``x`` and the
log-determinant of the precision is twice the sum of ``log(diag(U))``.

Shapes by covariance type, for K components and D features:

=========== ============== ==============
type        covariances    precisions_cholesky
=========== ============== ==============
'full'      (K, D, D)      (K, D, D)
'tied'      (D, D)         (D, D)
'diag'      (K, D)         (K, D)
'spherical' (K,)           (K,)
=========== ============== ==============
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import solve_triangular
from scipy.linalg.lapack import dtrtri

from .blas import small_matrix_threads

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")

# A covariance that still fails its Cholesky factorisation after this many tenfold increases
# of the added diagonal is replaced by a multiple of the identity.
_MAX_JITTER_ROUNDS = 12


def covariance_shape(n_components, n_features, covariance_type):
    """Shape of the covariance (and precision-Cholesky) array of a covariance type."""
    return {
        "full": (n_components, n_features, n_features),
        "tied": (n_features, n_features),
        "diag": (n_components, n_features),
        "spherical": (n_components,),
    }[covariance_type]


def n_parameters(n_components, n_features, covariance_type):
    """Number of free parameters of a mixture (weights, means and covariances)."""
    cov_params = {
        "full": n_components * n_features * (n_features + 1) / 2.0,
        "tied": n_features * (n_features + 1) / 2.0,
        "diag": n_components * n_features,
        "spherical": n_components,
    }[covariance_type]
    return int(cov_params + n_components * n_features + n_components - 1)


def solve_lower(lower, rhs):
    """Solve ``L X = B`` for stacked lower-triangular ``L`` (..., D, D) and ``B`` (..., D, M).

    Forward substitution vectorised over the stack, D steps of numpy operations, where the
    stack holds more matrices than each has rows (many small matrices); else one LAPACK call
    per matrix (a few large ones, where D steps would each be a pass over the stack).
    """
    shape = np.broadcast_shapes(lower.shape[:-2], rhs.shape[:-2]) + rhs.shape[-2:]
    if not _few_large(shape, lower.shape[-1]):
        return _substitution(lower, rhs, shape)
    lowers = np.broadcast_to(lower, shape[:-2] + lower.shape[-2:])
    rhss = np.broadcast_to(rhs, shape)
    out = np.empty(shape)
    with small_matrix_threads(lower.shape[-1]):
        for index in np.ndindex(shape[:-2]):
            try:
                out[index] = solve_triangular(lowers[index], rhss[index], lower=True,
                                              check_finite=False)
            except np.linalg.LinAlgError:  # a zero on the diagonal: infinities, as below
                out[index] = _substitution(lowers[index], rhss[index], rhss[index].shape)
    return out


def few_large(n_matrices, n_rows):
    """Whether a stack of ``n_matrices`` matrices of ``n_rows`` rows is better served one
    matrix at a time by BLAS and LAPACK (no more matrices than rows) than by numpy operations
    vectorised over the stack (many small matrices)."""
    return n_matrices <= n_rows


def _few_large(shape, n_rows):
    return few_large(int(np.prod(shape[:-2])), n_rows)


def _substitution(lower, rhs, shape):
    out = np.empty(shape)
    for i in range(lower.shape[-1]):
        acc = rhs[..., i, :] - np.einsum("...j,...jm->...m", lower[..., i, :i], out[..., :i, :])
        out[..., i, :] = acc / lower[..., i, i, np.newaxis]
    return out


def solve_upper(upper, rhs):
    """Solve ``U X = B`` for stacked upper-triangular ``U`` (back substitution)."""
    return solve_lower(upper[..., ::-1, ::-1], rhs[..., ::-1, :])[..., ::-1, :]


def inverse_lower(lower):
    """Inverses of stacked lower-triangular matrices (lower-triangular)."""
    if not _few_large(lower.shape, lower.shape[-1]):
        return _substitution(lower, np.broadcast_to(np.eye(lower.shape[-1]), lower.shape),
                             lower.shape)
    out = np.empty(lower.shape)
    with small_matrix_threads(lower.shape[-1]):
        for index in np.ndindex(lower.shape[:-2]):
            out[index], info = dtrtri(lower[index], lower=1)
            if info > 0:  # a zero on the diagonal: infinities, as the substitution gives
                out[index] = _substitution(lower[index], np.eye(lower.shape[-1]),
                                           lower.shape[-2:])
    return out


def _invert_lower_in_place(lower):
    """:func:`inverse_lower` of a fresh C-ordered stack, written over it when the matrices are
    few and large (no second (K, D, D) array); returns the inverses."""
    if not _few_large(lower.shape, lower.shape[-1]) or not lower.flags.c_contiguous:
        return inverse_lower(lower)
    with small_matrix_threads(lower.shape[-1]):
        for matrix in lower:
            # matrix.T is the Fortran-ordered upper factor L^T; LAPACK inverts it in place,
            # which leaves L^-1 in ``matrix``. A zero on the diagonal is found before anything
            # is written.
            inverse, info = dtrtri(matrix.T, lower=0, overwrite_c=1)
            if info > 0:
                matrix[...] = _substitution(matrix, np.eye(len(matrix)), matrix.shape)
            elif not np.shares_memory(inverse, matrix):  # LAPACK's wrapper made a copy
                matrix[...] = inverse.T
    return lower


def inverse_upper(upper):
    """Inverses of stacked upper-triangular matrices (upper-triangular)."""
    return solve_upper(upper, np.broadcast_to(np.eye(upper.shape[-1]), upper.shape))


def _cholesky_with_jitter(covariances, jitter_floor):
    """Lower Cholesky factors of stacked symmetric matrices, regularising those that fail.

    Parameters
    ----------
    covariances : ndarray of shape (K, D, D)
        Symmetric matrices, float64.
    jitter_floor : float
        Smallest value ever added to a failing matrix's diagonal.

    Returns
    -------
    cholesky : ndarray of shape (K, D, D)
    n_fixed : int
        How many matrices needed extra regularisation.
    max_jitter : float
        Largest value that was added to a diagonal.
    """
    n_features = covariances.shape[-1]
    non_finite = ~np.isfinite(covariances).all(axis=(-2, -1))
    if non_finite.any():  # cannot be repaired: start again from the floor
        covariances = covariances.copy()
        covariances[non_finite] = jitter_floor * np.eye(n_features)
    try:
        return np.linalg.cholesky(covariances), int(non_finite.sum()), (
            jitter_floor if non_finite.any() else 0.0
        )
    except np.linalg.LinAlgError:
        pass
    # Rare path: find the failing matrices one by one and raise their diagonal until the
    # factorisation succeeds.
    cholesky = np.empty_like(covariances)
    n_fixed, max_jitter = int(non_finite.sum()), jitter_floor if non_finite.any() else 0.0
    for k, cov in enumerate(covariances):
        try:
            cholesky[k] = np.linalg.cholesky(cov)
            continue
        except np.linalg.LinAlgError:
            pass
        n_fixed += 1
        scale = float(np.abs(np.diag(cov)).mean())
        jitter = max(jitter_floor, 1e-12 * scale)
        for _ in range(_MAX_JITTER_ROUNDS):
            try:
                cholesky[k] = np.linalg.cholesky(cov + jitter * np.eye(n_features))
                break
            except np.linalg.LinAlgError:
                jitter *= 10.0
        else:
            jitter = max(jitter, scale, jitter_floor)
            cholesky[k] = np.sqrt(jitter) * np.eye(n_features)
        max_jitter = max(max_jitter, jitter)
    return cholesky, n_fixed, max_jitter


def precision_cholesky(covariances, covariance_type, jitter_floor):
    """Cholesky factors of the precisions of covariances, never failing.

    A covariance that is not numerically positive definite gets the smallest extra
    diagonal (at least ``jitter_floor``, growing tenfold) that makes it so.

    Parameters
    ----------
    covariances : ndarray
        Shape by covariance type (see the module docstring), float64.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    jitter_floor : float
        Positive; the least extra diagonal a failing covariance receives.

    Returns
    -------
    precisions_cholesky : ndarray
        Same shape as ``covariances``.
    covariances : ndarray
        The covariances actually factorised (changed only where regularised).
    n_fixed : int
        How many components needed extra regularisation.
    max_jitter : float
        Largest extra diagonal added.
    """
    if covariance_type in ("full", "tied"):
        stacked = covariances if covariance_type == "full" else covariances[np.newaxis]
        with small_matrix_threads(stacked.shape[-1]):
            chol, n_fixed, max_jitter = _cholesky_with_jitter(stacked, jitter_floor)
        if n_fixed:
            stacked = chol @ np.swapaxes(chol, -1, -2)
        prec_chol = np.swapaxes(_invert_lower_in_place(chol), -1, -2)
        if covariance_type == "tied":
            return prec_chol[0], stacked[0], n_fixed, max_jitter
        return prec_chol, stacked, n_fixed, max_jitter
    bad = ~(covariances > 0.0) | ~np.isfinite(covariances)
    n_fixed = int(bad.any(axis=-1).sum()) if covariance_type == "diag" else int(bad.sum())
    max_jitter = 0.0
    if n_fixed:
        covariances = np.where(bad, jitter_floor, covariances)
        max_jitter = jitter_floor
    return 1.0 / np.sqrt(covariances), covariances, n_fixed, max_jitter


def covariances_from_precision_cholesky(prec_chol, covariance_type):
    """Covariances from Cholesky factors of precisions (inverse of ``precision_cholesky``)."""
    if covariance_type in ("full", "tied"):
        inv = inverse_upper(prec_chol)
        # precision = U U^T, so covariance = U^-T U^-1.
        return np.swapaxes(inv, -1, -2) @ inv
    return 1.0 / prec_chol**2


def precisions_from_precision_cholesky(prec_chol, covariance_type):
    """Precision matrices (or vectors) from their Cholesky factors."""
    if covariance_type in ("full", "tied"):
        return prec_chol @ np.swapaxes(prec_chol, -1, -2)
    return prec_chol**2


def _flip(matrices):
    return matrices[..., ::-1, ::-1]


def precision_cholesky_from_precisions(precisions, covariance_type):
    """Upper Cholesky factors ``U`` with ``precision = U U^T`` (scikit-learn's convention)."""
    if covariance_type in ("full", "tied"):
        # Reversing rows and columns turns the lower factor of the flipped matrix into the
        # upper factor of the original one.
        return _flip(np.linalg.cholesky(_flip(precisions)))
    return np.sqrt(precisions)


def covariance_cholesky_from_precision_cholesky(prec_chol, covariance_type):
    """Factors ``A`` with ``covariance = A A^T`` (lower triangular for full and tied).

    Used to draw samples: ``mean + A @ z`` with ``z`` standard normal.
    """
    if covariance_type in ("full", "tied"):
        return np.swapaxes(inverse_upper(prec_chol), -1, -2)
    return 1.0 / prec_chol


def log_det_precision_cholesky(prec_chol, covariance_type, n_features):
    """Log-determinant of each precision Cholesky factor: half the precision's log-det.

    Returns
    -------
    log_det : ndarray of shape (K,) or float (tied)
    """
    if covariance_type in ("full", "tied"):
        return np.log(np.diagonal(prec_chol, axis1=-2, axis2=-1)).sum(axis=-1)
    if covariance_type == "diag":
        return np.log(prec_chol).sum(axis=1)
    return n_features * np.log(prec_chol)


def is_positive_definite(matrices):
    """Whether every stacked symmetric matrix is positive definite (shape (..., D, D))."""
    if not np.allclose(matrices, np.swapaxes(matrices, -1, -2)):
        return False
    try:
        np.linalg.cholesky(matrices)
    except np.linalg.LinAlgError:
        return False
    return True


def upper_triangle(n_features):
    """Row and column indices of the upper triangle (diagonal included), row by row: the
    order in which the E-step packs the products ``x_i x_j, i <= j``."""
    return np.triu_indices(n_features)


def unpack_upper(packed, n_features):
    """Symmetric matrices from packed upper triangles.

    Parameters
    ----------
    packed : ndarray of shape (..., D(D+1)/2)
        In the order of :func:`upper_triangle`.

    Returns
    -------
    matrices : ndarray of shape (..., D, D)
    """
    rows, cols = upper_triangle(n_features)
    out = np.empty(packed.shape[:-1] + (n_features, n_features), dtype=packed.dtype)
    out[..., rows, cols] = packed
    out[..., cols, rows] = packed
    return out


def as_full(matrices, covariance_type, n_components, n_features):
    """Covariances, precisions or their factors of any type as stacked (K, D, D) matrices
    (tied is broadcast, not copied; diagonal types become diagonal matrices)."""
    if covariance_type == "full":
        return matrices
    if covariance_type == "tied":
        return np.broadcast_to(matrices, (n_components, n_features, n_features))
    eye = np.eye(n_features)
    if covariance_type == "diag":
        return matrices[:, :, np.newaxis] * eye
    return matrices[:, np.newaxis, np.newaxis] * eye


def second_moments_from_packed(packed, covariance_type, n_features):
    """Second moments in the shape of ``Stats.xx_sum`` from a kernel's per-component sums.

    Parameters
    ----------
    packed : ndarray of shape (K, Q)
        Q = D(D+1)/2 packed upper triangles for 'full' and 'tied', D squares for 'diag' and
        'spherical'.

    Returns
    -------
    ndarray of shape (K, D, D) 'full', (D, D) 'tied', (K, D) 'diag', (K,) 'spherical'
    """
    if covariance_type == "full":
        return unpack_upper(packed, n_features)
    if covariance_type == "tied":
        return unpack_upper(packed.sum(axis=0), n_features)
    if covariance_type == "diag":
        return packed
    return packed.sum(axis=1)


def second_moments_from_full(xx_full, covariance_type):
    """Second moments in the shape of ``Stats.xx_sum`` from full per-component ones
    (K, D, D)."""
    if covariance_type == "full":
        return xx_full
    if covariance_type == "tied":
        return xx_full.sum(axis=0)
    diagonal = np.diagonal(xx_full, axis1=1, axis2=2)
    return diagonal.copy() if covariance_type == "diag" else diagonal.sum(axis=1)


def positive_definite_in(covariances, covariance_type, dtype):
    """``covariances`` cast to ``dtype``, still positive definite: a matrix that rounding to
    float32 made singular (a nearly collinear component of huge scale) gets the least extra
    diagonal, in steps of the dtype's resolution, that makes it definite again."""
    cast = np.asarray(covariances).astype(dtype)
    if covariance_type not in ("full", "tied") or np.dtype(dtype) == np.float64:
        return cast
    stacked = cast.reshape(-1, *cast.shape[-2:])
    if is_positive_definite(stacked.astype(np.float64)):  # one batched check: the usual case
        return cast
    eye = np.eye(stacked.shape[-1], dtype=dtype)
    for i, matrix in enumerate(stacked):
        step = np.finfo(dtype).eps * float(np.abs(np.diagonal(matrix)).max())
        while step > 0 and not is_positive_definite(matrix.astype(np.float64)[None]):
            matrix = matrix + (step * eye).astype(dtype)
            step *= 2.0
        stacked[i] = matrix
    return stacked.reshape(cast.shape)
