"""E-step backends. Each provides an ``expectation(source, params) -> Stats`` and nothing
else of the fit: initialisation, the M-step, repairs, convergence and restarts are the shared
ones (``_fitting``, ``_mathematics.em``), and the estimator, the algebra and the imaging code never
know which backend ran.

- ``numpy``: chunked matrix products (``em.expectation``), always available.
- ``numba``: a fused, multi-threaded, pruned kernel (``numba_backend``), used when numba is
  installed. numba is imported only when a fit asks for it.
- ``torch``: chunked matrix products on a tensor's device (``torch_backend``): what tensors
  on a GPU use; CPU tensors take the numba kernel through a zero-copy view unless
  ``backend='torch'`` asks for it. Dask arrays run numpy or numba in each block
  (``dask_backend``).
"""

from __future__ import annotations

import contextlib
import importlib.util

from .._foundations.blas import LATENCY_BOUND_ROWS, one_blas_thread
from .._kernels import compile as stamps
from .._kernels import threading_layer as layer

BACKENDS = ("numpy", "numba", "torch")


def numba_available():
    return importlib.util.find_spec("numba") is not None


def kernels_usable(holes=False):
    """Whether the numba kernels may run now: installed, allowed in this process (see
    ``layer``), and compiled (those of rows with missing entries too, with ``holes``) or
    to be compiled in this process (see ``_kernels.compile``)."""
    if not numba_available() or not layer.kernels_allowed():
        return False
    return stamps.kernels_ready(holes) or not stamps.can_compile_in_background()


def kernels_pending(backend, n_pairs, holes=False):
    """Whether ``backend`` would take the numba kernels once their background compilation
    is done (a fit hands over to them then)."""
    return (backend in (None, "auto") and n_pairs >= NUMBA_MIN_PAIRS and numba_available()
            and layer.kernels_allowed() and not stamps.kernels_ready(holes)
            and stamps.can_compile_in_background())


# From this many (row, component) pairs a numpy E-step takes seconds: a first fit starts the
# kernels' compilation at once and hands over to them (below, it compiles them after the fit).
HANDOVER_PAIRS = 100_000_000


# Below this many (row, component) pairs the numpy path is as fast as launching the kernel.
NUMBA_MIN_PAIRS = 200_000


def resolve(backend, n_pairs=None, holes=False):
    """The backend to use.

    ``None``/'auto' picks numba when it is installed, the kernels the data need are compiled
    (those of rows with missing entries too, with ``holes``; see ``_fitting.warmup``: until
    then their compilation runs in the background and numpy serves) and the problem has at
    least ``NUMBA_MIN_PAIRS`` (row, component) pairs (``n_pairs`` None: any size), else
    numpy.
    """
    if backend in (None, "auto"):
        big = n_pairs is None or n_pairs >= NUMBA_MIN_PAIRS
        return "numba" if big and kernels_usable(holes) else "numpy"
    if backend not in BACKENDS:
        raise ValueError("backend must be None, 'auto', 'numpy', 'numba' or 'torch', got "
                         f"{backend!r}.")
    if backend == "numba" and not numba_available():
        raise ValueError("backend='numba' needs numba; install it (pip install numba) or use "
                         "backend='numpy'.")
    if backend == "numba" and not layer.kernels_allowed():
        layer.refusal_warning()
        return "numpy"
    if backend == "torch" and importlib.util.find_spec("torch") is None:
        raise ValueError("backend='torch' needs PyTorch; install it (pip install torch) or use "
                         "backend=None.")
    return backend


def kernel_threads():
    """Context for work that runs numba's threads: BLAS limited to one thread.

    The numpy work between kernel calls is on small matrices, and idle BLAS threads that spin
    after each call would compete with numba's threads for the cores (measured: kernel calls
    twice as slow on 2 cores).
    """
    return one_blas_thread()


def kernel_threads_for(n_features):
    """:func:`kernel_threads` for data of up to ``blas.LATENCY_BOUND_ROWS`` features, whose
    E-steps take small matrix products; wider data's take BLAS's large products, on BLAS's
    threads (see ``numba_estep.fused_expectation``)."""
    if n_features <= LATENCY_BOUND_ROWS:
        return kernel_threads()
    return contextlib.nullcontext()
