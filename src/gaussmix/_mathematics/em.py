"""E-step, M-step and the EM loop as pure functions of arrays.

The E-step of a chunk is two matrix products around a softmax. With the feature map

    phi(x) = [1, x, quadratic terms of x]       (F features; the quadratic terms depend on
                                                 the covariance type)

the log-density of every component is linear in ``phi(x)``:
``log w_k + log N(x | mu_k, Sigma_k) = phi(x) @ W[:, k]``, and the sufficient statistics are
``resp.T @ (w * phi(x))``. So a chunk of n rows costs an (n, F) x (F, K) product, one pass of
exponentials over an (n, K) block, and a (K, n) x (n, F) product, with no loop over
components and memory O(n * K).

Everything here runs in float64 on data already shifted to working coordinates (see
``chunks.py``); the parameters are in the same coordinates.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import numpy as np
from scipy.linalg.blas import dsyrk, dtrmm

from .._foundations.blas import small_matrix_threads
from .._foundations.covariance import (
    covariance_shape,
    covariances_from_precision_cholesky,
    few_large,
    log_det_precision_cholesky,
    precision_cholesky,
    unpack_upper,
    upper_triangle,
)
from .._foundations.stats import Stats, merge_worst, sum_stats

LOG_2PI = math.log(2.0 * math.pi)

# A component whose responsibility mass falls below this fraction of one row's mean weight
# is dead: it explains nothing and is re-seeded.
DEAD_COMPONENT_MASS = 1e-3

# How many of the worst-explained rows the E-step keeps as re-seeding candidates.
MAX_RESEED_CANDIDATES = 32


@dataclass(frozen=True)
class Params:
    """Parameters of a Gaussian mixture.

    Attributes
    ----------
    weights : ndarray of shape (K,)
    means : ndarray of shape (K, D)
    precisions_cholesky : ndarray
        See ``_covariance`` for shapes by covariance type.
    covariances : ndarray
        Same shape as ``precisions_cholesky``.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    log_weights : ndarray of shape (K,) or None
        What the E-step adds to each component's log-density in place of ``log(weights)``:
        None for a plain mixture; a variational mixture's expected log weights and
        expected log-determinant corrections (``variational``), which need not normalise.
    """

    weights: np.ndarray
    means: np.ndarray
    precisions_cholesky: np.ndarray
    covariances: np.ndarray
    covariance_type: str
    log_weights: np.ndarray | None = None

    @property
    def n_components(self):
        return self.means.shape[0]

    @property
    def n_features(self):
        return self.means.shape[1]

    def shifted(self, offset):
        """The same mixture with every mean moved by ``offset`` (shape (D,))."""
        return replace(self, means=self.means + offset)


def params_from_precision_cholesky(weights, means, prec_chol, covariance_type):
    """Build :class:`Params` from weights, means and precision Cholesky factors (float64)."""
    prec_chol = np.asarray(prec_chol, dtype=np.float64)
    return Params(
        weights=np.asarray(weights, dtype=np.float64),
        means=np.asarray(means, dtype=np.float64),
        precisions_cholesky=prec_chol,
        covariances=covariances_from_precision_cholesky(prec_chol, covariance_type),
        covariance_type=covariance_type,
    )


def robust_centre(x, w, fallback):
    """Each feature's weighted median over rows ``x`` (their observed entries, positive
    weights): the origin of the working coordinates (rows of the data) and of scoring
    (the components' means by their weights).

    A mean follows a few far rows (one row at 1e20 among 1e5 moves it to 1e15), and every
    ordinary row, shifted by it, would keep only about 0.1 of its units; a median stays
    with the bulk of the rows, so a row's rounding never depends on the others.

    Parameters
    ----------
    x : ndarray of shape (n, D), NaN for missing entries
    w : ndarray of shape (n,)
    fallback : ndarray of shape (D,)
        Used for a feature with no observed, positive-weight entry among the rows.

    Returns
    -------
    centre : ndarray of shape (D,), float64
    """
    x = np.asarray(x, dtype=np.float64)
    centre = np.array(fallback, dtype=np.float64)
    for j in range(x.shape[1]):
        keep = (w > 0) & ~np.isnan(x[:, j])
        if not keep.any():
            continue
        values = x[keep, j]
        order = np.argsort(values, kind="stable")
        cumulative = np.cumsum(w[keep][order])
        centre[j] = values[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])]
    return centre


# --------------------------------------------------------------------------------------------
# Feature map


def n_quadratic_features(n_features, covariance_type):
    return {
        "full": n_features * (n_features + 1) // 2,
        "tied": 0,
        "diag": n_features,
        "spherical": 1,
    }[covariance_type]


# The expanded form holds a chunk's feature map, rows x F values (F = 1 + D + D(D+1)/2 for
# full covariances). Beyond this width (D > 152 for full) the difference form serves every
# component instead (scikit-learn's form: the same arithmetic in matrix products, holding
# rows x D per component in slices), so that memory follows D^2 and not rows x D^2.
MAX_EXPANDED_FEATURES = 12_000


def n_map_features(n_features, covariance_type):
    """Width F of :func:`features`: ``1 + D + n_quadratic_features``."""
    return 1 + n_features + n_quadratic_features(n_features, covariance_type)


def expanded_form_fits(n_features, covariance_type):
    """Whether the expanded form's feature map is narrow enough (``MAX_EXPANDED_FEATURES``)."""
    return n_map_features(n_features, covariance_type) <= MAX_EXPANDED_FEATURES


def expanded_form_pays(n_components, n_features, covariance_type):
    """Whether the expanded form beats the difference form for every component.

    For full covariances a row's feature map holds about D^2/2 values, built once (numpy's
    elementwise work, some tens of times slower per value than a matrix product's) and then
    multiplied by K components; the difference form's products take about D^2 per component
    and row. So the expanded form pays where the map is shared by enough components, D < 2K,
    and fits (``expanded_form_fits``); the other covariance types' maps are D wide at most.
    Measured on 2 cores, N=600, K=2: D=20 4.3 ms an iteration expanded against 0.5 ms.
    """
    if not expanded_form_fits(n_features, covariance_type):
        return False
    return covariance_type != "full" or n_features < 2 * n_components


def features(x, covariance_type):
    """The feature map ``phi(x) = [1, x, quadratic terms]``.

    Parameters
    ----------
    x : ndarray of shape (n, D), float64
    covariance_type : {'full', 'tied', 'diag', 'spherical'}

    Returns
    -------
    phi : ndarray of shape (n, 1 + D + Q)
        Q is D(D+1)/2 (products x_i x_j, i <= j) for 'full', 0 for 'tied', D (squares) for
        'diag' and 1 (squared norm) for 'spherical'.
    """
    n, d = x.shape
    q = n_quadratic_features(d, covariance_type)
    phi = np.empty((n, 1 + d + q), dtype=np.float64)
    phi[:, 0] = 1.0
    phi[:, 1 : 1 + d] = x
    if covariance_type == "full":
        rows, cols = upper_triangle(d)
        np.multiply(x[:, rows], x[:, cols], out=phi[:, 1 + d :])
    elif covariance_type == "diag":
        np.square(x, out=phi[:, 1 + d :])
    elif covariance_type == "spherical":
        np.einsum("ij,ij->i", x, x, out=phi[:, 1 + d])
    return phi


def logit_coefficients(params):
    """Coefficients ``W`` (F, K) with ``phi(x) @ W = log w_k + log N(x | k)``.

    For 'tied' the shared quadratic term ``-|x U|^2 / 2`` is not in ``W``; see
    :func:`weighted_log_prob`.
    """
    cov_type = params.covariance_type
    means = params.means
    k, d = means.shape
    prec_chol = params.precisions_cholesky
    q = n_quadratic_features(d, cov_type)
    coef = np.empty((1 + d + q, k), dtype=np.float64)
    if cov_type in ("full", "tied"):
        precisions = prec_chol @ np.swapaxes(prec_chol, -1, -2)
        # Rows Lambda_k mu_k, shape (K, D); tied shares one matrix.
        lin = means @ precisions if cov_type == "tied" else np.einsum("kij,kj->ki", precisions, means)
        if cov_type == "full":
            rows, cols = upper_triangle(d)
            quad = precisions[:, rows, cols] * np.where(rows == cols, -0.5, -1.0)
            coef[1 + d :] = quad.T
    else:
        precisions = prec_chol**2  # (K, D) or (K,)
        if cov_type == "diag":
            lin = precisions * means
            coef[1 + d :] = -0.5 * precisions.T
        else:
            lin = precisions[:, np.newaxis] * means
            coef[1 + d] = -0.5 * precisions
    coef[0] = log_normaliser(params) - 0.5 * np.einsum("ki,ki->k", lin, means)
    coef[1 : 1 + d] = lin.T
    return coef


def log_normaliser(params):
    """``log w_k + log det U_k - D log(2 pi) / 2``, shape (K,) (``params.log_weights`` in
    place of ``log w_k`` when given)."""
    d = params.n_features
    log_det = log_det_precision_cholesky(params.precisions_cholesky, params.covariance_type, d)
    log_weights = params.log_weights
    if log_weights is None:
        with np.errstate(divide="ignore"):
            log_weights = np.log(params.weights)
    return log_weights + log_det - 0.5 * d * LOG_2PI


def cancellation_ratios(params):
    """How far each component's expanded quadratic form, about the origin, may round beyond
    the difference form's rounding, anywhere.

    The expanded form of row x sums terms whose absolute values add up to at most
    ``T = | |U|^T (|x| + |mu|) |^2`` (entries' absolute values; U the precision's Cholesky
    factor, ``Lambda = U U^T``), so it rounds to within a few machine epsilons of T, where
    the difference form ``|(x - mu) U|^2 = q`` rounds to within a few of q. With
    ``kappa >= |v|^T |U| |U|^T |v| / v^T Lambda v`` for every v and
    ``R = | |U|^T |mu| |^2``, the triangle inequality in these norms gives
    ``sqrt(T) <= sqrt(kappa q) + (1 + sqrt(kappa)) sqrt(R)``, and Cauchy-Schwarz
    ``T <= ratio (1 + q)`` with ``ratio = kappa + (1 + sqrt(kappa))^2 R``: a component whose
    ratio is at most L is expanded to within L times the difference form's rounding, for
    every row however far, and so are its moments about the origin.

    kappa is scale-free: with ``S = diag(Lambda)^(-1/2)`` it is the largest eigenvalue of
    ``S |U| |U|^T S`` over the smallest of ``S Lambda S`` (both with a unit diagonal;
    Gershgorin bounds of them above 32 features); 1 for diagonal precisions, near 1 for
    weakly correlated components, large for nearly collinear ones.

    Returns
    -------
    ratios : ndarray of shape (K,)
    """
    cov_type = params.covariance_type
    k, d = params.means.shape
    abs_means = np.abs(params.means)
    prec_chol = np.asarray(params.precisions_cholesky, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if cov_type in ("full", "tied"):
            factors = prec_chol if cov_type == "full" else prec_chol[np.newaxis]
            kappa = _correlation_spread(factors)
            reach = np.abs(factors[0]).T @ abs_means.T if cov_type == "tied" else np.einsum(
                "kij,ki->jk", np.abs(factors), abs_means)  # |U|^T |mu|, (D, K)
            reach = reach.T
        else:
            kappa = np.ones(1)
            reach = abs_means * np.abs(prec_chol.reshape(k, -1))
        reach = np.einsum("kj,kj->k", reach, reach)
        ratios = kappa + (1.0 + np.sqrt(kappa)) ** 2 * reach
    return np.where(np.isnan(ratios), np.inf, ratios)


# Features up to which kappa (see cancellation_ratios) comes from eigenvalues, beyond from
# Gershgorin's bounds.
KAPPA_EIGEN_FEATURES = 32


def _correlation_spread(factors):
    """``kappa`` of :func:`cancellation_ratios` for upper Cholesky factors (K, D, D)."""
    absolute = np.abs(factors)
    gram = absolute @ np.swapaxes(absolute, 1, 2)  # |U| |U|^T
    precisions = factors @ np.swapaxes(factors, 1, 2)
    scale = 1.0 / np.sqrt(np.diagonal(gram, axis1=1, axis2=2))  # diag(Lambda)^-1/2
    outer = scale[:, :, None] * scale[:, None, :]
    gram, precisions = gram * outer, precisions * outer
    if factors.shape[1] <= KAPPA_EIGEN_FEATURES and np.isfinite(precisions).all():
        largest = np.linalg.eigvalsh(gram)[:, -1]
        smallest = np.linalg.eigvalsh(precisions)[:, 0]
        return np.where(smallest > 0, largest / smallest, np.inf)
    largest = gram.sum(axis=2).max(axis=1)
    spread = np.abs(np.linalg.inv(precisions)).sum(axis=2).max(axis=1)
    return largest * spread


# One budget for every expansion of a quadratic form (the numpy and torch E-steps about the
# origin, the fused kernel about each tile's centre), by the precision of its arithmetic: a
# component is expanded only where the expansion's absolute terms add up to at most this
# many times (one plus) the row's squared distance, so that it rounds to within this factor
# of the difference form's own rounding: about 1e-11 of (one plus) the distance in float64,
# 1e-6 in float32 (logits on a device). Elsewhere the difference form x - mu_k runs (in
# float64).
EXPANSION_LIMIT = {np.dtype(np.float64): 1e5, np.dtype(np.float32): 32.0}
CANCELLATION_LIMIT = EXPANSION_LIMIT[np.dtype(np.float64)]
# float32 logits on a device: beyond this their matrix product runs in float64 instead.
FLOAT32_CANCELLATION_LIMIT = EXPANSION_LIMIT[np.dtype(np.float32)]
# The features hold squared coordinates: rows beyond this sum of squares (|x| beyond about
# 1e150, seen only when scoring rows far beyond the fitted data) take the difference form
# for every component.
FEATURE_SQUARE_CAP = 1e300


@dataclass(frozen=True)
class EStepPlan:
    """What one pass of E-steps shares.

    Attributes
    ----------
    exact : ndarray of shape (E,), int
        Components evaluated in difference form, their moments accumulated about their
        current means. The others use the expanded form (matrix products) and moments about
        the origin of the working coordinates.
    coef : ndarray of shape (F, K) or None
        :func:`logit_coefficients` (None when every component is exact).
    log_norm : ndarray of shape (K,)
        :func:`log_normaliser`.
    ratios : ndarray of shape (K,) or None
        :func:`cancellation_ratios` (None when the path was forced).
    """

    exact: np.ndarray
    coef: np.ndarray | None
    log_norm: np.ndarray
    ratios: np.ndarray | None = None

    def all_exact(self, n_components):
        return len(self.exact) == n_components


def plan_e_step(params, exact=None):
    """Choose each component's path.

    Parameters
    ----------
    params : Params
    exact : bool or None
        True or False forces every component onto one path; None decides per component by
        :func:`cancellation_ratios`.
    """
    k = params.n_components
    ratios = None
    if exact is None and not expanded_form_pays(k, params.n_features, params.covariance_type):
        exact = True
    if exact is None:
        ratios = cancellation_ratios(params)
        exact_idx = np.flatnonzero(ratios > CANCELLATION_LIMIT)
    else:
        exact_idx = np.arange(k) if exact else np.arange(0)
    coef = None if len(exact_idx) == k else logit_coefficients(params)
    return EStepPlan(exact_idx, coef, log_normaliser(params), ratios)


def float32_logits_cancel(params, plan):
    """Whether an expanded-form component of ``plan`` would lose more than float32 allows
    (``FLOAT32_CANCELLATION_LIMIT``), so that float32 logits need a float64 product."""
    ratios = cancellation_ratios(params) if plan.ratios is None else plan.ratios
    expanded = np.ones(params.n_components, dtype=bool)
    expanded[plan.exact] = False
    return bool((ratios[expanded] > FLOAT32_CANCELLATION_LIMIT).any())


def _tied_quadratic(x, params):
    """The shared term ``-|x U|^2 / 2`` of the tied log-densities, shape (n,)."""
    y = x @ params.precisions_cholesky
    return -0.5 * np.einsum("ij,ij->i", y, y)


def _subset(params, components):
    """Means and precision factors of some components (tied keeps its shared factor)."""
    prec_chol = params.precisions_cholesky
    if params.covariance_type != "tied":
        prec_chol = prec_chol[components]
    return params.means[components], prec_chol


def _differences(x, means):
    """``x_n - mu_k`` as an array of shape (K, n, D)."""
    return x[np.newaxis, :, :] - means[:, np.newaxis, :]


def _whiten(diff, prec_chol, covariance_type):
    """``(x_n - mu_k) U_k`` for differences of shape (K, n, D) (which it may overwrite)."""
    if covariance_type == "full" and few_large(len(diff), diff.shape[-1]):
        return _whiten_by_component(diff, prec_chol)
    if covariance_type in ("full", "tied"):
        return diff @ prec_chol
    if covariance_type == "diag":
        return diff * prec_chol[:, np.newaxis, :]
    return diff * prec_chol[:, np.newaxis, np.newaxis]


def _whiten_by_component(diff, prec_chol):
    """:func:`_whiten` for a few components in many dimensions: BLAS's triangular product
    (half the work of a general one; ``U_k`` is upper triangular), one component at a time,
    written over ``diff`` (fresh arrays of this size cost page faults worth the product)."""
    for k in range(len(diff)):
        # (diff U)^T = U^T diff^T, with diff^T a Fortran-ordered view: LAPACK writes in place.
        product = dtrmm(1.0, prec_chol[k], diff[k].T, side=0, lower=0, trans_a=1,
                        overwrite_b=1)
        if not np.shares_memory(product, diff[k]):  # the wrapper made a copy
            diff[k] = product.T
    return diff


def _exact_logits(diff, prec_chol, covariance_type, log_norm):
    """Logits (n, E) from differences (E, n, D)."""
    y = _whiten(diff, prec_chol, covariance_type)
    return log_norm - 0.5 * np.einsum("knd,knd->nk", y, y)


# Elements of the (E, rows, D) difference arrays of the exact path per slice of rows.
EXACT_SLICE_ELEMENTS = 2**21


def _row_slices(n_rows, n_components, n_features):
    step = max(1, EXACT_SLICE_ELEMENTS // max(1, n_components * n_features))
    return [(s, min(s + step, n_rows)) for s in range(0, n_rows, step)]


def weighted_log_prob(x, params, plan=None, phi=None, unshifted=None):
    """``log w_k + log N(x_n | mu_k, Sigma_k)`` for a chunk.

    Parameters
    ----------
    x : ndarray of shape (n, D), float64, working coordinates
    params : Params
    plan : EStepPlan, optional
        From :func:`plan_e_step` (shared by all chunks of a pass).
    phi : ndarray of shape (n, F), optional
        Precomputed :func:`features`.
    unshifted : (ndarray of shape (n, D), Params), optional
        The same rows and parameters before a shift of the origin (scoring rows under a
        fitted model): the difference form then runs on them, where ``x - mu`` is exact for
        a row at its component, instead of on two shifted values rounded apart.

    Returns
    -------
    logits : ndarray of shape (n, K)
    """
    if plan is None:
        plan = plan_e_step(params)
    cov_type = params.covariance_type
    exact_x, exact_params = (x, params) if unshifted is None else unshifted
    far = _far_rows(x) if plan.coef is not None else None
    if plan.coef is None:
        logits = np.empty((x.shape[0], params.n_components))
    else:
        if phi is None:
            phi = features(x, cov_type) if far is None else features(
                np.where(far[:, np.newaxis], 0.0, x), cov_type)
        logits = phi @ plan.coef
        if cov_type == "tied":
            logits += _tied_quadratic(x if far is None else np.where(far[:, None], 0.0, x),
                                      params)[:, np.newaxis]
    if len(plan.exact):
        _put_exact_logits(logits, exact_x, exact_params, plan.exact, plan.log_norm)
    if far is not None:
        rows = np.flatnonzero(far)
        far_logits = np.empty((len(rows), params.n_components))
        _put_exact_logits(far_logits, exact_x[rows], exact_params,
                          np.arange(params.n_components), plan.log_norm)
        logits[rows] = far_logits
    return logits


def _far_rows(x):
    """A mask of the rows whose squared coordinates could overflow the features (None when
    there are none, the usual case)."""
    reach = np.abs(x).max(axis=1) if x.shape[1] else np.zeros(len(x))
    far = reach > np.sqrt(FEATURE_SQUARE_CAP / max(1, x.shape[1]))
    return far if far.any() else None


def _put_exact_logits(logits, x, params, components, log_norm):
    """Write the difference-form logits of ``components`` into their columns of ``logits``
    (-inf where a distance overflows)."""
    means, prec_chol = _subset(params, components)
    cov_type = params.covariance_type
    for start, stop in _row_slices(x.shape[0], len(components), params.n_features):
        diff = _differences(x[start:stop], means)
        with np.errstate(over="ignore", invalid="ignore"):
            part = _exact_logits(diff, prec_chol, cov_type, log_norm[components])
        part[np.isnan(part)] = -np.inf
        logits[start:stop, components] = part


def softmax_inplace(logits):
    """Turn logits (n, K) into responsibilities in place; return ``log p(x)`` of shape (n,).

    Rows whose logits are all ``-inf`` (a row no component can explain) get uniform
    responsibilities and a log-density of ``-inf``.
    """
    row_max = logits.max(axis=1)
    finite = np.isfinite(row_max)
    if not finite.all():
        logits[~finite] = 0.0
        row_max = np.where(finite, row_max, 0.0)
    logits -= row_max[:, np.newaxis]
    np.exp(logits, out=logits)
    row_sum = logits.sum(axis=1)
    logits /= row_sum[:, np.newaxis]
    log_prob = row_max + np.log(row_sum)
    if not finite.all():
        log_prob[~finite] = -np.inf
    return log_prob


def log_prob_and_resp(x, params, plan=None):
    """Log-density (n,) and responsibilities (n, K) of a chunk."""
    resp = weighted_log_prob(x, params, plan)
    log_prob = softmax_inplace(resp)
    return log_prob, resp


# --------------------------------------------------------------------------------------------
# E-step


def stats_from_resp(x, weights, resp, covariance_type, phi=None):
    """Moments about the origin of a chunk from its responsibilities (soft or one-hot).

    Parameters
    ----------
    x : ndarray of shape (n, D), float64
    weights : ndarray of shape (n,)
    resp : ndarray of shape (n, K)
    covariance_type : str
    phi : ndarray of shape (n, F), optional

    Returns
    -------
    resp_sum, x_sum, xx_sum : the arrays of :class:`Stats` (see there for shapes)
    """
    if phi is None and not expanded_form_fits(x.shape[1], covariance_type):
        origin = np.zeros((resp.shape[1], x.shape[1]))
        return _exact_moments(x, resp * weights[:, np.newaxis], origin, covariance_type)
    if phi is None:
        phi = features(x, covariance_type)
    weighted_phi = phi * weights[:, np.newaxis]
    moments = resp.T @ weighted_phi  # (K, F)
    return unpack_moments(moments, x, weights, covariance_type)


def stats_from_labels(x, weights, labels, centers, covariance_type):
    """Moments of a hard assignment about each label's centre.

    Parameters
    ----------
    x : ndarray of shape (n, D)
    weights : ndarray of shape (n,)
    labels : ndarray of shape (n,), int
        Component of each row; -1 leaves a row out.
    centers : ndarray of shape (K, D)
        Reference point of each component (its k-means centre, its seed row).

    Returns
    -------
    resp_sum, x_sum, xx_sum : the arrays of :class:`Stats` about ``centers``
    """
    n_components = centers.shape[0]
    keep = labels >= 0
    lab = labels[keep]
    y = x[keep] - centers[lab]
    if n_map_features(x.shape[1], covariance_type) > n_components:
        return _label_moments(y, weights[keep], lab, n_components, covariance_type)
    phi = features(y, covariance_type)
    weighted_phi = phi * weights[keep, np.newaxis]
    moments = np.empty((n_components, phi.shape[1]), dtype=np.float64)
    for j in range(phi.shape[1]):  # loop over the few features, not over components
        moments[:, j] = np.bincount(lab, weights=weighted_phi[:, j], minlength=n_components)
    return unpack_moments(moments, y, weights[keep], covariance_type)


def _label_moments(y, weights, labels, n_components, covariance_type):
    """:func:`stats_from_labels`'s arrays one label at a time (fewer labels than features:
    no (n, F) feature map), from the rows' differences ``y`` (n, D) to their centres."""
    d = y.shape[1]
    resp_sum = np.bincount(labels, weights=weights, minlength=n_components)
    x_sum = np.zeros((n_components, d))
    xx_sum = np.zeros(covariance_shape(n_components, d, covariance_type))
    order = np.argsort(labels, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(labels, minlength=n_components))])
    for k in np.flatnonzero(np.diff(bounds)):
        rows = order[bounds[k] : bounds[k + 1]]
        yk, wk = y[rows], weights[rows]
        x_sum[k] = wk @ yk
        if covariance_type == "full":
            xx_sum[k] = (yk * wk[:, np.newaxis]).T @ yk
        elif covariance_type == "diag":
            xx_sum[k] = wk @ (yk * yk)
        elif covariance_type == "spherical":
            xx_sum[k] = wk @ np.einsum("ij,ij->i", yk, yk)
    if covariance_type == "tied":
        xx_sum = (y * weights[:, np.newaxis]).T @ y
    return resp_sum, x_sum, xx_sum


def unpack_moments(moments, x, weights, covariance_type):
    """Split the (K, F) moments ``resp.T @ (w * phi)`` into the :class:`Stats` arrays."""
    resp_sum, x_sum, xx_sum = split_moments(moments, x.shape[1], covariance_type)
    if covariance_type == "tied":  # the shared second moment does not depend on resp
        xx_sum = (x * weights[:, np.newaxis]).T @ x
    return resp_sum, x_sum, xx_sum


def split_moments(moments, n_features, covariance_type):
    """resp_sum (K,), x_sum (K, D) and the second moments in the shape of ``Stats.xx_sum``
    from the (K, F) moments of the feature map (None for 'tied', which has no quadratic
    features)."""
    d = n_features
    resp_sum = moments[:, 0].copy()
    x_sum = moments[:, 1 : 1 + d].copy()
    if covariance_type == "full":
        xx_sum = unpack_upper(moments[:, 1 + d :], d)
    elif covariance_type == "diag":
        xx_sum = moments[:, 1 + d :].copy()
    elif covariance_type == "spherical":
        xx_sum = moments[:, 1 + d].copy()
    else:
        xx_sum = None
    return resp_sum, x_sum, xx_sum


def centred_moments(diff, weighted_resp, covariance_type):
    """Moments about the component means from differences (K, n, D) and ``w * r`` (n, K)."""
    rt = weighted_resp.T  # (K, n)
    resp_sum = rt.sum(axis=1)
    x_sum = np.einsum("kn,knd->kd", rt, diff)
    if covariance_type in ("full", "tied"):
        scatter = np.swapaxes(diff * rt[:, :, np.newaxis], 1, 2) @ diff  # (K, D, D)
        xx_sum = scatter if covariance_type == "full" else scatter.sum(axis=0)
    elif covariance_type == "diag":
        xx_sum = np.einsum("kn,knd->kd", rt, diff * diff)
    else:
        xx_sum = np.einsum("kn,knd->k", rt, diff * diff)
    return resp_sum, x_sum, xx_sum


def worst_rows(x, log_prob, n_candidates, positive_rows=None):
    """The ``n_candidates`` rows with the lowest log-density: where dead components are
    re-seeded.

    Parameters
    ----------
    x : ndarray of shape (n, D)
    log_prob : ndarray of shape (n,)
    n_candidates : int
    positive_rows : ndarray of int, optional
        The rows that may be chosen (those with a positive weight); None: every row.

    Returns
    -------
    worst_log_prob : ndarray of shape (M,), ascending
    worst_points : ndarray of shape (M, D)
    """
    values = log_prob if positive_rows is None else log_prob[positive_rows]
    if len(values) > n_candidates:
        picked = np.argpartition(values, n_candidates - 1)[:n_candidates]
    else:
        picked = np.arange(len(values))
    rows = picked if positive_rows is None else positive_rows[picked]
    return merge_worst((log_prob[rows],), (x[rows],), n_candidates)


def positive_rows(weights):
    """Indices of the rows with a positive weight, or None when every row has one."""
    positive = weights > 0
    return None if positive.all() else np.flatnonzero(positive)


def e_step(x, weights, params, plan=None, n_candidates=None):
    """Sufficient statistics of one chunk under ``params``.

    Parameters
    ----------
    x : ndarray of shape (n, D), float64, working coordinates
    weights : ndarray of shape (n,), non-negative
    params : Params
    plan : EStepPlan, optional
        From :func:`plan_e_step`, shared by all chunks of a pass.
    n_candidates : int, optional
        How many worst-explained rows to keep for re-seeding.

    Returns
    -------
    Stats
        Moments about the origin for expanded-form components, about the current means for
        the components of ``plan.exact``.
    """
    if plan is None:
        plan = plan_e_step(params)
    if n_candidates is None:
        n_candidates = min(params.n_components, MAX_RESEED_CANDIDATES)
    if plan.coef is None:  # the difference form only: products of (rows, D) by (D, D)
        with small_matrix_threads(params.n_features):
            return _e_step(x, weights, params, plan, n_candidates)
    return _e_step(x, weights, params, plan, n_candidates)


def _e_step(x, weights, params, plan, n_candidates):
    cov_type = params.covariance_type
    phi = None if plan.coef is None else features(x, cov_type)
    resp = weighted_log_prob(x, params, plan, phi)
    log_prob = softmax_inplace(resp)
    center = np.zeros_like(params.means)

    exact = plan.exact
    if phi is not None:
        resp_sum, x_sum, xx_sum = stats_from_resp(x, weights, resp, cov_type, phi)
    elif len(exact) == params.n_components:  # every component exact: its moments are all
        center = params.means.copy()
        resp_sum, x_sum, xx_sum = _exact_moments(x, resp * weights[:, np.newaxis],
                                                 params.means, cov_type)
        exact = exact[:0]
    else:
        k, d = params.means.shape
        resp_sum, x_sum = np.zeros(k), np.zeros((k, d))
        xx_sum = np.zeros(covariance_shape(k, d, cov_type))
    if len(exact):
        center[exact] = params.means[exact]
        weighted_resp = resp[:, exact] * weights[:, np.newaxis]
        part = _exact_moments(x, weighted_resp, params.means[exact], cov_type)
        if cov_type == "tied":
            # The expanded-form components keep their share of sum_n w_n x x^T about the
            # origin; the exact ones add their centred scatter.
            rest = weights * np.clip(1.0 - resp[:, exact].sum(axis=1), 0.0, None)
            xx_sum = (x * rest[:, np.newaxis]).T @ x if phi is not None else 0.0
        xx_sum = put_exact_moments(resp_sum, x_sum, xx_sum, exact, part, cov_type)

    positive = weights > 0
    worst_log_prob, worst_points = worst_rows(x, log_prob, n_candidates,
                                              positive_rows(weights))
    return Stats(
        covariance_type=cov_type,
        center=center,
        resp_sum=resp_sum,
        x_sum=x_sum,
        xx_sum=xx_sum,
        log_likelihood=float(np.dot(weights[positive], log_prob[positive])),
        weight_sum=float(weights.sum()),
        n_rows=int(positive.sum()),
        worst_log_prob=worst_log_prob,
        worst_points=worst_points,
    )


def put_exact_moments(resp_sum, x_sum, xx_sum, exact, part, covariance_type):
    """Put the exact components' moments about their means (``part``: resp_sum, x_sum,
    xx_sum) into a chunk's statistics; resp_sum and x_sum in place. For 'tied', ``xx_sum``
    holds the expanded-form components' share and the exact scatter is added.

    Returns
    -------
    xx_sum : ndarray
    """
    resp_sum[exact], x_sum[exact] = part[0], part[1]
    if covariance_type == "tied":
        return xx_sum + part[2]
    xx_sum[exact] = part[2]
    return xx_sum


def _exact_moments(x, weighted_resp, means, covariance_type):
    """Moments about ``means`` (E, D) of rows ``x`` weighted by ``w * r`` (n, E)."""
    if covariance_type == "full" and few_large(len(means), x.shape[1]):
        return _scatter_by_component(x, weighted_resp, means)
    total = None
    for start, stop in _row_slices(x.shape[0], len(means), x.shape[1]):
        diff = _differences(x[start:stop], means)
        part = centred_moments(diff, weighted_resp[start:stop], covariance_type)
        total = part if total is None else tuple(a + b for a, b in zip(total, part))
    return total


@functools.lru_cache(maxsize=4)
def _strict_upper(n_features):
    """Mask of the (D, D) entries above the diagonal (read only)."""
    mask = np.triu(np.ones((n_features, n_features), dtype=bool), 1)
    mask.flags.writeable = False
    return mask


def _scatter_by_component(x, weighted_resp, means):
    """:func:`_exact_moments` for full covariances one component at a time (a few components
    in many dimensions): BLAS's symmetric rank-k update adds each slice's scatter into one
    (D, D) array, with half the products of a general one and no (E, D, D) temporaries."""
    n_components, d = means.shape
    resp_sum = weighted_resp.sum(axis=0)
    x_sum = np.zeros((n_components, d))
    xx_sum = np.zeros((n_components, d, d))
    upper = _strict_upper(d)
    step = max(1, EXACT_SLICE_ELEMENTS // max(1, d))
    buffer = np.empty((min(step, x.shape[0]), d))  # reused: no page faults per component
    for k in range(n_components):
        lower = None
        for start in range(0, x.shape[0], step):
            r = weighted_resp[start : start + step, k]
            diff = np.subtract(x[start : start + step], means[k], out=buffer[: len(r)])
            x_sum[k] += r @ diff
            diff *= np.sqrt(r)[:, np.newaxis]
            # lower (+)= A A^T with A = diff^T (D, rows), a Fortran-ordered view (no copy);
            # only the lower triangle is written.
            if lower is None:
                lower = dsyrk(1.0, diff.T, trans=0, lower=1)
            else:
                lower = dsyrk(1.0, diff.T, beta=1.0, c=lower, trans=0, lower=1,
                              overwrite_c=1)
        if lower is not None:
            np.copyto(xx_sum[k], lower)
            np.copyto(xx_sum[k], lower.T, where=upper)
    return resp_sum, x_sum, xx_sum


# --------------------------------------------------------------------------------------------
# M-step


@dataclass(frozen=True)
class MStepReport:
    """What the M-step had to repair."""

    n_reseeded: int = 0
    n_regularized: int = 0
    max_jitter: float = 0.0


def estimate_covariances(stats, nk, offsets, reg_covar):
    """Covariances ``E[y y^T] - m m^T + reg_covar * I`` with ``y = x - center``.

    ``offsets`` (K, D) are the new means minus the statistics' centres (``m`` above), so with
    centres at the previous means both terms are small and nothing cancels.
    """
    cov_type = stats.covariance_type
    d = stats.n_features
    if cov_type == "full":
        # In place, with one (K, D, D) temporary at most: wide data's covariances are large.
        cov = stats.xx_sum / nk[:, np.newaxis, np.newaxis]
        if few_large(len(cov), d):  # (D, D) temporaries, one at a time
            for cov_k, offset in zip(cov, offsets):
                cov_k -= np.outer(offset, offset)
                cov_k += cov_k.T  # numpy copies the overlapping operand first
        else:
            cov -= offsets[:, :, np.newaxis] * offsets[:, np.newaxis, :]
            cov += np.swapaxes(cov, 1, 2)
        cov *= 0.5
        cov[:, np.arange(d), np.arange(d)] += reg_covar
    elif cov_type == "tied":
        cov = stats.xx_sum - (nk[:, np.newaxis] * offsets).T @ offsets
        cov /= nk.sum()
        cov = 0.5 * (cov + cov.T)
        cov[np.arange(d), np.arange(d)] += reg_covar
    elif cov_type == "diag":
        cov = stats.xx_sum / nk[:, np.newaxis] - offsets**2 + reg_covar
    else:
        cov = (stats.xx_sum / nk - np.einsum("ki,ki->k", offsets, offsets)) / d + reg_covar
    return cov


def average_covariance(covariances, weights, covariance_type):
    """Weight-averaged covariance of components, for seeding new ones."""
    if covariance_type == "tied":
        return covariances
    total = weights.sum()
    if total <= 0:
        return covariances.mean(axis=0)
    return np.tensordot(weights / total, covariances, axes=1)


def empirical_moments(stats, reg_covar):
    """Each component's mass, mean and covariance (plus ``reg_covar``) from the statistics:
    what every M-step starts from (EM's here, the variational one in ``variational``).

    Returns
    -------
    nk : ndarray of shape (K,)
        Responsibility mass plus scikit-learn's 10 eps, in units of a row's mean weight (so
        that scaling every weight by the same factor leaves the fit unchanged).
    means : ndarray of shape (K, D)
    covariances : ndarray
        Shaped by covariance type.
    row_mass : float
        A row's mean weight.
    """
    row_mass = stats.weight_sum / max(stats.n_rows, 1)
    nk = stats.resp_sum + 10.0 * np.finfo(np.float64).eps * row_mass
    offsets = stats.x_sum / nk[:, np.newaxis]
    return nk, stats.center + offsets, estimate_covariances(stats, nk, offsets, reg_covar), \
        row_mass


def m_step(stats, reg_covar, jitter_floor, reseed=True):
    """Parameters maximising the expected log-likelihood given the statistics.

    Dead components (responsibility mass below ``DEAD_COMPONENT_MASS`` of a row's mean weight)
    are re-seeded at the worst-explained rows, with the mass of one row and the average
    covariance of the live components; covariances that are not positive definite get extra
    diagonal (see ``covariance.precision_cholesky``).

    Parameters
    ----------
    stats : Stats
    reg_covar : float
        Non-negative regularisation added to every covariance's diagonal.
    jitter_floor : float
        Positive; least extra diagonal for a covariance that still fails.
    reseed : bool
        Whether dead components are re-seeded.

    Returns
    -------
    params : Params
    report : MStepReport
    """
    cov_type = stats.covariance_type
    nk, means, covariances, row_mass = empirical_moments(stats, reg_covar)
    weights = nk / nk.sum()

    n_reseeded = 0
    dead = np.flatnonzero(stats.resp_sum < DEAD_COMPONENT_MASS * row_mass) if reseed else []
    share = row_mass / stats.weight_sum  # the weight of one row
    max_seeds = min(len(stats.worst_points), int(0.5 / share))  # seeds take at most half
    if len(dead) and len(dead) < len(nk) and max_seeds:
        seeds = dead[:max_seeds]
        n_reseeded = len(seeds)
        live = np.setdiff1d(np.arange(len(nk)), dead)
        means[seeds] = stats.worst_points[:n_reseeded]
        if cov_type != "tied":
            covariances[seeds] = average_covariance(
                covariances[live], weights[live], cov_type
            )
        # Each seed gets the mass of one row; the others shrink to make room.
        others = np.setdiff1d(np.arange(len(nk)), seeds)
        weights[others] *= (1.0 - n_reseeded * share) / weights[others].sum()
        weights[seeds] = share

    prec_chol, covariances, n_fixed, max_jitter = precision_cholesky(
        covariances, cov_type, jitter_floor
    )
    params = Params(weights, means, prec_chol, covariances, cov_type)
    return params, MStepReport(n_reseeded, n_fixed, max_jitter)


# --------------------------------------------------------------------------------------------
# The EM loop


def expectation(source, params):
    """Statistics of all chunks of ``source`` under ``params`` (map and reduce)."""
    plan = plan_e_step(params)
    return sum_stats(e_step(x, w, params, plan) for x, w in source)


@dataclass(frozen=True)
class Step:
    """What an update makes of one E-step's statistics.

    Attributes
    ----------
    params : Params
        The next E-step's parameters.
    report : MStepReport
    lower_bound : float
        The bound whose change decides convergence.
    posterior : object or None
        What the update keeps beside ``params`` (a variational posterior), or None.
    """

    params: Params
    report: MStepReport
    lower_bound: float
    posterior: object = None


@dataclass(frozen=True)
class MaximumLikelihood:
    """EM's update: the M-step (with its repairs); the bound is the weighted mean
    log-likelihood of the E-step's parameters, as in scikit-learn."""

    reg_covar: float
    jitter_floor: float

    def __call__(self, stats, params):
        new_params, report = m_step(stats, self.reg_covar, self.jitter_floor)
        return Step(new_params, report, stats.log_likelihood / stats.weight_sum)
