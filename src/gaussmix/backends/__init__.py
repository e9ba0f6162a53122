"""E-step backends. Each provides an ``expectation(source, params) -> Stats``; the estimator,
the algebra and the imaging code never know which one ran.

- ``numpy``: chunked matrix products (``_em.expectation``), always available.
- ``numba``: a fused, multi-threaded, pruned kernel (``numba_backend``), used when numba is
  installed. numba is imported only when a fit asks for it.
"""

from __future__ import annotations

import contextlib
import importlib.util

BACKENDS = ("numpy", "numba")


def numba_available():
    return importlib.util.find_spec("numba") is not None


# Below this many (row, component) pairs the numpy path is as fast as launching the kernel.
NUMBA_MIN_PAIRS = 200_000


def resolve(backend, n_pairs=None):
    """The backend to use.

    ``None``/'auto' picks numba when it is installed and the problem has at least
    ``NUMBA_MIN_PAIRS`` (row, component) pairs (``n_pairs`` None: any size), else numpy.
    """
    if backend in (None, "auto"):
        big = n_pairs is None or n_pairs >= NUMBA_MIN_PAIRS
        return "numba" if big and numba_available() else "numpy"
    if backend not in BACKENDS:
        raise ValueError(f"backend must be None, 'auto', 'numpy' or 'numba', got {backend!r}.")
    if backend == "numba" and not numba_available():
        raise ValueError("backend='numba' needs numba; install it (pip install numba) or use "
                         "backend='numpy'.")
    return backend


def kernel_threads():
    """Context for work that runs numba's threads: BLAS limited to one thread.

    The numpy work between kernel calls is on small matrices, and idle BLAS threads that spin
    after each call would compete with numba's threads for the cores (measured: kernel calls
    twice as slow on 2 cores).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")
