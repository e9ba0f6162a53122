"""``BackgroundModel``: an adaptive Gaussian mixture per pixel, for background subtraction.

Each pixel keeps up to ``n_components`` Gaussians of its values over time (Stauffer and
Grimson, 1999), updated recursively with every frame, with the number of components per pixel
chosen by a Dirichlet-prior pruning of the weights (Zivkovic, 2004; Zivkovic and van der
Heijden, 2006). The parameters and their defaults are those of OpenCV's
``BackgroundSubtractorMOG2``, in the same 8-bit units, so settings carry over.
"""

from __future__ import annotations

import inspect
import json
import numbers
import os
import zipfile
import zlib

import numpy as np

from .._foundations.files import atomic_write
from .._foundations.validation import check_int, check_real
from .._version import __version__

FORMAT_NAME = "gaussmix-background"
FORMAT_VERSION = 1
METADATA = "gaussmix.json"
# Frames are kept in 8-bit levels, whatever their dtype: the parameters' units.
LEVELS = 255.0
MAX_CHANNELS = 4
# The parameters, in the order of the constructor, with their checks' lower bounds.
REAL_PARAMETERS = {"var_threshold": 0.0, "background_ratio": 0.0, "shadow_threshold": 0.0,
                   "var_threshold_gen": 0.0, "var_init": 0.0, "var_min": 1e-6,
                   "var_max": 1e-6, "complexity_reduction": 0.0}


