"""Reading pictures and writing renders: every write is atomic (temporary file, rename)."""

from __future__ import annotations

import contextlib
import json
import os
import warnings

import numpy as np

from .._foundations.files import atomic_write, temporary_beside
from .choices import FIGURES


class FileError(OSError):
    """A file that cannot be read or written, with one sentence saying what to do."""


# Pictures are read at most this big: larger ones are reduced (by a whole factor, while they
# are decoded where the format allows) and rendered at the size read. A render of 4 megapixels
# shows all a mixture of a thousand components holds, and painting it stays near 1 GB.
MAX_READ_PIXELS = 2048 * 2048


def read_image(path, max_pixels=MAX_READ_PIXELS, note=None, name=None):
    """A picture file as an array: (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA, uint8/16.

    Parameters
    ----------
    path : str, os.PathLike or a binary file object (an upload held in memory)
    max_pixels : int
        A picture with more pixels is reduced by the least whole factor that brings it within
        (JPEG decodes at the reduced size; others decode, then shrink). Pictures over Pillow's
        decompression-bomb limit are refused before decoding.
    note : callable, optional
        Told, in one sentence, when the picture was reduced.
    name : str, optional
        What the sentences call the picture (default: its path).

    Raises
    ------
    FileError
        Missing file, a file that is not a picture, or one too large to decode.
    """
    from PIL import Image, UnidentifiedImageError

    if not hasattr(path, "read"):
        path = os.fsdecode(os.fspath(path))
        if not os.path.exists(path):
            raise FileError(f"No such file: {path!r}; check the path.")
        if os.path.isdir(path):
            raise FileError(f"{path!r} is a folder, not a picture; pass an image file.")
        if not os.path.isfile(path):  # a pipe nobody writes to would block the read forever
            raise FileError(f"{path!r} is not a regular file (a device, pipe or socket); pass "
                            "an image file.")
    label = repr(path) if name is None else name
    try:
        with warnings.catch_warnings():
            # Sizes are checked here; Pillow's warning would only repeat it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                return _decoded(img, max_pixels, label, note)
    except Image.DecompressionBombError:
        raise FileError(f"{label} declares more than {2 * Image.MAX_IMAGE_PIXELS} pixels, "
                        "too many to decode safely; shrink it first.") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise FileError(f"{label} is not a picture that can be read ({exc}); pass a PNG, "
                        "JPEG or another common image file.") from None


def _decoded(img, max_pixels, label, note):
    """The opened picture decoded (reduced to ``max_pixels``) as an array."""
    width, height = img.size
    reduction = _reduction(width * height, max_pixels)
    if reduction > 1:
        img.draft(img.mode, (-(-width // reduction), -(-height // reduction)))
    img.load()
    reduction = _reduction(img.width * img.height, max_pixels)
    if reduction > 1:
        img = img.reduce(reduction)
    if img.mode not in ("L", "RGB", "RGBA", "I;16", "1"):
        img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
    if note is not None and img.size != (width, height):
        note(f"Read the {width}x{height} picture {label} at {img.width}x{img.height} "
             f"(pictures over {max_pixels} pixels are reduced).")
    return np.asarray(img)


def _reduction(n_pixels, max_pixels):
    """The least whole factor ``r`` with ``n_pixels / r**2 <= max_pixels``."""
    reduction = max(1, int(np.ceil(np.sqrt(n_pixels / max_pixels))))
    while n_pixels / reduction**2 > max_pixels:
        reduction += 1
    return reduction


def write_png(path, image):
    """Write a uint8 (H, W) or (H, W, 3) array as a PNG."""
    from PIL import Image

    picture = Image.fromarray(np.ascontiguousarray(image))
    atomic_write(path, lambda f: picture.save(f, format="PNG"))


def write_figure(path, figure):
    """Write a matplotlib Figure as a PNG at its own size."""
    atomic_write(path, lambda f: figure.savefig(f, format="png", dpi=figure.dpi))


def write_json(path, data):
    atomic_write(path, lambda f: f.write((json.dumps(data, indent=2) + "\n").encode("utf-8")))


def prepare_output_folder(path):
    """Create ``path`` if needed and make sure files can be written there.

    Raises
    ------
    FileError
        When the folder cannot be created or written to.
    """
    path = os.fspath(path)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise FileError(f"Cannot create the output folder {path!r} ({exc.strerror or exc}); "
                        "choose another --out.") from None
    if not os.path.isdir(path):
        raise FileError(f"The output path {path!r} is not a folder; choose another --out.")
    probe = os.path.join(path, ".gaussmix-write-test")
    try:
        with open(probe, "wb"):
            pass
        os.unlink(probe)
    except OSError as exc:
        raise FileError(f"Cannot write into the output folder {path!r} "
                        f"({exc.strerror or exc}); choose another --out.") from None
    return path


def write_painting(painting, folder):
    """Write every render, the model and report.json into ``folder``, as one run (see
    :func:`publish_run`).

    Returns
    -------
    written : list of str
        Paths written, in order.
    """
    with staged_run(folder) as staging:
        names = []
        for name, result in painting.renders.items():
            names.append(f"{name}.png")
            target = os.path.join(staging, names[-1])
            if name in FIGURES:
                write_figure(target, result)
            else:
                write_png(target, result)
        names.append("model.npz")
        painting.model.save(os.path.join(staging, names[-1]))
        return publish_run(staging, folder, names, painting.report)


@contextlib.contextmanager
def staged_run(folder):
    """A temporary folder beside ``folder``'s files to write a run into; removed on the way
    out, whatever happens (a killed process's is removed by a later write once stale)."""
    import shutil

    staging = temporary_beside(os.path.join(folder, "run"), folder=True)
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def publish_run(staging, folder, names, report):
    """Move the files and folders ``names`` of ``staging`` into ``folder``, then write
    report.json, which names every file of its run, last.

    The earlier run's report.json is removed first, and a folder of the earlier run is swapped
    out whole, so a run stopped at any point leaves either the earlier run whole or no
    report.json (never a report of another run).

    Returns
    -------
    written : list of str
        Paths written, in order, report.json last.
    """
    write_json(os.path.join(staging, REPORT), {**report, "files": list(names)})
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(folder, REPORT))
    for name in [*names, REPORT]:
        target = os.path.join(folder, name)
        if os.path.isdir(target):  # a folder is not renamed over: move the old one out
            os.replace(target, os.path.join(staging, f".old-{name}"))
        os.replace(os.path.join(staging, name), target)
    return [os.path.join(folder, name) for name in [*names, REPORT]]


REPORT = "report.json"
