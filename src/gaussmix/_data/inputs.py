"""The door: one adapter per kind of input, chosen once from the data's type.

Arrays (and anything numpy reads), streams (memory maps, ``.npy`` paths, functions that
yield chunks), Dask arrays, torch tensors and the arrays of other array-API libraries enter
here. An adapter

- ``prepare``s training data for a fit plan (``fit.plan_fit``): validated, measured, in
  working coordinates;
- ``infer``s log-densities, labels or responsibilities of rows, handing them back in the
  input's kind (tensors for tensors, lazy dask arrays for dask arrays);
- ``totals`` a weighted log-likelihood for ``score``, ``bic`` and ``aic``.

Optional libraries are recognised without importing them (``backends.detect``), so
``import gaussmix`` never imports dask or torch. The estimator never branches on the type.
"""

from __future__ import annotations

import os

import numpy as np

from . import dask_arrays
from . import missing as _missing
from .chunks import ArrayChunks, FitData, default_chunk_size
from .streams import CallableChunks, StreamData, load_npy, stream_moments
from .._foundations.validation import (
    InputError,
    as_array_view,
    as_float_array,
    check_enough_rows,
    check_sample_weight,
    feature_names,
    has_missing,
    weight_exponent,
)
from .._foundations.arrays import is_array_api_array, is_dask_array, is_torch_tensor

# Rows per block when scoring a memory map.
STREAM_INFERENCE_ROWS = 262_144


def input_for(X):
    """The adapter for ``X``."""
    if is_torch_tensor(X):
        return TORCH
    if is_dask_array(X):
        return DASK
    if is_array_api_array(X):
        return ARRAY_API
    if isinstance(X, (str, os.PathLike, np.memmap)) or (callable(X) and not hasattr(X, "shape")):
        return STREAM
    return ARRAY


def _weighted_totals(log_prob, sample_weight):
    """``(sum_n w_n log p_n, sum_n w_n)`` of numpy log-densities."""
    if sample_weight is None:
        return float(np.sum(log_prob, dtype=np.float64)), float(log_prob.shape[0])
    weights = check_sample_weight(sample_weight, log_prob.shape[0])
    return float(weights @ log_prob), float(weights.sum())


class ArrayInput:
    """Arrays held in memory: lists, numpy arrays, DataFrames."""

    def prepare(self, X, sample_weight, n_components, backend=None, chunk_size=None):
        """Validated :class:`~gaussmix._data.chunks.FitData`
        (:class:`~gaussmix._data.missing.MissingData` when NaN marks missing values) and the
        column names (or None)."""
        arr = as_float_array(X)
        missing = has_missing(arr)
        weights = check_sample_weight(sample_weight, arr.shape[0])
        check_enough_rows(n_components, int((weights > 0).sum()), sample_weight is not None)
        chunk = chunk_size or default_chunk_size(n_components, arr.shape[1])
        if missing:
            return _missing.prepare(arr, weights, chunk), feature_names(X)
        return FitData.prepare(arr, weights, chunk), feature_names(X)

    def rows_in_memory(self, X, sample_weight):
        """Validated rows and weights ``(arr, weights)`` for a pass in their own order
        (``_fitting.one_pass``), or None where rows have missing entries (NaN): those take a
        fit's preparation."""
        arr = as_float_array(X)
        if has_missing(arr):
            return None
        weights = check_sample_weight(sample_weight, arr.shape[0])
        check_enough_rows(1, int((weights > 0).sum()), sample_weight is not None)
        return arr, weights

    def infer(self, X, inference, what):
        arr = as_float_array(X)
        inference.check(X, arr)
        has_missing(arr)
        return inference.rows(arr, what)

    def totals(self, log_prob, sample_weight):
        return _weighted_totals(log_prob, sample_weight)

    def device(self, X):
        """Where results for this input live: None for numpy."""
        return None