class BackgroundModel:
    """An adaptive mixture of Gaussians per pixel, telling moving objects from the background.

    Each pixel's recent values are modelled by up to ``n_components`` Gaussians (one variance
    shared by the channels), updated with every frame: a value within ``var_threshold_gen``
    squared standard deviations of a component updates it, otherwise it starts a new one. The
    heaviest components whose weights add up to ``background_ratio`` are the background; a
    value within ``var_threshold`` squared standard deviations of one of them is background.
    Weights are pruned towards zero at every step (``complexity_reduction``), so a pixel uses
    as many components as its history needs: one on a still wall, two or three where leaves
    wave or a screen flickers.

    Parameters
    ----------
    n_components : int, default=5
        Most components per pixel. Memory is ``4 * (2 + channels) * n_components`` bytes per
        pixel: 30 MB for 640x480 colour frames.
    history : int, default=500
        Frames the model remembers: the learning rate is ``1 / history`` once that many
        frames have been seen (``1 / (2 * frames seen)`` before, so that the first frames
        are learned fast).
    var_threshold : float, default=16.0
        Squared Mahalanobis distance within which a value is explained by the background.
    background_ratio : float, default=0.9
        Weight of the components that make up the background (the rest are recent objects).
    detect_shadows : bool, default=True
        Mark shadows: values that are the background darkened by a factor between
        ``shadow_threshold`` and 1, with the background's colour.
    shadow_value : int, default=127
        Mask value of a shadow (0 to 255, not 0 or 255).
    shadow_threshold : float, default=0.5
        How much darker than the background a shadow may be (0 to 1).
    var_threshold_gen : float, default=9.0
        Squared Mahalanobis distance within which a value updates a component instead of
        starting a new one.
    var_init, var_min, var_max : float, default=15.0, 4.0, 75.0
        A new component's variance, and the bounds every variance is kept within (8-bit
        levels squared: a variance of 4 is a standard deviation of 2 levels).
    complexity_reduction : float, default=0.05
        The Dirichlet prior's pull on the weights: how fast components that no value
        supports are pruned.

    Attributes
    ----------
    n_frames_ : int
        Frames seen.
    frame_shape_ : tuple of int
        Shape of the frames, (height, width) or (height, width, channels).
    frame_dtype_ : numpy.dtype
        dtype of the frames.

    Notes
    -----
    Frames are read in 8-bit levels whatever their dtype: uint8 as they are, uint16 divided by
    257, floats and booleans in [0, 1] multiplied by 255. The model decides by squared
    distances against multiples of variances kept within [``var_min``, ``var_max``]: no
    density is formed, so nothing underflows, and a constant or saturated pixel is as
    well-defined as any other.

    Examples
    --------
    >>> import numpy as np
    >>> from gaussmix.video import BackgroundModel
    >>> model = BackgroundModel()
    >>> rng = np.random.default_rng(0)
    >>> for _ in range(50):
    ...     mask = model.apply(rng.normal(100, 2, (48, 64)).clip(0, 255).astype(np.uint8))
    >>> frame = np.full((48, 64), 100, np.uint8)
    >>> frame[10:20, 10:20] = 250                      # an object appears
    >>> mask = model.apply(frame)
    >>> int(mask[15, 15]), int(mask[40, 40])
    (255, 0)
    """

    def __init__(self, n_components=5, history=500, var_threshold=16.0, background_ratio=0.9,
                 detect_shadows=True, shadow_value=127, shadow_threshold=0.5,
                 var_threshold_gen=9.0, var_init=15.0, var_min=4.0, var_max=75.0,
                 complexity_reduction=0.05):
        self.n_components = n_components
        self.history = history
        self.var_threshold = var_threshold
        self.background_ratio = background_ratio
        self.detect_shadows = detect_shadows
        self.shadow_value = shadow_value
        self.shadow_threshold = shadow_threshold
        self.var_threshold_gen = var_threshold_gen
        self.var_init = var_init
        self.var_min = var_min
        self.var_max = var_max
        self.complexity_reduction = complexity_reduction
        self.n_frames_ = 0
        self._state = None

    def get_params(self):
        """The constructor's parameters, as a dict."""
        return {name: getattr(self, name) for name in PARAMETERS}

    def __repr__(self):
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if v != DEFAULTS[k]]
        return f"BackgroundModel({', '.join(changed)})"

    # -- frames ------------------------------------------------------------------------------

    def apply(self, frame, learning_rate=None):
        """Classify the pixels of ``frame``, then learn from it.

        Parameters
        ----------
        frame : array-like of shape (height, width) or (height, width, channels)
            uint8, uint16, float or bool (floats in [0, 1]); 1 to 4 channels. Every frame
            has the shape and dtype of the first.
        learning_rate : float in [0, 1] or None, default=None
            How much this frame moves the model. None (or a negative number, as OpenCV
            takes -1) chooses ``1 / min(2 * frames seen, history)``; 0 classifies without
            learning. The first frame is always learned, as in OpenCV.

        Returns
        -------
        mask : ndarray of shape (height, width), uint8
            0 background, 255 foreground, ``shadow_value`` shadow.
        """
        from .._kernels.background import apply

        values = self._frame_values(frame)
        alpha = self._learning_rate(learning_rate)
        weights, means, variances, n_modes = self._state
        mask = apply(values, weights, means, variances, n_modes, self._settings(alpha))
        self.n_frames_ += 1
        return mask.reshape(self.frame_shape_[:2])

    def background_image(self):
        """The background the model has learned: each pixel's background components'
        weighted mean, in the frames' shape and dtype.

        Returns
        -------
        ndarray of shape ``frame_shape_``
        """
        from .._kernels.background import background_values

        if self._state is None:
            raise ValueError("This BackgroundModel has seen no frame yet; call apply(frame) "
                             "first.")
        weights, means, _, n_modes = self._state
        levels = background_values(weights, means, n_modes, float(self.background_ratio))
        return _to_dtype(levels.reshape(self.frame_shape_), self.frame_dtype_)

    def components_per_pixel(self):
        """How many components each pixel uses now, (height, width) int."""
        if self._state is None:
            raise ValueError("This BackgroundModel has seen no frame yet; call apply(frame) "
                             "first.")
        return self._state[3].reshape(self.frame_shape_[:2]).copy()

    def _frame_values(self, frame):
        """The frame as (pixels, channels) 8-bit levels (uint8 frames as they are, others in
        float32), checked against the first one."""
        frame = np.asarray(frame)
        if frame.ndim not in (2, 3) or (frame.ndim == 3 and not
                                        1 <= frame.shape[2] <= MAX_CHANNELS):
            raise ValueError(f"A frame must be (height, width) or (height, width, channels) "
                             f"with 1 to {MAX_CHANNELS} channels, got shape {frame.shape}; "
                             "pass one picture at a time.")
        if frame.dtype.kind not in "uifb":
            raise ValueError(f"A frame must hold numbers, got dtype {frame.dtype}; pass uint8, "
                             "uint16 or float pixels.")
        if min(frame.shape[:2]) < 1:
            raise ValueError(f"A frame must have at least one pixel, got shape {frame.shape}.")
        if self._state is None:
            self._check_parameters()
            self._start(frame.shape, frame.dtype)
        elif frame.shape != self.frame_shape_ or frame.dtype != self.frame_dtype_:
            raise ValueError(
                f"This model learned frames of shape {self.frame_shape_} and dtype "
                f"{self.frame_dtype_}, got shape {frame.shape} and dtype {frame.dtype}; pass "
                "frames of one size and dtype (resize or convert them), or start a new "
                "BackgroundModel.")
        if frame.dtype == np.uint8:  # levels already: the kernel reads them as they are
            return np.ascontiguousarray(frame).reshape(-1, self._state[1].shape[2])
        levels = _to_levels(frame)
        if frame.dtype.kind == "f" and not np.isfinite(levels).all():
            raise ValueError("The frame contains NaN or infinity; pass finite pixel values.")
        return levels.reshape(-1, self._state[1].shape[2])

    def _start(self, shape, dtype):
        n_pixels = int(np.prod(shape[:2]))
        channels = 1 if len(shape) == 2 else shape[2]
        m = self.n_components
        self.frame_shape_, self.frame_dtype_ = tuple(shape), np.dtype(dtype)
        self._state = (np.zeros((n_pixels, m), np.float32),
                       np.zeros((n_pixels, m, channels), np.float32),
                       np.zeros((n_pixels, m), np.float32),
                       np.zeros(n_pixels, np.int32))

    def _learning_rate(self, learning_rate):
        automatic = 1.0 / min(2 * (self.n_frames_ + 1), self.history)
        if learning_rate is None:
            return automatic
        if (isinstance(learning_rate, bool) or not isinstance(learning_rate, numbers.Real)
                or np.isnan(learning_rate) or learning_rate > 1):
            raise ValueError(f"learning_rate must be a number in [0, 1] or None, got "
                             f"{learning_rate!r}; pass None to let the model choose.")
        if learning_rate < 0 or self.n_frames_ == 0:  # the first frame is always learned
            return automatic
        return float(learning_rate)

    def _settings(self, alpha):
        from .._kernels import background as kernel

        settings = np.zeros(kernel.N_SETTINGS)
        settings[kernel.ALPHA] = alpha
        settings[kernel.VAR_THRESHOLD] = self.var_threshold
        settings[kernel.VAR_THRESHOLD_GEN] = self.var_threshold_gen
        settings[kernel.VAR_INIT] = self.var_init
        settings[kernel.VAR_MIN] = self.var_min
        settings[kernel.VAR_MAX] = self.var_max
        settings[kernel.COMPLEXITY] = self.complexity_reduction
        settings[kernel.BACKGROUND_RATIO] = self.background_ratio
        settings[kernel.SHADOW_VALUE] = self.shadow_value
        settings[kernel.SHADOW_TAU] = self.shadow_threshold
        settings[kernel.DETECT_SHADOWS] = float(bool(self.detect_shadows))
        return settings

    def _check_parameters(self):
        check_int(self.n_components, "n_components", 1)
        if self.n_components > 255:
            raise ValueError(f"n_components must be at most 255, got {self.n_components}; a "
                             "pixel rarely needs more than 5.")
        check_int(self.history, "history", 1)
        for name, minimum in REAL_PARAMETERS.items():
            check_real(getattr(self, name), name, minimum, finite=True)
        for name in ("background_ratio", "shadow_threshold"):
            if getattr(self, name) > 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}.")
        if not self.var_min <= self.var_init <= self.var_max:
            raise ValueError(f"Need var_min <= var_init <= var_max, got {self.var_min}, "
                             f"{self.var_init}, {self.var_max}; order the three variances.")
        check_int(self.shadow_value, "shadow_value", 1)
        if self.shadow_value > 254:
            raise ValueError(f"shadow_value must be between 1 and 254 (0 is background and "
                             f"255 foreground), got {self.shadow_value}.")
        if not isinstance(self.detect_shadows, (bool, np.bool_)):
            raise ValueError(f"detect_shadows must be True or False, got "
                             f"{self.detect_shadows!r}.")

    # -- files -------------------------------------------------------------------------------

    def save(self, path):
        """Write the model to ``path`` (a ``.npz`` archive with JSON metadata, never
        pickled), through a temporary file renamed into place: a crash leaves the previous
        file or none."""
        from ..io import _plain

        if self._state is None:
            raise ValueError("This BackgroundModel has seen no frame yet; there is nothing to "
                             "save.")
        weights, means, variances, n_modes = self._state
        live = np.arange(weights.shape[1]) < n_modes[:, None]
        metadata = {"format": FORMAT_NAME, "version": FORMAT_VERSION,
                    "gaussmix_version": __version__,
                    "params": {k: _plain(v) for k, v in self.get_params().items()},
                    "n_frames": int(self.n_frames_), "frame_shape": list(self.frame_shape_),
                    "frame_dtype": self.frame_dtype_.str}
        arrays = {METADATA: np.frombuffer(json.dumps(metadata).encode(), np.uint8),
                  "weights": np.where(live, weights, 0), "means": means,
                  "variances": np.where(live, variances, self.var_init).astype(np.float32)}
        atomic_write(path, lambda f: np.savez(f, **arrays))

    @classmethod
    def load(cls, path):
        """Read a model written by :meth:`save`; it goes on learning where it stopped.

        Raises
        ------
        FileNotFoundError, ValueError
            A missing, truncated, corrupt or foreign file, with one sentence saying which.
        """
        from ..io import _read_member, _refuse

        path = os.fsdecode(os.fspath(path))
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No background model file at {path!r}; check the path.")
        try:
            with zipfile.ZipFile(path) as archive:
                metadata = _background_metadata(path, _read_member(path, archive, METADATA))
                model = cls(**metadata["params"])
                shape = metadata["frame_shape"]
                n_pixels, m = shape[0] * shape[1], model.n_components
                channels = 1 if len(shape) == 2 else shape[2]
                arrays = {name: _read_member(path, archive, name, size) for name, size in (
                    ("weights", (n_pixels, m)), ("means", (n_pixels, m, channels)),
                    ("variances", (n_pixels, m)))}
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError):
            raise _refuse(path, "the file is truncated or corrupt (not a whole .npz "
                                "archive)") from None
        except TypeError:
            raise _refuse(path, "its parameters are not those of a BackgroundModel") from None
        try:
            model._check_parameters()
        except ValueError as error:
            raise _refuse(path, f"its parameters are invalid ({error})") from None
        model._start(tuple(shape), np.dtype(metadata["frame_dtype"]))
        model.n_frames_ = metadata["n_frames"]
        model._state = _checked_state(path, model, arrays)
        return model


