"""Synthetic video with ground truth, to measure background subtraction and tracking.

Objects (textured ellipses) move over one of scikit-image's sample pictures, with what makes
background subtraction hard, one difficulty per scene: sensor noise, a slow change of
illumination, a region that flickers between two textures (leaves in the wind, water, a
screen: one Gaussian per pixel cannot hold it), cast shadows, objects that stop and start
again, objects that cross. Every scene comes with its truth: a mask per frame (255 object,
127 cast shadow, 0 background) and each object's centre per frame. Nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIZE = (240, 320)
# Frames before the first object enters (the model learns the empty scene) and frames left
# out of the scores: the first frames, where every model is still learning.
WARM_UP = 20
SHADOW = 127


@dataclass(frozen=True)
class Scene:
    """A synthetic sequence and its ground truth.

    Attributes
    ----------
    name : str
    frames : ndarray of shape (n_frames, height, width, 3), uint8
    truth : ndarray of shape (n_frames, height, width), uint8
        255 an object, 127 a cast shadow, 0 background.
    centres : ndarray of shape (n_frames, n_objects, 2), float
        Each object's centre (x, y), NaN where it is out of view.
    scored_from : int
        First frame to score (the ones before are the model's warm-up).
    """

    name: str
    frames: np.ndarray
    truth: np.ndarray
    centres: np.ndarray
    scored_from: int = WARM_UP


@dataclass(frozen=True)
class Mover:
    """An object: an ellipse of radii ``radii`` (x, y) in ``colour`` with a stripe texture,
    moving from ``start`` at ``velocity`` pixels per frame from frame ``enter``, standing still
    during ``pauses`` (pairs of first frame and length)."""

    start: tuple
    velocity: tuple
    radii: tuple
    colour: tuple
    enter: int = WARM_UP
    pauses: tuple = ()

    def centre(self, t):
        moving = t - self.enter
        for first, length in self.pauses:
            moving -= min(max(t - first, 0), length)
        if moving < 0:
            return None
        return (self.start[0] + self.velocity[0] * moving,
                self.start[1] + self.velocity[1] * moving)


def picture(name="coffee", size=SIZE):
    """A scikit-image sample picture resized to ``size`` (height, width), float RGB 0-255."""
    from skimage import data
    from skimage.transform import resize

    image = getattr(data, name)()
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=2)
    return resize(image[..., :3], size, anti_aliasing=True, preserve_range=True).astype(float)


def render(name, background, movers, n_frames, noise=4.0, gain=None, flicker=None,
           shadow=None, seed=0):
    """Draw a scene.

    Parameters
    ----------
    background : ndarray of shape (height, width, 3), float 0-255
    movers : list of Mover
    n_frames : int
    noise : float, default=4.0
        Standard deviation of the sensor noise, in 8-bit levels.
    gain : callable, optional
        Frame index to the illumination's factor (1: as the picture).
    flicker : tuple, optional
        ``(top, left, bottom, right, other)``: inside the box, each pixel shows the picture or
        ``other`` (an (h, w, 3) texture) at random each frame, one chance in two.
    shadow : tuple, optional
        ``(dx, dy, darkness)``: each object casts its own shape, shifted by (dx, dy) and
        darkening the background to ``darkness`` times its brightness.
    seed : int, default=0
    """
    rng = np.random.default_rng(seed)
    height, width, _ = background.shape
    yy, xx = np.mgrid[:height, :width]
    frames = np.empty((n_frames, height, width, 3), np.uint8)
    truth = np.zeros((n_frames, height, width), np.uint8)
    centres = np.full((n_frames, len(movers), 2), np.nan)
    for t in range(n_frames):
        scene = background.copy()
        if flicker is not None:
            top, left, bottom, right, other = flicker
            swap = rng.random((bottom - top, right - left)) < 0.5
            region = scene[top:bottom, left:right]
            region[swap] = other[swap]
        covered = np.zeros((height, width), bool)
        shaded = np.zeros((height, width), bool)
        for index, mover in enumerate(movers):
            centre = mover.centre(t)
            if centre is None:
                continue
            inside = _ellipse(xx, yy, centre, mover.radii)
            if shadow is not None:
                dx, dy, _ = shadow
                shaded |= _ellipse(xx, yy, (centre[0] + dx, centre[1] + dy), mover.radii)
            if inside.any():
                stripes = 1.0 + 0.15 * np.sin((xx[inside] - centre[0]) * 0.8)
                scene[inside] = np.outer(stripes, mover.colour)
                covered |= inside
                centres[t, index] = centre
        if shadow is not None:
            shaded &= ~covered
            scene[shaded] *= shadow[2]
            truth[t][shaded] = SHADOW
        truth[t][covered] = 255
        if gain is not None:
            scene *= gain(t)
        scene += rng.normal(0.0, noise, scene.shape)
        frames[t] = np.clip(np.rint(scene), 0, 255).astype(np.uint8)
    return Scene(name, frames, truth, centres)


def _ellipse(xx, yy, centre, radii):
    return ((xx - centre[0]) / radii[0]) ** 2 + ((yy - centre[1]) / radii[1]) ** 2 <= 1.0


def _crossing_movers(size, n_frames):
    height, width = size
    speed = (width + 60) / max(n_frames - WARM_UP, 1)
    r = max(6, height // 14)
    return [Mover((-30.0, 0.35 * height), (speed, 0.3 * height / max(n_frames - WARM_UP, 1)),
                  (1.6 * r, r), (200.0, 40.0, 40.0)),
            Mover((width + 30.0, 0.65 * height), (-speed, -0.3 * height
                                                  / max(n_frames - WARM_UP, 1)),
                  (1.3 * r, 1.3 * r), (40.0, 60.0, 210.0))]


def noise(n_frames=200, size=SIZE, seed=0):
    """Two objects crossing a picture under heavy sensor noise (8 levels)."""
    return render("noise", picture("coffee", size), _crossing_movers(size, n_frames), n_frames,
                  noise=8.0, seed=seed)


def drift(n_frames=200, size=SIZE, seed=0):
    """Two objects while the light dims by a quarter and comes back, slowly."""
    gain = lambda t: 1.0 - 0.25 * np.sin(np.pi * t / n_frames) ** 2  # noqa: E731
    return render("drift", picture("chelsea", size), _crossing_movers(size, n_frames),
                  n_frames, gain=gain, seed=seed)


def flicker(n_frames=200, size=SIZE, seed=0):
    """Two objects beside a region (a third of the picture) that flickers between the
    picture and another texture: a background with two modes per pixel."""
    height, width = size
    background = picture("astronaut", size)
    top, left, bottom, right = 0, int(0.55 * width), height, width
    other = picture("rocket", size)[top:bottom, left:right] * 0.8
    movers = [Mover((-30.0, 0.5 * height), ((0.5 * width + 30) / (n_frames - WARM_UP), 0.0),
                    (0.07 * width, 0.1 * height), (230.0, 200.0, 40.0))]
    return render("flicker", background, movers, n_frames,
                  flicker=(top, left, bottom, right, other), seed=seed)


def shadows(n_frames=200, size=SIZE, seed=0):
    """Two objects casting shadows (the ground darkened to 0.6) below and beside them."""
    height, width = size
    return render("shadows", picture("coffee", size), _crossing_movers(size, n_frames),
                  n_frames, shadow=(0.04 * width, 0.12 * height, 0.6), seed=seed)


def stop_and_go(n_frames=300, size=SIZE, seed=0):
    """An object that crosses, stops for 60 frames in the middle and goes on, and one that
    keeps moving."""
    height, width = size
    crossing = (width + 60) / (n_frames - WARM_UP - 60)
    movers = [Mover((-30.0, 0.4 * height), (crossing, 0.0), (0.08 * width, 0.09 * height),
                    (30.0, 180.0, 60.0), pauses=((WARM_UP + int((width / 2 + 30) / crossing),
                                                  60),)),
              Mover((0.2 * width, -30.0), (0.0, (height + 60) / (n_frames - WARM_UP)),
                    (0.06 * width, 0.06 * width), (220.0, 220.0, 220.0))]
    return render("stop-and-go", picture("coffee", size), movers, n_frames, seed=seed)


def crossing(n_frames=120, size=(120, 160), seed=0):
    """Two objects whose paths cross in the middle of the picture (small: for tests and
    examples)."""
    return render("crossing", picture("coffee", size), _crossing_movers(size, n_frames),
                  n_frames, seed=seed)


SCENES = {"noise": noise, "drift": drift, "flicker": flicker, "shadows": shadows,
          "stop-and-go": stop_and_go}
