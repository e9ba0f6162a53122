"""numba kernel of the adaptive per-pixel background mixture (Zivkovic's recursive update, the
method of OpenCV's ``BackgroundSubtractorMOG2``): one frame's update and classification,
parallel over blocks of pixels.

Each pixel holds up to M modes, sorted by weight: a weight, a mean (one value per channel) and
one variance shared by the channels. State is float32 (the frame's values are 8-bit levels or
a few more digits; the state is what memory holds per pixel and per mode), arithmetic float64.
No density is ever formed: every decision compares a squared distance with a multiple of a
variance, and variances stay within [var_min, var_max], so a constant or saturated pixel has
nothing to divide by zero or to underflow.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .threading_layer import parallel_kernel

# Pixels per parallel task: enough to amortise a task's start, few enough to balance.
BLOCK = 2048
# Positions in the settings vector.
ALPHA, VAR_THRESHOLD, VAR_THRESHOLD_GEN, VAR_INIT, VAR_MIN, VAR_MAX = 0, 1, 2, 3, 4, 5
COMPLEXITY, BACKGROUND_RATIO, SHADOW_VALUE, SHADOW_TAU, DETECT_SHADOWS = 6, 7, 8, 9, 10
N_SETTINGS = 11
# No "nnan" or "ninf": the frame's values are checked finite, and the state stays so.
_FAST = {"contract", "reassoc", "nsz", "arcp"}


@njit(cache=True, inline="always")
def _swap_modes(weights, means, variances, p, i, j):
    weights[p, i], weights[p, j] = weights[p, j], weights[p, i]
    variances[p, i], variances[p, j] = variances[p, j], variances[p, i]
    for c in range(means.shape[2]):
        means[p, i, c], means[p, j, c] = means[p, j, c], means[p, i, c]


@njit(cache=True, fastmath=_FAST, inline="always")
def _is_shadow(frame, weights, means, variances, p, n_modes, var_threshold, background_ratio,
               tau):
    """Whether the pixel is a darker copy of a background mode: its value is ``a`` times the
    mode's mean, with ``tau <= a <= 1``, to within the mode's spread scaled by ``a``."""
    channels = frame.shape[1]
    cumulative = 0.0
    for i in range(n_modes):
        numerator = 0.0
        denominator = 0.0
        for c in range(channels):
            m = float(means[p, i, c])
            numerator += float(frame[p, c]) * m
            denominator += m * m
        if denominator <= 0.0:
            return False
        if tau * denominator <= numerator <= denominator:
            a = numerator / denominator
            distance = 0.0
            for c in range(channels):
                d = a * float(means[p, i, c]) - float(frame[p, c])
                distance += d * d
            if distance < var_threshold * float(variances[p, i]) * a * a:
                return True
        cumulative += float(weights[p, i])
        if cumulative > background_ratio:
            return False
    return False


@njit(cache=True, fastmath=_FAST, inline="always")
def _update_pixel(frame, weights, means, variances, n_modes, p, alpha, prune, var_threshold,
                  var_threshold_gen, var_init, var_min, var_max, background_ratio):
    """Update pixel ``p``'s modes with its new value; return whether it is background."""
    kept = 1.0 - alpha
    channels = frame.shape[1]
    capacity = weights.shape[1]
    count = n_modes[p]
    background = False
    matched = False
    before = 0.0
    for i in range(count):
        weights[p, i] = kept * weights[p, i] - prune
    for i in range(count):
        variance = float(variances[p, i])
        distance = 0.0
        for c in range(channels):
            d = float(frame[p, c]) - float(means[p, i, c])
            distance += d * d
        if before < background_ratio and distance < var_threshold * variance:
            background = True
        if distance < var_threshold_gen * variance:
            matched = True
            weight = float(weights[p, i]) + alpha
            weights[p, i] = weight
            step = alpha / weight if weight > 0.0 else 0.0
            for c in range(channels):
                m = float(means[p, i, c])
                means[p, i, c] = m + step * (float(frame[p, c]) - m)
            variance += step * (distance - variance)
            variances[p, i] = min(max(variance, var_min), var_max)
            j = i
            while j > 0 and weights[p, j] >= weights[p, j - 1]:
                _swap_modes(weights, means, variances, p, j, j - 1)
                j -= 1
            break
        before += float(weights[p, i])
    # Modes whose weight the complexity prior drove below alpha * complexity are dropped
    # (keeping their order), as in OpenCV.
    total = 0.0
    alive = 0
    for i in range(count):
        if weights[p, i] >= prune and weights[p, i] > 0.0:
            if alive != i:
                _swap_modes(weights, means, variances, p, alive, i)
            total += float(weights[p, alive])
            alive += 1
    count = alive
    if total > 0.0:
        scale = 1.0 / total
        for i in range(count):
            weights[p, i] = weights[p, i] * scale
    if not matched and alpha > 0.0:
        slot = count if count < capacity else capacity - 1
        count = slot + 1
        if count == 1:
            weights[p, slot] = 1.0
        else:
            for i in range(slot):
                weights[p, i] = kept * weights[p, i]
            weights[p, slot] = alpha
        for c in range(channels):
            means[p, slot, c] = frame[p, c]
        variances[p, slot] = var_init
        j = slot
        while j > 0 and weights[p, j] >= weights[p, j - 1]:
            _swap_modes(weights, means, variances, p, j, j - 1)
            j -= 1
    n_modes[p] = count
    return background


