"""Reading pictures and writing renders: every write is atomic (temporary file, rename)."""

from __future__ import annotations

import json
import os

import numpy as np

from .._files import atomic_write


class FileError(OSError):
    """A file that cannot be read or written, with one sentence saying what to do."""


def read_image(path):
    """A picture file as an array: (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA, uint8/16.

    Raises
    ------
    FileError
        Missing file or a file that is not a picture.
    """
    from PIL import Image, UnidentifiedImageError

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileError(f"No such file: {path!r}; check the path.")
    if os.path.isdir(path):
        raise FileError(f"{path!r} is a folder, not a picture; pass an image file.")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode not in ("L", "RGB", "RGBA", "I;16", "1"):
                img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
            return np.asarray(img)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise FileError(f"{path!r} is not a picture that can be read ({exc}); pass a PNG, "
                        "JPEG or another common image file.") from None


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
    """Write every render, the model and report.json into ``folder``.

    Returns
    -------
    written : list of str
        Paths written, in order.
    """
    from .pipeline import FIGURES

    written = []
    for name, result in painting.renders.items():
        path = os.path.join(folder, f"{name}.png")
        if name in FIGURES:
            write_figure(path, result)
        else:
            write_png(path, result)
        written.append(path)
    model_path = os.path.join(folder, "model.npz")
    painting.model.save(model_path)
    written.append(model_path)
    report_path = os.path.join(folder, "report.json")
    write_json(report_path, {**painting.report, "files": [os.path.basename(p) for p in written]})
    written.append(report_path)
    return written
