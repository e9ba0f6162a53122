"""Atomic writes: a temporary file beside the target, renamed over it once complete, so that
a crash never leaves half a file. Shared by model files (``io``) and renders (``imaging``).

A process killed mid-write (SIGKILL, power loss) cannot remove its temporary file. Their names
say whose they are (``.tmp-gaussmix-<pid>-<random>-<target name>``), and every write first
removes those of its folder whose process is gone and that are older than ``STALE_SECONDS``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time

TEMPORARY_PREFIX = ".tmp-gaussmix-"
# A temporary file (or folder) this old whose process has exited is a leftover; the age guards
# against a reused process id.
STALE_SECONDS = 600.0
_TEMPORARY = re.compile(re.escape(TEMPORARY_PREFIX) + r"(\d+)-")


def temporary_beside(path, folder=False):
    """A new temporary file (or folder) beside ``path``, named as this module's own."""
    target = os.path.abspath(path)
    where = os.path.dirname(target)
    remove_stale_temporaries(where)
    prefix = f"{TEMPORARY_PREFIX}{os.getpid()}-"
    suffix = "-" + os.path.basename(target)
    if folder:
        return tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=where)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=where)
    os.close(fd)
    return tmp


def remove_stale_temporaries(folder, now=None):
    """Remove the temporary files and folders in ``folder`` left by gaussmix processes that
    no longer run, once older than ``STALE_SECONDS``; returns how many were removed."""
    now = time.time() if now is None else now
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if match is None or _process_runs(int(match.group(1))):
            continue
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime < STALE_SECONDS:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed += 1
        except OSError:  # removed meanwhile, or not ours to remove
            continue
    return removed


def _process_runs(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # another user's process, or not a pid we can ask about: keep the file
    return True


def atomic_write(path, write):
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it to ``path``.

    Nothing is left at ``path`` (or beside it) if ``write`` fails.
    """
    path = check_writable_path(path)
    tmp = temporary_beside(path)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes private files; keep the usual mode
        with open(tmp, "wb") as f:
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
        An empty path, or one that names a folder or an existing file that is not a regular
        one (a device, a pipe).
    FileNotFoundError
        A path whose folder does not exist.
    """
    path = os.fsdecode(os.fspath(path))
    if not path:
        raise ValueError("The path is empty; pass a file name such as 'model.npz'.")
    if os.path.isdir(path):
        raise ValueError(f"{path!r} is a folder; pass a file name such as "
                         f"{os.path.join(path, 'model.npz')!r}.")
    if os.path.exists(path) and not os.path.isfile(path):
        # Renaming over a device node or a pipe would replace it with a regular file.
        raise ValueError(f"{path!r} is not a regular file (a device, pipe or socket); pass "
                         "the name of a file to write.")
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
    path = check_writable_path(path)
    tmp = temporary_beside(path)
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
