"""Tracking moving objects over the masks of a ``BackgroundModel``.

Each frame's foreground (shadows left out) is cleaned by a morphological opening and closing
and cut into connected regions (scikit-image); regions smaller than ``min_area`` pixels are
noise. Regions are associated with the tracks of the previous frames by the least total
distance between each track's predicted position and each region's centroid (scipy's
assignment), within ``max_distance`` pixels; a constant-velocity Kalman filter predicts where
a track is next, so that objects that cross or pass behind one another keep their ids. A
region that no track takes starts a track; a track that no region takes coasts on its
prediction for up to ``max_missed`` frames, then ends; one that was standing still when it
was lost waits longer (``max_missed_still``), since a background model learns a stopped object
as background and shows it again when it moves on. Only tracks seen in at least
``min_hits`` frames are reported.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import numpy as np

from .._foundations.validation import check_int, check_real

# A cost no gated pair reaches: pairs farther than max_distance are never assigned.
_FORBIDDEN = 1e12
# Sightings over which a track's speed is averaged to tell whether it stands still.
STILL_WINDOW = 25


@dataclass(frozen=True)
class Detection:
    """One connected foreground region of one frame.

    Attributes
    ----------
    frame : int
        Index of the frame.
    x, y : float
        Centroid, in pixels (x to the right, y down).
    box : tuple of int
        (top, left, bottom, right), bottom and right exclusive.
    area : int
        Pixels in the region.
    predicted : bool
        True where the object was not seen (hidden, or merged with another): the position
        is the track's prediction, and box and area are the last seen ones, moved there.
    """

    frame: int
    x: float
    y: float
    box: tuple
    area: int
    predicted: bool = False


@dataclass
class Track:
    """One object followed over frames.

    Attributes
    ----------
    id : int
        Stable identifier, 1, 2, ... in order of appearance.
    detections : list of Detection
        One per frame from the first sighting to the last: the region it was matched to, or
        where it was predicted to be while not seen (``predicted`` True).
    """

    id: int
    detections: list = field(default_factory=list)

    @property
    def seen(self):
        """How many frames the object was seen in (not predicted)."""
        return sum(not d.predicted for d in self.detections)

    @property
    def frames(self):
        """Indices of the frames where the object was seen, (n,) int."""
        return np.array([d.frame for d in self.detections], dtype=int)

    @property
    def positions(self):
        """Centroids where the object was seen, (n, 2) float: x, y."""
        return np.array([(d.x, d.y) for d in self.detections], dtype=float).reshape(-1, 2)


def detect(mask, frame_index=0, min_area=40, clean=1, join=8):
    """The foreground objects of a mask.

    Parameters
    ----------
    mask : ndarray of shape (height, width)
        255 foreground; anything else (0 background, a shadow value) is not.
    frame_index : int, default=0
    min_area : int, default=40
        Fewest foreground pixels of an object.
    clean : int, default=1
        Radius of the square opening then closing that removes specks and fills pinholes
        (0: none).
    join : int, default=8
        Foreground regions closer than this many pixels are one object (an object whose
        colours resemble the background's comes out in pieces); 0: each connected region is
        one.

    Returns
    -------
    list of Detection
        Centroids, boxes and areas count the foreground pixels only.
    """
    from scipy import ndimage
    from skimage.measure import label, regionprops

    check_int(min_area, "min_area", 1)
    check_int(clean, "clean", 0)
    check_int(join, "join", 0)
    foreground = np.asarray(mask) == 255
    if clean:
        square = np.ones((2 * clean + 1, 2 * clean + 1), dtype=bool)
        foreground = ndimage.binary_closing(ndimage.binary_opening(foreground, square), square,
                                            border_value=0)
    grown = foreground
    if join:
        reach = (join + 1) // 2
        disk = np.add.outer(np.arange(-reach, reach + 1) ** 2,
                            np.arange(-reach, reach + 1) ** 2) <= reach * reach
        grown = ndimage.binary_dilation(foreground, disk)
    labels = label(grown, connectivity=2) * foreground
    return [Detection(frame=int(frame_index), x=float(r.centroid[1]), y=float(r.centroid[0]),
                      box=tuple(int(v) for v in r.bbox), area=int(r.area))
            for r in regionprops(labels) if r.area >= min_area]


class _Motion:
    """A constant-velocity Kalman filter of a centroid: state (x, y, vx, vy)."""

    TRANSITION = np.array([[1.0, 0, 1, 0], [0, 1, 0, 1], [0, 0, 1, 0], [0, 0, 0, 1]])
    OBSERVE = np.array([[1.0, 0, 0, 0], [0, 1, 0, 0]])

    def __init__(self, x, y, process_noise, measurement_noise, use_velocity):
        self.state = np.array([x, y, 0.0, 0.0])
        # A new track's velocity is unknown: wide, so its second position sets it.
        self.covariance = np.diag([measurement_noise, measurement_noise, 1e4, 1e4])
        gain = np.array([[0.5, 0], [0, 0.5], [1, 0], [0, 1]])
        self.process = process_noise * gain @ gain.T
        self.noise = measurement_noise * np.eye(2)
        self.use_velocity = use_velocity

    def predict(self):
        if self.use_velocity:
            self.state = self.TRANSITION @ self.state
            self.covariance = (self.TRANSITION @ self.covariance @ self.TRANSITION.T
                               + self.process)
        return self.state[:2]

    def correct(self, x, y):
        if not self.use_velocity:
            self.state[:2] = (x, y)
            return
        innovation = np.array([x, y]) - self.OBSERVE @ self.state
        spread = self.OBSERVE @ self.covariance @ self.OBSERVE.T + self.noise
        gain = np.linalg.solve(spread, self.OBSERVE @ self.covariance).T
        self.state = self.state + gain @ innovation
        self.covariance = (np.eye(4) - gain @ self.OBSERVE) @ self.covariance


class Tracker:
    """Associates each frame's detections with tracks, online.

    Parameters
    ----------
    max_distance : float, default=40.0
        Farthest a detection may be from a track's predicted position, in pixels.
    max_missed : int, default=30
        Frames a track coasts on its prediction without a detection before it ends.
    max_missed_still : int, default=300
        The same for a track lost while standing still (moving less than ``still_speed``):
        a stopped object fades into the background model (after about 50 frames at
        ``BackgroundModel``'s default history) and comes back, where it was, when it moves
        on.
    still_speed : float, default=1.0
        Pixels per frame below which a track stands still, on average over its last
        ``STILL_WINDOW`` sightings (a stopped object's region shrinks as it fades, and its
        centre creeps).
    min_hits : int, default=3
        Frames a track must be seen in to be reported.
    kalman : bool, default=True
        Predict with a constant-velocity Kalman filter; False: a track is expected where it
        was last seen.
    process_noise, measurement_noise : float, default=1.0, 4.0
        The filter's acceleration and centroid variances, in pixels squared.
    """

    def __init__(self, max_distance=40.0, max_missed=30, min_hits=3, kalman=True,
                 process_noise=1.0, measurement_noise=4.0, max_missed_still=300,
                 still_speed=1.0):
        check_real(max_distance, "max_distance", 0.0, finite=True)
        check_int(max_missed, "max_missed", 0)
        check_int(max_missed_still, "max_missed_still", 0)
        check_real(still_speed, "still_speed", 0.0, finite=True)
        check_int(min_hits, "min_hits", 1)
        check_real(process_noise, "process_noise", 0.0, finite=True)
        check_real(measurement_noise, "measurement_noise", 1e-12, finite=True)
        self.max_distance = float(max_distance)
        self.max_missed = max_missed
        self.max_missed_still = max_missed_still
        self.still_speed = float(still_speed)
        self.min_hits = min_hits
        self.kalman = bool(kalman)
        self.process_noise = float(process_noise)
        self.measurement_noise = float(measurement_noise)
        self._active = []  # (Track, _Motion, frames missed)
        self._ended = []
        self._next_id = 1
        self._frame = 0

    def get_params(self):
        """The constructor's parameters, as a dict."""
        return {name: getattr(self, name) for name in inspect.signature(type(self)).parameters}

    def update(self, detections):
        """Take the next frame's detections (call once per frame, in order).

        Returns
        -------
        list of (Track, Detection)
            Where each track seen in at least ``min_hits`` frames is in this frame: the
            detection it took, or, while it coasts unseen, its predicted position
            (``predicted`` True).
        """
        from scipy.optimize import linear_sum_assignment

        predicted = np.array([motion.predict() for _, motion, _ in self._active]).reshape(-1, 2)
        observed = np.array([(d.x, d.y) for d in detections]).reshape(-1, 2)
        distance = np.sqrt(((predicted[:, None, :] - observed[None, :, :]) ** 2).sum(axis=2))
        cost = np.where(distance <= self.max_distance, distance, _FORBIDDEN)
        rows, cols = linear_sum_assignment(cost) if cost.size else ((), ())
        matched = {r: c for r, c in zip(rows, cols) if cost[r, c] < _FORBIDDEN}

        still, shown = [], []
        for index, (track, motion, missed) in enumerate(self._active):
            if index in matched:
                detection = detections[matched[index]]
                motion.correct(detection.x, detection.y)
                track.detections.append(detection)
                still.append((track, motion, 0))
            elif missed < self._patience(track):
                if self._standing_still(track):  # it waits where it was last seen
                    motion.state[2:] = 0.0
                track.detections.append(_predicted(track.detections[-1], predicted[index],
                                                   self._frame))
                still.append((track, motion, missed + 1))
            else:
                self._ended.append(_trimmed(track))
                continue
            if track.seen >= self.min_hits:
                shown.append((track, track.detections[-1]))
        taken = set(matched.values())
        for index, detection in enumerate(detections):
            if index not in taken:
                track = Track(self._next_id, [detection])
                self._next_id += 1
                still.append((track, _Motion(detection.x, detection.y, self.process_noise,
                                             self.measurement_noise, self.kalman), 0))
                if self.min_hits <= 1:
                    shown.append((track, detection))
        self._active = still
        self._frame += 1
        return shown

    def _standing_still(self, track):
        return track.seen >= self.min_hits and _speed(track) < self.still_speed

    def _patience(self, track):
        """Frames ``track`` may go unseen: longer for a confirmed track standing still."""
        return self.max_missed_still if self._standing_still(track) else self.max_missed

    def tracks(self):
        """Every track seen in at least ``min_hits`` frames, ended or not, by id; a track's
        detections end with its last sighting."""
        everything = self._ended + [_trimmed(track) for track, _, _ in self._active]
        return sorted((t for t in everything if t.seen >= self.min_hits), key=lambda t: t.id)


def _speed(track):
    """Pixels per frame over the last ``STILL_WINDOW`` sightings of ``track`` (infinite with
    fewer than half of them)."""
    seen = []
    for detection in reversed(track.detections):
        if not detection.predicted:
            seen.append(detection)
            if len(seen) == STILL_WINDOW:
                break
    seen.reverse()
    if len(seen) < STILL_WINDOW // 2:
        return np.inf
    first, last = seen[0], seen[-1]
    return float(np.hypot(last.x - first.x, last.y - first.y)) / (last.frame - first.frame)


def _predicted(last, position, frame):
    """The last detection of a track moved to its predicted ``position`` in ``frame``,
    marked predicted."""
    x, y = float(position[0]), float(position[1])
    dx, dy = round(x - last.x), round(y - last.y)
    top, left, bottom, right = last.box
    return Detection(frame, x, y, (top + dy, left + dx, bottom + dy, right + dx), last.area,
                     predicted=True)


def _trimmed(track):
    """A copy of ``track`` without the predictions after its last sighting."""
    detections = list(track.detections)
    while detections and detections[-1].predicted:
        detections.pop()
    return Track(track.id, detections)


def follow(frames, model, tracker, min_area=40, clean=1, join=8):
    """Run ``model`` (a :class:`BackgroundModel`) and ``tracker`` (a :class:`Tracker`) over
    ``frames``, one frame at a time.

    Yields
    ------
    mask : ndarray of shape (height, width), uint8
    shown : list of (Track, Detection)
        The frame's detections that belong to reported tracks.
    """
    for index, frame in enumerate(frames):
        mask = model.apply(frame)
        yield mask, tracker.update(detect(mask, index, min_area, clean, join))


def track(frames, background=None, min_area=40, clean=1, join=8, **tracker_options):
    """Follow the moving objects of a sequence of frames.

    Parameters
    ----------
    frames : iterable of ndarray of shape (height, width) or (height, width, channels)
        One size and dtype (see :meth:`BackgroundModel.apply`).
    background : BackgroundModel, optional
        The model to use (and go on training); a new one with the defaults otherwise.
    min_area : int, default=40
        Smallest foreground region taken as an object, in pixels.
    clean : int, default=1
        Radius of the opening and closing that clean each mask (0: none).
    join : int, default=8
        Foreground regions closer than this many pixels are one object.
    **tracker_options
        :class:`Tracker`'s parameters (``max_distance``, ``max_missed``, ``min_hits``,
        ``kalman``, ...).

    Returns
    -------
    list of Track
        The tracks seen in at least ``min_hits`` frames, by id.

    Examples
    --------
    >>> from gaussmix.video import scenes, track
    >>> scene = scenes.crossing(n_frames=80)
    >>> len(track(scene.frames))
    2
    """
    from .background import BackgroundModel

    tracker = Tracker(**tracker_options)
    model = BackgroundModel() if background is None else background
    for _ in follow(frames, model, tracker, min_area, clean, join):
        pass
    return tracker.tracks()
