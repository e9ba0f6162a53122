"""Atomic writes: a temporary file beside the target, renamed over it once complete, so that
a crash never leaves half a file. Shared by model files (``io``) and renders (``imaging``)."""

from __future__ import annotations

import contextlib
import os
import tempfile


def atomic_write(path, write):
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it to ``path``.

    Nothing is left at ``path`` (or beside it) if ``write`` fails.
    """
    path = check_writable_path(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=folder)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes private files; keep the usual mode
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def check_writable_path(path):
    """``path`` as a string, refused with one sentence when it cannot name a file to write.

    Raises
    ------
    ValueError
        An empty path, or one that names a folder.
    FileNotFoundError
        A path whose folder does not exist.
    """
    path = os.fspath(path)
    if not path:
        raise ValueError("The path is empty; pass a file name such as 'model.npz'.")
    if os.path.isdir(path):
        raise ValueError(f"{path!r} is a folder; pass a file name such as "
                         f"{os.path.join(path, 'model.npz')!r}.")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"Cannot write {path!r}: the folder {folder!r} does not exist; "
                                "create it first.")
    return path


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path`` (same suffix); rename it to ``path`` on success.

    For writers that need a file name rather than a file object.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