DEFAULTS = {name: p.default for name, p in inspect.signature(BackgroundModel).parameters.items()}
PARAMETERS = tuple(DEFAULTS)


def _background_metadata(path, raw):
    from ..io import _refuse, read_format_metadata

    metadata = read_format_metadata(path, raw, FORMAT_NAME, FORMAT_VERSION,
                                    "it is not a background model file (a mixture model file "
                                    "is read by gaussmix.load)")
    shape, params = metadata.get("frame_shape"), metadata.get("params")
    if not (isinstance(shape, list) and len(shape) in (2, 3)
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in shape)
            and (len(shape) == 2 or shape[2] <= MAX_CHANNELS)
            and shape[0] * shape[1] <= 2**31):
        raise _refuse(path, "its frame shape is invalid")
    if not isinstance(params, dict) or set(params) - set(PARAMETERS):
        raise _refuse(path, "its parameters are not those of a BackgroundModel")
    try:
        dtype = np.dtype(metadata.get("frame_dtype"))
    except TypeError:
        raise _refuse(path, "its frame dtype is invalid") from None
    if dtype.kind not in "uifb" or dtype.hasobject:
        raise _refuse(path, "its frame dtype is invalid")
    n_frames = metadata.get("n_frames")
    if not isinstance(n_frames, int) or isinstance(n_frames, bool) or n_frames < 1:
        raise _refuse(path, "its frame count is invalid")
    if not isinstance(params.get("n_components", 5), int):
        raise _refuse(path, "its parameters are invalid")
    return metadata


