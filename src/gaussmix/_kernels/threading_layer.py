"""numba's threading layer, chosen before the first parallel kernel: kernels that are safe
from threads and across ``fork``.

numba runs ``prange`` loops on one of three layers (numba's documentation, "The Threading
Layers"), each with its own hazard:

- ``tbb`` (Intel's TBB, the ``tbb`` wheel): safe from concurrent threads and across fork.
- ``omp`` (OpenMP): safe from threads, but GNU's runtime is not fork-safe: a process forked
  after its parent ran a kernel is terminated by its own first kernel (a
  ``multiprocessing.Pool`` then waits forever for the dead worker).
- ``workqueue`` (numba's own, chosen where neither runtime is found): safe across fork, but
  two threads launching kernels at once abort the process.

gaussmix asks for TBB first, then OpenMP, then workqueue (numba's own order), loading the
``tbb`` wheel's library itself (its loader does not look in the environment's ``lib``
folder), and makes up for the other two: after a fork from a process that ran GNU OpenMP
kernels, the child takes the numpy path (the same numbers, more slowly) and says so once;
under workqueue, kernels launched from Python threads run one at a time. A layer named in
``NUMBA_THREADING_LAYER`` (a layer or one of numba's 'safe', 'threadsafe', 'forksafe') is
honoured, with the same remedies.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib.metadata
import os
import sys
import threading
import warnings

LAYERS = ("tbb", "omp", "workqueue")
# numba's selections by property (its documentation's table); 'default' is its own order.
SELECTIONS = {"default": LAYERS, "safe": ("tbb",), "threadsafe": ("tbb", "omp"),
              "forksafe": ("tbb", "omp", "workqueue")}
# numba's TBB layer needs TBB_INTERFACE_VERSION 12060 (2021 update 6) or later.
TBB_LIBRARY = {"linux": "libtbb.so.12", "darwin": "libtbb.12.dylib", "win32": "tbb12.dll"}

_configured = None  # the layer chosen in this process, once configure() has run
_forked_after_openmp = False
_launch_lock = threading.RLock()


def configure():
    """Choose numba's threading layer for this process (once; before any parallel kernel
    runs) and return its name, or None where none of the requested ones can load (numba
    then raises its own error at the first kernel)."""
    global _configured
    if _configured is not None:
        return _configured or None
    import numba

    requested = str(numba.config.THREADING_LAYER).lower()
    candidates = (requested,) if requested in LAYERS else SELECTIONS.get(requested, LAYERS)
    if requested == "forksafe":
        candidates = tuple(c for c in candidates if c != "omp" or not _gnu_openmp())
    chosen = next((layer for layer in candidates if _loadable(layer)), None)
    if chosen is not None:
        numba.config.THREADING_LAYER = chosen
    _configured = chosen or ""
    return chosen


def chosen_layer():
    """The layer configured in this process (None before :func:`configure`)."""
    return _configured or None


def kernels_allowed():
    """Whether this process may launch parallel kernels: not in a child forked from a
    process that ran GNU OpenMP kernels (its first kernel would terminate it)."""
    return not _forked_after_openmp


def refusal_warning():
    """Say once per process why an explicit ``backend='numba'`` takes the numpy path."""
    _warn_once()


@functools.lru_cache(maxsize=1)
def _warn_once():
    warnings.warn(
        "numba's kernels cannot run in a process forked after its parent ran them on GNU "
        "OpenMP threads, so this process uses the numpy path (the same results, more "
        "slowly); install TBB (pip install tbb) or start processes with "
        "multiprocessing.get_context('spawn') or 'forkserver'.", RuntimeWarning, stacklevel=4)


def parallel_kernel(**options):
    """``numba.njit(parallel=True, **options)`` whose calls from Python hold a process-wide
    lock where the layer cannot take two launches at once (workqueue). The kernel itself
    is the wrapper's ``kernel`` attribute."""
    from numba import njit

    configure()

    def decorate(function):
        kernel = njit(parallel=True, **options)(function)

        @functools.wraps(function)
        def launch(*args, **kwargs):
            with _launch_guard():
                return kernel(*args, **kwargs)

        launch.kernel = kernel
        return launch

    return decorate


def _launch_guard():
    if _configured in ("workqueue", ""):
        return _launch_lock
    return contextlib.nullcontext()


def _loadable(layer):
    try:
        if layer == "tbb":
            return _load_tbb()
        if layer == "omp":
            from numba.np.ufunc import omppool  # noqa: F401
        else:
            from numba.np.ufunc import workqueue  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def _load_tbb():
    """Load TBB's runtime for numba's layer: the system's, else the ``tbb`` wheel's (which
    lies in the environment's ``lib`` folder, where the loader does not look)."""
    name = TBB_LIBRARY.get(sys.platform, TBB_LIBRARY["linux"])
    library = None
    with contextlib.suppress(OSError):
        library = ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
    if library is None:
        path = _wheel_library(name)
        if path is None:
            return False
        if sys.platform == "win32":  # pragma: no cover - not run in this project's CI
            os.add_dll_directory(os.path.dirname(path))
        library = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    version = library.TBB_runtime_interface_version
    version.restype = ctypes.c_int
    if version() < 12060:
        return False
    from numba.np.ufunc import tbbpool  # noqa: F401

    return True


def _wheel_library(name):
    try:
        files = importlib.metadata.distribution("tbb").files or ()
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name == name:
            path = os.path.realpath(file.locate())
            if os.path.isfile(path):
                return path
    return None


@functools.lru_cache(maxsize=1)
def _gnu_openmp():
    try:
        from numba.np.ufunc import omppool
    except ImportError:
        return False
    return getattr(omppool, "openmp_vendor", "GNU") == "GNU"


def _after_fork_in_child():
    global _forked_after_openmp
    if _configured != "omp" or not _gnu_openmp():
        return
    from numba.np.ufunc import parallel

    if getattr(parallel, "_is_initialized", True):
        _forked_after_openmp = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
