"""Scoring rows held in memory under fitted parameters, chunk by chunk.

Pure functions of :class:`~gaussmix._mathematics.em.Params` and a validated numpy array; the input
adapters (``inputs``) bring every other kind of input to them, or to the device versions in
``backends.torch_backend``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .._data import backends
from .._data import missing as _missing
from .._data.chunks import ArrayChunks, default_chunk_size
from .._mathematics.algebra import conditional_moments, conditional_terms, marginal
from .._mathematics.em import (
    Params,
    expanded_form_fits,
    plan_e_step,
    robust_centre,
    softmax_inplace,
    weighted_log_prob,
)

# score_samples and predict use the pruned kernel from this many (row, component) pairs on,
# in chunks of this many rows.
FUSED_INFERENCE_PAIRS = 2_000_000
FUSED_CHUNK_ROWS = 262_144

WHATS = ("log_prob", "labels", "resp")


def centred(params, arr, chunk_size):
    """Chunks of ``arr`` and the matching parameters, both centred on the mixture's weighted
    median (per feature, over the components' means by their weights).

    Centring keeps the expanded quadratic forms of the E-step short for data far from the
    origin; a median, unlike the mixture's mean, stays with the bulk of the components when
    one light component lies far away, so ordinary rows keep their digits.
    """
    centre = robust_centre(params.means, params.weights, np.zeros(params.n_features))
    source = ArrayChunks(arr, np.ones(arr.shape[0]), centre, chunk_size)
    return params.shifted(-centre), source


def log_prob_and_labels(params, arr, backend=None, chunk_size=None, tiles=None):
    """Log-density and most likely component of each row, in one pass.

    Large problems go through the pruned numba kernel when that backend is active.

    Parameters
    ----------
    params : Params
        Data coordinates.
    arr : ndarray of shape (N, D), validated
    backend : {None, 'auto', 'numpy', 'numba', 'torch'}
    chunk_size : int or None
    tiles : (order, starts), optional
        The rows' spatial tiles when known (a pixel grid: ``imaging.points.pixel_tiles``).

    Returns
    -------
    log_prob : ndarray of shape (N,), float64
    labels : ndarray of shape (N,), intp
    """
    log_prob, labels, _ = scores(params, arr, None, backend, chunk_size, tiles)
    return log_prob, labels


def scores(params, arr, values=None, backend=None, chunk_size=None, tiles=None):
    """:func:`log_prob_and_labels` and each row's responsibility-weighted sum of
    per-component ``values`` (K, M), ``sum_k r_nk values[k]``, shape (N, M) (None without
    ``values``): what a conditional mean needs, in the same pass."""
    n, k = arr.shape[0], params.n_components
    # Wide data take numpy's difference form, as their fits do (see ``em.expanded_form_fits``).
    fused = n * k >= FUSED_INFERENCE_PAIRS and (
        backend != "torch" and backends.resolve(backend, n * k) == "numba"
        and expanded_form_fits(params.n_features, params.covariance_type))
    # The pruned kernel holds no (rows, K) block, so its chunks can be large.
    rows = FUSED_CHUNK_ROWS if fused else chunk_size or default_chunk_size(k, arr.shape[1])
    log_prob = np.empty(n)
    labels = np.empty(n, dtype=np.intp)
    sums = None if values is None else np.empty((n, values.shape[1]))
    if fused:
        from .._kernels.numba_estep import fused_scores  # imports numba

        # In the data's own coordinates: the kernel expands about each tile's centre and
        # takes the difference form where that would not be exact, so it needs no origin.
        source = ArrayChunks(arr, np.ones(n), np.zeros(arr.shape[1]), rows)
        with backends.kernel_threads():
            for start, stop, x, starts in _tile_chunks(source, tiles):
                lp, lab, sm = fused_scores(x, params, values, starts)
                log_prob[start:stop], labels[start:stop] = lp, lab
                if sums is not None:
                    sums[start:stop] = sm
        return _unpermuted(log_prob, labels, sums, tiles)
    shifted, source = centred(params, arr, rows)
    plan = plan_e_step(shifted)
    for start, stop in source.bounds():
        x, _ = source.chunk(start, stop)
        unshifted = np.asarray(arr[start:stop], dtype=np.float64)
        logits = weighted_log_prob(x, shifted, plan, unshifted=(unshifted, params))
        labels[start:stop] = logits.argmax(axis=1)
        log_prob[start:stop] = softmax_inplace(logits)
        if sums is not None:
            sums[start:stop] = logits @ values  # the responsibilities, after the softmax
    return log_prob, labels, sums


def conditional_mean(params, given, values, chunk_size=None, return_covariance=False,
                     return_weights=False, backend=None, tiles=None):
    """``E[x_rest | x[given] = v]`` for many queries at once (with the covariances and
    component weights of :func:`~gaussmix._mathematics.algebra.conditional_moments` where
    asked).

    The mean alone is ``sum_k r_k(v) (c_k + B_k v)``: the responsibilities of the given
    features' marginal average each component's intercept and regression, which the scoring
    pass does in one go (the pruned kernel for large problems: ``backend`` as the
    estimator's, ``tiles`` the queries' spatial tiles when known, e.g. a pixel grid's).

    Parameters
    ----------
    params : Params
    given : ndarray of shape (A,), int
    values : ndarray of shape (M, A), float64
    chunk_size : int, optional
    return_covariance, return_weights : bool
    backend : {None, 'auto', 'numpy', 'numba', 'torch'}
    tiles : (order, starts), optional

    Returns
    -------
    means : ndarray of shape (M, B)
    covariances : ndarray of shape (M, B, B), if requested
    weights : ndarray of shape (M, K), if requested
    """
    if return_covariance or return_weights:
        return conditional_moments(params, given, values, chunk_size, return_covariance,
                                   return_weights)
    _, centre, intercept, regression, _ = conditional_terms(params, given)
    k, b = intercept.shape
    pieces = intercept if regression is None else np.concatenate(
        [intercept, regression.reshape(k, -1)], axis=1)
    _, _, sums = scores(marginal(params, given), values, pieces, backend, chunk_size, tiles)
    mean = sums[:, :b]
    if regression is not None:
        slope = sums[:, b:].reshape(len(values), b, len(given))
        mean = mean + np.einsum("mba,ma->mb", slope, values - centre)
    return mean


def _tile_chunks(source, tiles):
    """``(start, stop, rows, starts)`` of each chunk the kernel takes: the source's chunks
    (starts None: the kernel orders them), or, with known tiles, whole tiles in tile order
    of about ``source.chunk_size`` rows each (positions in that order, and the chunk's tile
    boundaries)."""
    if tiles is None:
        for start, stop in source.bounds():
            yield start, stop, source.chunk(start, stop)[0], None
        return
    order, starts = tiles
    first = 0
    while first < len(starts) - 1:
        last = int(np.searchsorted(starts, starts[first] + source.chunk_size, side="right")) - 1
        last = max(last, first + 1)
        start, stop = int(starts[first]), int(starts[last])
        yield start, stop, source.take(order[start:stop]), starts[first:last + 1] - start
        first = last


def _unpermuted(log_prob, labels, sums, tiles):
    """Results computed in tile order, back in row order."""
    if tiles is None:
        return log_prob, labels, sums
    order = tiles[0]

    def unpermuted(result):
        out = np.empty_like(result)
        out[order] = result
        return out

    return tuple(None if r is None else unpermuted(r) for r in (log_prob, labels, sums))


def responsibilities(params, arr, chunk_size=None):
    """Posterior probability of each component for each row, shape (N, K), in arr's dtype."""
    k = params.n_components
    shifted, source = centred(params, arr, chunk_size or default_chunk_size(k, arr.shape[1]))
    plan = plan_e_step(shifted)
    out = np.empty((arr.shape[0], k), dtype=arr.dtype)
    for start, stop in source.bounds():
        x, _ = source.chunk(start, stop)
        unshifted = (np.asarray(arr[start:stop], dtype=np.float64), params)
        logits = weighted_log_prob(x, shifted, plan, unshifted=unshifted)
        softmax_inplace(logits)
        out[start:stop] = logits
    return out


def rounded(log_prob, dtype):
    """Log-densities in the rows' ``dtype``: below float32's range (a row 1e20 times beyond a
    float32 model's components) -inf, which is their float32 rounding."""
    with np.errstate(over="ignore"):
        return log_prob.astype(dtype)


@dataclass(frozen=True)
class Inference:
    """A fitted mixture as the input adapters need it.

    Attributes
    ----------
    params : Params
        Float64, data coordinates.
    dtype : numpy dtype
        The fitted parameters' dtype (log-densities and responsibilities come in it).
    backend, chunk_size
        The estimator's.
    check : callable (X, arr) -> None
        Refuses rows that do not suit the model (feature count and names, NaN).
    """

    params: Params
    dtype: np.dtype
    backend: str | None
    chunk_size: int | None
    check: Callable

    def rows(self, arr, what):
        """``what`` ('log_prob', 'labels' or 'resp') of validated rows ``arr``; rows with
        NaN by the marginal density of their observed entries."""
        holes = np.isnan(arr).any(axis=1)
        if holes.any():
            return self._rows_with_holes(arr, holes, what)
        if what == "resp":
            return responsibilities(self.params, arr, self.chunk_size)
        log_prob, labels = log_prob_and_labels(self.params, arr, self.backend, self.chunk_size)
        return labels if what == "labels" else rounded(log_prob, arr.dtype)

    def _rows_with_holes(self, arr, holes, what):
        log_prob, resp = _missing.log_prob_and_resp(np.asarray(arr[holes], dtype=np.float64),
                                                    self.params)
        complete = np.flatnonzero(~holes)
        if what == "resp":
            out = np.empty((arr.shape[0], self.params.n_components), dtype=arr.dtype)
            out[holes] = resp
            if len(complete):
                out[complete] = self.rows(arr[complete], "resp")
            return out
        if what == "labels":
            out = np.empty(arr.shape[0], dtype=np.intp)
            out[holes] = resp.argmax(axis=1)
        else:
            out = np.empty(arr.shape[0], dtype=arr.dtype)
            out[holes] = rounded(log_prob, arr.dtype)
        if len(complete):
            out[complete] = self.rows(arr[complete], what)
        return out
