"""BLAS's threads, limited where they cost more than they save.

Factorising a few matrices of a few hundred rows (the Cholesky factors and triangular inverses
of wide data's covariances), and the difference form's products with them, are latency-bound:
BLAS's threads spend more on waking and synchronising than they save. Measured on 2 cores,
D=200 and K=2: 10-18 ms a factorisation and inverse on two threads against 1 ms on one, and
whole iterations 3 to 10 times slower.
"""

from __future__ import annotations

import contextlib
import functools
import threading

# Factorisations of matrices up to this many rows run on one BLAS thread.
LATENCY_BOUND_ROWS = 1024


@functools.lru_cache(maxsize=1)
def _controller():
    """threadpoolctl's view of the BLAS libraries numpy and scipy load (imported first, so
    that the view, taken once, holds them; a library loaded later keeps its own threads)."""
    import numpy  # noqa: F401
    import scipy.linalg  # noqa: F401

    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        return None
    return ThreadpoolController()


# The limit is counted, so that nested and concurrent users (threads that fit at once) share
# one: the first to enter sets it, the last to leave restores BLAS's own setting (with a
# limit per user, one thread's exit would lift another's, or restore a limit for good).
# threadpoolctl lets one thread at a time (the first that set a limit, while it lives) set
# OpenBLAS's process-wide count: a limit asked from another thread is not applied.
_lock = threading.Lock()
_users = 0
_limiter = None


@contextlib.contextmanager
def one_blas_thread():
    """Context with BLAS on one thread (microseconds to enter and leave)."""
    global _users, _limiter
    controller = _controller()
    with _lock:
        if _users == 0 and controller is not None:
            _limiter = controller.limit(limits=1, user_api="blas")
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0 and _limiter is not None:
                _limiter.restore_original_limits()
                _limiter = None


def small_matrix_threads(n_rows):
    """Context for products and factorisations of matrices of ``n_rows`` rows (or columns):
    one BLAS thread when they are latency-bound (up to ``LATENCY_BOUND_ROWS``), else BLAS's
    own choice."""
    if n_rows <= LATENCY_BOUND_ROWS:
        return one_blas_thread()
    return contextlib.nullcontext()
