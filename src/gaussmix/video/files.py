"""Reading video and writing what tracking found: masks, an annotated video, tracks.csv.

Video files are read with imageio through the ffmpeg binary that the ``imageio-ffmpeg`` wheel
ships (the ``video`` extra): measured on 200 frames of 640x480 H.264 on 2 cores, 1.7 s
against 2.6 s through PyAV, since ffmpeg decodes in its own process while the model works. A
folder of pictures (PNG, JPEG, ...) is read in the order of its file names.
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass

import numpy as np

from .._foundations.lazy import require
from ..imaging.files import FileError

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
# Ids are drawn in these colours, in turn (matplotlib's tab10).
PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))
TRAIL = 40
TRACK_COLUMNS = ("track_id", "frame", "x", "y", "top", "left", "bottom", "right", "area",
                 "predicted")


@dataclass(frozen=True)
class Video:
    """A video file or a folder of frames, opened and checked.

    Attributes
    ----------
    path : str
    n_frames : int or None
        Frames, where the container says (None: unknown until read).
    fps : float
        Frames per second (25 for a folder of pictures).
    shape : tuple of int
        The first frame's shape.
    """

    path: str
    n_frames: object
    fps: float
    shape: tuple
    pictures: tuple = ()

    def frames(self):
        """The frames, one at a time: uint8 (height, width) or (height, width, 3)."""
        if self.pictures:
            yield from self._pictures()
            return
        import imageio.v3 as iio

        index = 0
        try:
            for frame in iio.imiter(self.path, plugin="FFMPEG"):
                yield _as_frame(frame)
                index += 1
        except (OSError, ValueError, RuntimeError, IndexError) as exc:
            raise FileError(f"Cannot go on reading {self.path!r} after {index} frames "
                            f"({_reason(exc)}); the file may be truncated or damaged.") from None

    def _pictures(self):
        for name in self.pictures:
            frame = _read_picture(os.path.join(self.path, name))
            if frame.shape != self.shape:
                raise FileError(f"The frame {name!r} has shape {frame.shape}, the first frame "
                                f"{self.shape}; every frame of a folder must have one size.")
            yield frame


def open_video(path):
    """Open a video file or a folder of frames, and check that it holds at least two frames.

    Raises
    ------
    FileError
        A missing path, a file that is not a video (or a codec ffmpeg cannot decode), a video
        or folder with fewer than two frames, with one sentence.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileError(f"No video or folder at {path!r}; check the path.")
    if os.path.isdir(path):
        return _open_folder(path)
    if not os.path.isfile(path):
        raise FileError(f"{path!r} is not a regular file; pass a video file or a folder of "
                        "frames.")
    iio = require("imageio.v3", "video", "Video files")
    require("imageio_ffmpeg", "video", "Video files")  # the ffmpeg binary
    try:
        meta = iio.immeta(path, plugin="FFMPEG")
        frames = iio.imiter(path, plugin="FFMPEG")
        first = [_as_frame(frame) for frame, _ in zip(frames, range(2))]
    except (OSError, ValueError, RuntimeError, IndexError, StopIteration) as exc:
        raise FileError(f"Cannot read {path!r} as a video ({_reason(exc)}); pass a video file "
                        "(MP4, AVI, MKV, WebM, GIF ...) or a folder of frames.") from None
    if len(first) < 2:
        raise FileError(f"{path!r} holds {len(first)} frame{'s' * (len(first) != 1)}; "
                        "tracking needs at least two.")
    fps = float(meta.get("fps") or 25.0)
    duration = meta.get("duration")
    n_frames = int(round(duration * fps)) if duration and np.isfinite(duration) else None
    return Video(path, n_frames, fps, first[0].shape)


def _open_folder(path):
    names = sorted((n for n in os.listdir(path) if n.lower().endswith(PICTURE_SUFFIXES)),
                   key=_natural)
    if len(names) < 2:
        raise FileError(f"The folder {path!r} holds {len(names)} picture"
                        f"{'s' * (len(names) != 1)} (PNG, JPEG, ...); tracking needs at least "
                        "two frames.")
    first = _read_picture(os.path.join(path, names[0]))
    return Video(path, len(names), 25.0, first.shape, tuple(names))