def _checked_state(path, model, arrays):
    """The kernel's state from the file's arrays, refused unless a model could hold it."""
    from ..io import _refuse

    weights, means, variances = (np.ascontiguousarray(arrays[k], dtype=np.float32)
                                 for k in ("weights", "means", "variances"))
    if not all(np.isfinite(a).all() for a in (weights, means, variances)):
        raise _refuse(path, "it holds NaN or infinity")
    live = weights > 0
    n_modes = live.sum(axis=1).astype(np.int32)
    if (weights < 0).any() or (live != (np.arange(live.shape[1]) < n_modes[:, None])).any():
        raise _refuse(path, "its weights are not those of a model (negative, or out of order)")
    # A pixel whose heaviest modes were all replaced sums to less than one until its next
    # frame (as in OpenCV), never to more.
    totals = weights.sum(axis=1)
    if (n_modes < 1).any() or totals.max() > 1 + 1e-3:
        raise _refuse(path, "its weights are not those of a model (a pixel without a mode, "
                            "or weights summing to more than one)")
    if ((variances < np.float32(model.var_min) * (1 - 1e-6)) |
            (variances > np.float32(model.var_max) * (1 + 1e-6))).any():
        raise _refuse(path, "its variances are outside [var_min, var_max]")
    return weights, means, variances, n_modes


def _to_levels(frame):
    """Pixel values in 8-bit levels, float32."""
    if frame.dtype == np.uint8:
        return frame.astype(np.float32)
    if frame.dtype.kind == "b":
        return frame.astype(np.float32) * np.float32(LEVELS)
    if frame.dtype.kind in "ui":
        top = np.iinfo(frame.dtype).max
        return (frame.astype(np.float64) * (LEVELS / top)).astype(np.float32)
    return (frame.astype(np.float64) * LEVELS).astype(np.float32)


def _to_dtype(levels, dtype):
    """8-bit levels back to the frames' dtype (rounded and clipped for integers)."""
    if dtype == np.uint8:
        return np.clip(np.rint(levels), 0, 255).astype(np.uint8)
    if dtype.kind == "b":
        return levels >= LEVELS / 2
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return np.clip(np.rint(levels * (info.max / LEVELS)), info.min, info.max).astype(dtype)
    return (levels / LEVELS).astype(dtype)
