import json
import os
import warnings

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


def test_large_pictures_are_read_reduced_by_a_whole_factor(tmp_path):
    path = tmp_path / "big.png"
    Image.fromarray(np.tile(colour_quadrants(), (5, 5, 1))).save(path)  # 200 x 240
    notes = []
    image = read_image(path, max_pixels=3000, note=notes.append)
    assert image.shape == (50, 60, 3)  # reduced 4x: the least whole factor within 3000 pixels
    assert notes == [f"Read the 240x200 picture {str(path)!r} at 60x50 (pictures over 3000 "
                     "pixels are reduced)."]
    assert read_image(path, max_pixels=48000).shape == (200, 240, 3)


def test_jpeg_pictures_decode_at_the_reduced_size(tmp_path):
    path = tmp_path / "big.jpg"
    Image.fromarray(np.tile(colour_quadrants(), (8, 8, 1))).save(path, quality=95)  # 320 x 384
    image = read_image(path, max_pixels=320 * 384 // 16)
    assert image.shape[0] * image.shape[1] <= 320 * 384 // 16 and image.shape[0] >= 70


def test_decompression_bombs_are_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's own warning never reaches the user
        with pytest.raises(FileError, match="declares more than 4000 pixels, too many to "
                                            "decode safely; shrink it first"):
            read_image(path)
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 6000)
        assert read_image(path, max_pixels=2500).shape == (50, 50)


def test_a_run_stopped_while_writing_leaves_the_earlier_run_whole(tmp_path, monkeypatch):
    from gaussmix.imaging import files

    folder = prepare_output_folder(tmp_path / "out")
    first = paint(disc_and_bar(), n_components=3, renders=["density", "samples"])
    write_painting(first, folder)
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    second = paint(disc_and_bar(), n_components=4, seed=1, renders=["density", "samples"])
    calls = []

    def interrupted(path, image):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        Image.fromarray(image).save(path, format="PNG")

    monkeypatch.setattr(files, "write_png", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_painting(second, folder)
    after = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    assert after == before  # nothing of the second run, no staging folder


def test_a_report_always_names_the_files_of_its_own_run(tmp_path, monkeypatch):
    folder = prepare_output_folder(tmp_path / "out")
    write_painting(paint(disc_and_bar(), n_components=3, renders=["density"]), folder)
    second = paint(disc_and_bar(), n_components=4, renders=["density", "samples"])
    real_replace, moves = os.replace, []

    def stopped_during_the_renames(src, dst):
        if os.path.dirname(dst) == folder:  # a move into place, not a write into staging
            moves.append(dst)
            if len(moves) == 2:
                raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", stopped_during_the_renames)
    with pytest.raises(KeyboardInterrupt):
        write_painting(second, folder)
    monkeypatch.undo()
    assert not (tmp_path / "out" / "report.json").exists()  # no report of the earlier run
    assert [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")] == []