class StreamInput(ArrayInput):
    """Data read chunk by chunk, never whole: memory maps, ``.npy`` paths, chunk functions."""

    def rows_in_memory(self, X, sample_weight):
        """None: streams are read chunk by chunk."""
        return None

    def prepare(self, X, sample_weight, n_components, backend=None, chunk_size=None):
        """:class:`~gaussmix._data.chunks.StreamData` measured in two passes (no column names)."""
        if isinstance(X, (str, os.PathLike)):
            X = load_npy(X)
        if isinstance(X, np.memmap):
            arr = as_array_view(X)
            has_missing(arr)
            weights = (None if sample_weight is None
                       else check_sample_weight(sample_weight, arr.shape[0]))
            chunk = chunk_size or default_chunk_size(n_components, arr.shape[1])
            source = ArrayChunks(arr, weights, np.zeros(arr.shape[1]), chunk)
            dtype = arr.dtype if arr.dtype in (np.float32, np.float64) else np.dtype(np.float64)
        else:
            if sample_weight is not None:
                raise InputError("With a function that yields chunks, yield (rows, weights) "
                                 "pairs instead of passing sample_weight.")
            source = CallableChunks(X)
            dtype = np.dtype(np.float64)
        n_rows, n_positive, total, _, variance, holes, centre = stream_moments(source)
        check_enough_rows(n_components, n_positive)
        if isinstance(source, ArrayChunks):  # weights already scaled by check_sample_weight
            shifted = ArrayChunks(source.X, source.sample_weight, centre, source.chunk_size)
        else:
            exponent = weight_exponent(source.largest_weight)
            shifted = source.with_shift(centre, exponent)
            total = float(np.ldexp(total, exponent))
        data = StreamData(n_rows=n_rows, n_positive=n_positive, n_features=source.n_features,
                          dtype=dtype, total_weight=total, shift=centre, variance=variance,
                          source=shifted, holes=holes)
        return data, None

    def infer(self, X, inference, what):
        """Row by row block, concatenated: the result is one value (or row) per data row."""
        if isinstance(X, (str, os.PathLike)):
            X = load_npy(X)
        if isinstance(X, np.memmap):
            arr = as_array_view(X)
            inference.check(X, arr)
            blocks = (np.asarray(arr[s:s + STREAM_INFERENCE_ROWS])
                      for s in range(0, arr.shape[0], STREAM_INFERENCE_ROWS))
        else:
            blocks = self._checked_chunks(X, inference)
        parts = []
        for block in blocks:
            block = block if block.dtype in (np.float32, np.float64) else block.astype(
                np.float64)
            has_missing(block)
            parts.append(inference.rows(block, what))
        if not parts:
            raise InputError("The data yielded no rows; pass at least one chunk with rows.")
        return np.concatenate(parts)

    @staticmethod
    def _checked_chunks(make_chunks, inference):
        for x, _ in CallableChunks(make_chunks).raw_chunks():
            inference.check(x, x)
            yield x


class DaskInput:
    """Dask arrays: per-block E-steps where the data live, lazy results."""

    def rows_in_memory(self, X, sample_weight):
        """None: a Dask array's blocks are read where they live."""
        return None

    def prepare(self, X, sample_weight, n_components, backend=None, chunk_size=None):
        return dask_arrays.prepare(X, sample_weight, n_components, backend), None

    def infer(self, X, inference, what):
        if X.ndim != 2:
            raise InputError(f"Expected a 2-D array, got a {X.ndim}-D dask array of shape "
                             f"{X.shape}. Reshape your data with X.reshape(-1, 1) if it holds "
                             "a single feature.")
        inference.check(X, X)
        columns = inference.params.n_components if what == "resp" else None
        dtype = np.intp if what == "labels" else inference.dtype
        return dask_arrays.map_rows(lambda block: ARRAY.infer(block, inference, what), X,
                                    columns, dtype)

    def totals(self, log_prob, sample_weight):
        import dask.array as da

        if sample_weight is None:
            return float(log_prob.sum().compute()), float(log_prob.shape[0])
        weights = da.asarray(sample_weight)
        if weights.shape != log_prob.shape:
            raise InputError(f"sample_weight has shape {weights.shape} but X has "
                             f"{log_prob.shape[0]} rows; pass one weight per row.")
        total, weight = da.compute((log_prob * weights).sum(), weights.sum())
        return float(total), float(weight)

    def device(self, X):
        return None


