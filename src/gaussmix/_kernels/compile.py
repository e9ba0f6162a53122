"""A quick first fit: numba's kernels compile in a background process, never in a fit.

Compiling the kernels takes about 90 s on 2 cores, once per install (numba caches the machine
code). Until they are compiled, fits, their k-means initialisation and scoring take the numpy
path, and the compilation runs in a separate process (no lock on this one's interpreter):
started at once by a command, when a fit ends by a library fit (so that it does not slow that
fit: on 2 cores the compiler halves numpy's speed), or at once for a fit large enough that
numpy's E-steps would take longer than the compiler, which then hands over to the kernels as
soon as they are ready (``fit.Handover``).

The compiling process leaves two stamps beside numba's cache, named by gaussmix's and numba's
versions and the kernels' sources: 'core' once what fits on complete rows and scoring need
is compiled (about 35 s), then the full one with the kernels of rows with missing entries, so
a later process knows without compiling. Set ``GAUSSMIX_COMPILE=foreground`` to compile
inside the process instead (on first use, as numba does by default): the test suite does, so
that every run takes the same path.

This module keeps the stamp and the lock; the warm-up that runs the kernels on a small problem
is the fit layer's (``gaussmix._fitting.warmup``, ``python -m gaussmix._fitting.warmup``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import os
import time

from .._version import __version__

KERNEL_MODULES = ("fused.py", "tiles.py", "kmeans.py", "numba_estep.py", "holes.py",
                  "background.py")
HERE = os.path.dirname(os.path.abspath(__file__))
# A compiling process that has not finished after this long is taken as gone.
STALE_LOCK_SECONDS = 600.0

# The stamps seen so far, by group: 'core' (what fits on complete rows and scoring run: the
# fused E-step, its scoring and k-means), written first, and 'all' (the kernels for rows with
# missing entries too).
_ready = {}


def foreground():
    """Whether kernels compile inside the process (``GAUSSMIX_COMPILE=foreground``)."""
    return os.environ.get("GAUSSMIX_COMPILE", "").lower() == "foreground"


@functools.lru_cache(maxsize=1)
def _stamp_name():
    digest = hashlib.sha256()
    for name in KERNEL_MODULES:
        with open(os.path.join(HERE, name), "rb") as f:
            digest.update(f.read())
    numba_version = importlib.metadata.version("numba")
    return f".gaussmix-kernels-{__version__}-numba{numba_version}-{digest.hexdigest()[:16]}"


def cache_folder():
    """Where numba caches this package's kernels (and the stamp lives)."""
    configured = os.environ.get("NUMBA_CACHE_DIR")
    return configured if configured else os.path.join(HERE, "__pycache__")


def _stamp_path(group="all"):
    suffix = "" if group == "all" else f"-{group}"
    return os.path.join(cache_folder(), _stamp_name() + suffix)


def kernels_ready(holes=True):
    """Whether the kernels a fit needs run without compiling in this process: those of
    complete rows and scoring, and with ``holes`` those of rows with missing entries too."""
    if foreground():
        return True
    for group in ("all",) if holes else ("core", "all"):
        if not _ready.get(group):
            _ready[group] = os.path.exists(_stamp_path(group))
        if _ready[group]:
            return True
    return False


def can_compile_in_background():
    """Whether a background compilation can leave its cache and stamp (a writable cache
    folder); where not, kernels compile on first use, as numba does by default."""
    return _writable(cache_folder())


@functools.lru_cache(maxsize=8)
def _writable(folder):
    # Asked by every k-means step until the kernels are ready: the answer is kept per folder.
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


def _lock_path():
    return _stamp_path() + ".compiling"


def _compiling_elsewhere():
    try:
        return time.time() - os.path.getmtime(_lock_path()) < STALE_LOCK_SECONDS
    except OSError:
        return False


def claim_compilation():
    """Take the lock of a background compilation unless the kernels are compiled or one is
    under way. Returns 'done', 'elsewhere', 'claimed' or 'unwritable' (the cache folder
    cannot be written: kernels then compile on first use)."""
    if kernels_ready():
        return "done"
    if _compiling_elsewhere():
        return "elsewhere"
    try:
        os.makedirs(cache_folder(), exist_ok=True)
        with open(_lock_path(), "w") as f:
            f.write(str(os.getpid()))
    except OSError:
        return "unwritable"
    return "claimed"


def release_compilation():
    """Drop the background compilation's lock."""
    with contextlib.suppress(OSError):
        os.unlink(_lock_path())


def stamp_compiled(group="all"):
    """Leave the stamp that says the kernels of ``group`` ('core' or 'all') are compiled
    (atomically)."""
    path = _stamp_path(group)
    with open(path + ".tmp", "w") as f:
        f.write("compiled\n")
    os.replace(path + ".tmp", path)
