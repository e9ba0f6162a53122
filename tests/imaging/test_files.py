import json
import os

import numpy as np
import pytest
from PIL import Image

from gaussmix import load
from gaussmix.imaging import paint
from gaussmix.imaging.files import (
    FileError,
    prepare_output_folder,
    read_image,
    write_painting,
    write_png,
)

from .pictures import colour_quadrants, disc_and_bar


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_read_image_modes(tmp_path, mode):
    path = tmp_path / "p.png"
    Image.fromarray(colour_quadrants()).convert(mode).save(path)
    image = read_image(path)
    assert image.shape[:2] == (40, 48)
    assert image.ndim == (2 if mode == "L" else 3)


@pytest.mark.parametrize(
    "make, pattern",
    [
        (lambda p: None, "No such file"),
        (lambda p: p.write_text("not a picture"), "is not a picture that can be read"),
        (lambda p: p.mkdir(), "is a folder, not a picture"),
    ],
)
def test_read_image_errors(tmp_path, make, pattern):
    path = tmp_path / "x.png"
    make(path)
    with pytest.raises(FileError, match=pattern):
        read_image(path)


def test_output_folder_that_cannot_exist(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(FileError, match="Cannot create the output folder"):
        prepare_output_folder(blocker / "sub")
    with pytest.raises(FileError, match="not a folder|Cannot create"):
        prepare_output_folder(blocker)


def test_write_painting_writes_everything_atomically(tmp_path):
    result = paint(disc_and_bar(), n_components=5)
    written = write_painting(result, prepare_output_folder(tmp_path / "out"))
    names = sorted(os.listdir(tmp_path / "out"))
    assert names == sorted(os.path.basename(p) for p in written)
    assert not any(n.startswith(".tmp-") for n in names)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["files"][-1] == "model.npz" and report["mode"] == "bw"
    model = load(tmp_path / "out" / "model.npz")
    np.testing.assert_array_equal(model.means_, result.model.means_)
    png = np.asarray(Image.open(tmp_path / "out" / "density.png"))
    np.testing.assert_array_equal(png, result.renders["density"])
    assert oct(os.stat(tmp_path / "out" / "density.png").st_mode & 0o777) != oct(0o600)


def test_write_png_round_trip(tmp_path):
    image = colour_quadrants()
    write_png(tmp_path / "c.png", image)
    np.testing.assert_array_equal(read_image(tmp_path / "c.png"), image)