class TorchInput:
    """Torch tensors. On the CPU a tensor is a zero-copy numpy view and takes the array path
    (the numba kernel); results come back as tensors. On an accelerator (or with
    ``backend='torch'``) the E-step and scoring run on the tensor's device."""

    @staticmethod
    def on_host(X, backend):
        return not runs_on_device(X.device.type, backend)

    def prepare(self, X, sample_weight, n_components, backend=None, chunk_size=None):
        from . import torch_tensors as torch_backend  # imports torch

        if self.on_host(X, backend):
            weights = sample_weight
            if is_torch_tensor(weights):
                weights = to_numpy(weights)
            return ARRAY.prepare(host_view(X), weights, n_components, backend, chunk_size)
        if backend not in (None, "auto", "torch"):
            raise InputError(f"backend={backend!r} runs on the CPU, but X is on {X.device}; "
                             "pass backend=None to fit on the device, or X.cpu().")
        return torch_backend.prepare(X, sample_weight, n_components), None

    def rows_in_memory(self, X, sample_weight):
        """A CPU tensor's rows as numpy's (shared memory); None on an accelerator."""
        if not self.on_host(X, None):
            return None
        return ARRAY.rows_in_memory(host_view(X), to_numpy(sample_weight)
                                    if is_torch_tensor(sample_weight) else sample_weight)

    def infer(self, X, inference, what):
        import torch

        from . import torch_tensors as torch_backend  # imports torch

        if self.on_host(X, inference.backend):
            return torch.from_numpy(np.asarray(ARRAY.infer(host_view(X), inference, what)))
        X = torch_backend.as_float_tensor(X)
        inference.check(X, X)
        torch_backend.check_finite_tensor(X)
        outputs = torch_backend.log_prob_labels_resp(inference.params, X, what == "resp",
                                                     inference.chunk_size)
        return outputs[("log_prob", "labels", "resp").index(what)]

    def totals(self, log_prob, sample_weight):
        if is_torch_tensor(sample_weight):
            sample_weight = to_numpy(sample_weight)
        return _weighted_totals(to_numpy(log_prob), sample_weight)

    def device(self, X):
        return str(X.device)


class ArrayApiInput:
    """Arrays of other array-API libraries (array-api-strict, CuPy, JAX, ...), as users of
    scikit-learn's ``array_api_dispatch`` pass them. They are read through DLPack: arrays in
    host memory as numpy arrays (the array path), arrays on an accelerator as torch tensors
    (the torch path, on their device; the ``torch`` extra). Results come back in the input's
    namespace, on its device."""

    def prepare(self, X, sample_weight, n_components, backend=None, chunk_size=None):
        inner = readable(X)
        weights = None if sample_weight is None else readable(sample_weight)
        return input_for(inner).prepare(inner, weights, n_components, backend, chunk_size)

    def rows_in_memory(self, X, sample_weight):
        inner = readable(X)
        weights = None if sample_weight is None else readable(sample_weight)
        return input_for(inner).rows_in_memory(inner, weights)

    def infer(self, X, inference, what):
        inner = readable(X)
        result = input_for(inner).infer(inner, inference, what)
        namespace = X.__array_namespace__()
        if is_torch_tensor(result) and result.device.type != "cpu":
            return namespace.from_dlpack(result)
        return namespace.asarray(np.asarray(result), device=X.device)

    def totals(self, log_prob, sample_weight):
        weights = None if sample_weight is None else readable(sample_weight)
        return _weighted_totals(to_numpy(readable(log_prob)),
                                None if weights is None else to_numpy(weights))

    def device(self, X):
        return None


def readable(X):
    """An array-API array as numpy (host memory) or a torch tensor (an accelerator's),
    sharing its memory where DLPack allows; anything else unchanged."""
    if not is_array_api_array(X):
        return X
    on_host = not hasattr(X, "__dlpack_device__") or X.__dlpack_device__()[0] == DLPACK_CPU
    if on_host:
        try:
            return np.from_dlpack(X)
        except (TypeError, ValueError, BufferError, RuntimeError):  # no DLPack export
            return np.asarray(X)
    try:
        import torch
    except ImportError:
        raise InputError(
            f"X is a {type(X).__module__.split('.')[0]} array on {X.device}; gaussmix computes "
            "on accelerators through torch: pip install 'gaussmix[torch]', or pass the data "
            "in host memory.") from None
    return torch.from_dlpack(X)


def to_numpy(values):
    """numpy values of a numpy array or a torch tensor (copied off an accelerator)."""
    if is_torch_tensor(values):
        return values.detach().cpu().numpy()
    return np.asarray(values)


# DLPack's device type of host memory.
DLPACK_CPU = 1


def runs_on_device(device_type, backend):
    """Whether tensors on ``device_type`` ('cpu', 'cuda', ...) take the torch code path:
    always on an accelerator, on the CPU only when ``backend='torch'`` asks."""
    return device_type != "cpu" or backend == "torch"


def host_view(X):
    """A CPU tensor as a numpy array, sharing its memory when its dtype allows."""
    X = X.detach()
    if X.is_floating_point() and X.dtype.itemsize < 4:  # float16, bfloat16: numpy lacks one
        X = X.float()
    return X.numpy()


ARRAY = ArrayInput()
STREAM = StreamInput()
DASK = DaskInput()
TORCH = TorchInput()
ARRAY_API = ArrayApiInput()