@parallel_kernel(cache=True, fastmath=_FAST)
def _apply(frame, weights, means, variances, n_modes, mask, settings):
    n_pixels = frame.shape[0]
    alpha = settings[ALPHA]
    prune = alpha * settings[COMPLEXITY]
    var_threshold = settings[VAR_THRESHOLD]
    var_threshold_gen = settings[VAR_THRESHOLD_GEN]
    var_init, var_min, var_max = settings[VAR_INIT], settings[VAR_MIN], settings[VAR_MAX]
    background_ratio = settings[BACKGROUND_RATIO]
    tau = settings[SHADOW_TAU]
    shadows = settings[DETECT_SHADOWS] > 0.0
    shadow_value = np.uint8(settings[SHADOW_VALUE])
    for block in prange((n_pixels + BLOCK - 1) // BLOCK):
        for p in range(block * BLOCK, min((block + 1) * BLOCK, n_pixels)):
            if _update_pixel(frame, weights, means, variances, n_modes, p, alpha, prune,
                             var_threshold, var_threshold_gen, var_init, var_min, var_max,
                             background_ratio):
                mask[p] = 0
            elif shadows and _is_shadow(frame, weights, means, variances, p, n_modes[p],
                                        var_threshold, background_ratio, tau):
                mask[p] = shadow_value
            else:
                mask[p] = 255


@parallel_kernel(cache=True)
def _background(weights, means, n_modes, background_ratio, out):
    n_pixels, _, channels = means.shape
    for block in prange((n_pixels + BLOCK - 1) // BLOCK):
        for p in range(block * BLOCK, min((block + 1) * BLOCK, n_pixels)):
            for c in range(channels):
                out[p, c] = 0.0
            total = 0.0
            for i in range(n_modes[p]):
                w = float(weights[p, i])
                for c in range(channels):
                    out[p, c] += w * float(means[p, i, c])
                total += w
                if total > background_ratio:
                    break
            if total > 0.0:
                for c in range(channels):
                    out[p, c] /= total


def apply(frame, weights, means, variances, n_modes, settings):
    """Update the state with ``frame`` and classify its pixels.

    Parameters
    ----------
    frame : ndarray of shape (n_pixels, n_channels), uint8 or float32 (8-bit levels)
    weights : ndarray of shape (n_pixels, n_modes_max), float32, updated in place
    means : ndarray of shape (n_pixels, n_modes_max, n_channels), float32, updated in place
    variances : ndarray of shape (n_pixels, n_modes_max), float32, updated in place
    n_modes : ndarray of shape (n_pixels,), int32, updated in place
    settings : ndarray of shape (N_SETTINGS,), float64

    Returns
    -------
    mask : ndarray of shape (n_pixels,), uint8
        0 background, 255 foreground, ``settings[SHADOW_VALUE]`` shadow.
    """
    mask = np.empty(frame.shape[0], dtype=np.uint8)
    _apply(frame, weights, means, variances, n_modes, mask, settings)
    return mask


def background_values(weights, means, n_modes, background_ratio):
    """Each pixel's background: the weighted mean of its background modes, (n_pixels, C)."""
    out = np.empty((means.shape[0], means.shape[2]), dtype=np.float64)
    _background(weights, means, n_modes, float(background_ratio), out)
    return out