def _natural(name):
    """Sort key that puts frame2.png before frame10.png."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _read_picture(path):
    from ..imaging.files import read_image

    return _as_frame(read_image(path))


def _as_frame(frame):
    """uint8, (height, width) or (height, width, 3): alpha dropped, 16 bits reduced."""
    frame = np.asarray(frame)
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[..., 0]
    if frame.ndim == 3:
        frame = frame[..., :3]
    if frame.dtype != np.uint8:
        top = np.iinfo(frame.dtype).max if frame.dtype.kind in "ui" else 1.0
        frame = np.clip(np.rint(frame * (255.0 / top)), 0, 255).astype(np.uint8)
    return frame


def _reason(exc):
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


# -- what is written --------------------------------------------------------------------------

def annotate(frame, mask, shown, trails):
    """A frame with its foreground tinted, each reported track's box, id and trail.

    Parameters
    ----------
    frame : ndarray of shape (height, width) or (height, width, 3), uint8
    mask : ndarray of shape (height, width), uint8
    shown : list of (Track, Detection)
    trails : dict
        Track id to its recent positions; updated here.

    Returns
    -------
    ndarray of shape (height, width, 3), uint8
    """
    from PIL import Image, ImageDraw

    rgb = np.stack([frame] * 3, axis=2) if frame.ndim == 2 else frame.copy()
    tint = rgb.astype(np.float32)
    tint[mask == 255] = 0.6 * tint[mask == 255] + 0.4 * np.float32([255, 60, 60])
    tint[(mask != 255) & (mask != 0)] *= 0.6
    picture = Image.fromarray(tint.astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    for track, detection in shown:
        colour = PALETTE[(track.id - 1) % len(PALETTE)]
        trail = trails.setdefault(track.id, [])
        trail.append((detection.x, detection.y))
        del trail[:-TRAIL]
        if len(trail) > 1:
            draw.line(trail, fill=colour, width=2)
        top, left, bottom, right = detection.box
        draw.rectangle((left, top, right - 1, bottom - 1), outline=colour,
                       width=1 if detection.predicted else 2)
        draw.text((left + 2, max(top - 11, 0)), str(track.id), fill=colour)
    return np.asarray(picture)


class AnnotatedWriter:
    """Writes annotated frames as an MP4 (H.264, through imageio-ffmpeg) or an animated GIF
    (Pillow), one frame at a time."""

    def __init__(self, path, fps, kind):
        self.path, self.fps, self.kind = path, fps, kind
        self._writer = None
        self._gif = None

    def add(self, frame):
        if self.kind == "gif":
            from PIL import Image

            picture = Image.fromarray(frame).quantize(colors=255, method=Image.Quantize.FASTOCTREE,
                                                    dither=Image.Dither.NONE)
            if self._gif is None:
                self._gif = open(self.path, "wb")
                self._first, self._rest = picture, []
            else:
                self._rest.append(picture)
            return
        if self._writer is None:
            import imageio_ffmpeg

            height, width = frame.shape[:2]
            self._size = (width + width % 2, height + height % 2)  # H.264 wants even sides
            self._writer = imageio_ffmpeg.write_frames(
                self.path, self._size, fps=self.fps, codec="libx264", quality=7,
                macro_block_size=1, ffmpeg_log_level="error")
            self._writer.send(None)
        padded = np.zeros((self._size[1], self._size[0], 3), np.uint8)
        padded[:frame.shape[0], :frame.shape[1]] = frame
        self._writer.send(padded)

    def close(self):
        if self._writer is not None:
            self._writer.close()
        if self._gif is not None:
            with self._gif:
                self._first.save(self._gif, format="GIF", save_all=True,
                                 append_images=self._rest, duration=int(1000 / self.fps),
                                 loop=0)


def tracks_csv(tracks):
    """The tracks as CSV text: one row per track and frame (``TRACK_COLUMNS``)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(TRACK_COLUMNS)
    for track in tracks:
        for d in track.detections:
            writer.writerow((track.id, d.frame, f"{d.x:.2f}", f"{d.y:.2f}", *d.box, d.area,
                             int(d.predicted)))
    return out.getvalue()
