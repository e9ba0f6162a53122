"""Background subtraction and tracking: gaussmix against OpenCV's MOG2 and KNN and a single
Gaussian per pixel, side by side in one run on the same frames.

For every synthetic scene of ``gaussmix.video.scenes`` (noise, illumination drift, a
flickering region, cast shadows, objects that stop and go; 320x240 colour):

- the F-measure of the foreground (a mask's 255 against the truth's objects; cast shadows are
  not foreground), from frame 20 on, each method with its defaults;
- shadows: the share of the truth's shadow pixels each method marks as shadow and as
  foreground;
- frames per second at 320x240 and 640x480 (colour, the noise scene, each method in its own
  process on this machine's cores) and the resident memory each model holds after a run (its
  state and buffers);
- tracking over gaussmix's masks: objects found (seen under one track in at least half the
  frames where they are in view) and identity switches (a ground-truth object's track id
  changing from one frame where it is matched to the next).

The single Gaussian is the running average of Wren et al. (1997): a mean and a variance per
pixel and channel, the plain average of the first 100 frames then learning rate 0.01,
foreground beyond a squared Mahalanobis distance of 16 (MOG2's threshold).

    python benchmarks/video.py
    python benchmarks/video.py --out docs/benchmarks/video.md
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
from report import emit, markdown_table

METHODS = ("gaussmix", "OpenCV MOG2", "OpenCV KNN", "single Gaussian")


class RunningGaussian:
    """One Gaussian per pixel (a mean and a variance per channel) learned by a running
    average: the plain average of the frames seen until ``1 / rate`` of them, then an
    exponential one; foreground where the squared Mahalanobis distance summed over the
    channels exceeds ``threshold`` (MOG2's ``var_threshold``)."""

    def __init__(self, rate=0.01, threshold=16.0, initial_variance=15.0, min_variance=4.0):
        self.rate, self.threshold = rate, threshold
        self.initial_variance, self.min_variance = initial_variance, min_variance
        self.mean, self.seen = None, 0

    def apply(self, frame):
        x = frame.astype(np.float32).reshape(frame.shape[0], frame.shape[1], -1)
        self.seen += 1
        if self.mean is None:
            self.mean = x.copy()
            self.variance = np.full_like(x, self.initial_variance)
            return np.full(frame.shape[:2], 255, np.uint8)
        d = x - self.mean
        foreground = (d * d / self.variance).sum(axis=-1) > self.threshold
        rate = max(1.0 / self.seen, self.rate)
        self.mean += rate * d
        self.variance += rate * (d * d - self.variance)
        np.maximum(self.variance, self.min_variance, out=self.variance)
        return np.where(foreground, 255, 0).astype(np.uint8)


def subtractor(method):
    """A fresh model of ``method`` with its defaults, as a function frame -> mask."""
    if method == "gaussmix":
        from gaussmix.video import BackgroundModel

        return BackgroundModel().apply
    if method == "single Gaussian":
        return RunningGaussian().apply
    import cv2

    model = (cv2.createBackgroundSubtractorMOG2() if method == "OpenCV MOG2"
             else cv2.createBackgroundSubtractorKNN())
    return model.apply


def masks_of(method, frames):
    apply = subtractor(method)
    return np.stack([apply(frame) for frame in frames])


def f_measure(masks, scene):
    scored = slice(scene.scored_from, None)
    found, truth = masks[scored] == 255, scene.truth[scored] == 255
    tp = np.count_nonzero(found & truth)
    fp = np.count_nonzero(found & ~truth)
    fn = np.count_nonzero(~found & truth)
    return 2 * tp / max(2 * tp + fp + fn, 1)


def shadow_shares(masks, scene):
    """Shares of the truth's shadow pixels marked shadow (127) and foreground (255)."""
    scored = slice(scene.scored_from, None)
    shadow = scene.truth[scored] == 127
    n = max(np.count_nonzero(shadow), 1)
    marked = masks[scored][shadow]
    return np.count_nonzero(marked == 127) / n, np.count_nonzero(marked == 255) / n


def tracking_scores(scene, radius=25.0):
    """Objects found and identity switches of gaussmix's tracker on ``scene``, by the CLEAR
    MOT rules (Bernardin and Stiefelhagen, 2008): an object keeps last frame's track while
    that track is within ``radius`` pixels of it; the others are matched by the least total
    distance within ``radius``; a switch is an object matched to another track than at its
    last match."""
    from scipy.optimize import linear_sum_assignment

    from gaussmix.video import BackgroundModel, Tracker
    from gaussmix.video.tracking import follow

    height, width = scene.frames.shape[1:3]
    n_objects = scene.centres.shape[1]
    last_id = [None] * n_objects
    switches, visible = 0, np.zeros(n_objects)
    ids_per_object = [dict() for _ in range(n_objects)]
    steps = follow(scene.frames, BackgroundModel(), Tracker())
    for t, (_, shown) in enumerate(steps):
        centres = scene.centres[t]
        inside = ((centres[:, 0] >= 0) & (centres[:, 0] < width) & (centres[:, 1] >= 0)
                  & (centres[:, 1] < height))
        visible += inside
        positions = {track.id: np.array([d.x, d.y]) for track, d in shown}
        matches = {}
        for k in np.flatnonzero(inside):
            kept = last_id[k]
            if kept in positions and np.linalg.norm(positions[kept] - centres[k]) <= radius:
                matches[k] = kept
        objects = [k for k in np.flatnonzero(inside) if k not in matches]
        free = [i for i in positions if i not in matches.values()]
        if objects and free:
            cost = np.array([[np.linalg.norm(positions[i] - centres[k]) for i in free]
                             for k in objects])
            for r, c in zip(*linear_sum_assignment(cost)):
                if cost[r, c] <= radius:
                    matches[objects[r]] = free[c]
        for k, track_id in matches.items():
            ids_per_object[k][track_id] = ids_per_object[k].get(track_id, 0) + 1
            if last_id[k] is not None and last_id[k] != track_id:
                switches += 1
            last_id[k] = track_id
    found_objects = sum(1 for k in range(n_objects) if ids_per_object[k]
                        and max(ids_per_object[k].values()) >= 0.5 * visible[k])
    return found_objects, n_objects, switches


def speed_worker(method, size, n_frames):
    """In its own process: frames per second of ``method`` (the best of two runs) and the
    resident memory its model holds after a run (the growth of the process's resident set
    from just before the model was made: its state and buffers; the frames, the libraries and
    the compiled code are loaded before)."""
    import psutil

    from gaussmix.video import scenes

    scene = scenes.noise(n_frames=n_frames + 1, size=size)
    warm = subtractor(method)
    for frame in scene.frames[:3, :8, :8]:  # imports, compiles
        warm(np.ascontiguousarray(frame))
    process = psutil.Process()
    best, held = np.inf, None
    for _ in range(2):
        before = process.memory_info().rss
        apply = subtractor(method)
        apply(scene.frames[0])
        start = time.perf_counter()
        for frame in scene.frames[1:]:
            apply(frame)
        best = min(best, time.perf_counter() - start)
        if held is None:
            held = process.memory_info().rss - before
        del apply
    print(json.dumps({"fps": n_frames / best, "peak_mib": held / 2**20}))


def speed(method, size, n_frames):
    command = [sys.executable, os.path.abspath(__file__), "--worker",
               json.dumps([method, list(size), n_frames])]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=None, help="frames per scene "
                        "(default: each scene's own)")
    parser.add_argument("--speed-frames", type=int, default=150)
    parser.add_argument("--out", default=None, help="also write the tables as Markdown here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        method, size, n_frames = json.loads(args.worker)
        speed_worker(method, tuple(size), n_frames)
        return
    from gaussmix.video import scenes

    quality, shadows, tracking = [], [], []
    for name, make in scenes.SCENES.items():
        scene = make() if args.frames is None else make(n_frames=args.frames)
        row = [name]
        for method in METHODS:
            masks = masks_of(method, scene.frames)
            row.append(f"{f_measure(masks, scene):.3f}")
            if name == "shadows":
                as_shadow, as_object = shadow_shares(masks, scene)
                shadows.append([method, f"{as_shadow:.1%}", f"{as_object:.1%}"])
        quality.append(row)
        found, total, switches = tracking_scores(scene)
        tracking.append([name, f"{found} of {total}", switches])
        print(" | ".join(row), f"| tracking {found}/{total}, {switches} switches", flush=True)
    speeds = []
    for method in METHODS:
        cells = [method]
        for size in ((240, 320), (480, 640)):
            measured = speed(method, size, args.speed_frames)
            cells += [f"{measured['fps']:.0f}", f"{measured['peak_mib']:.0f}"]
        speeds.append(cells)
        print(" | ".join(cells), flush=True)
    tables = [
        "F-measure of the foreground, each method with its defaults (frames 20 on):\n\n"
        + markdown_table(["scene", *METHODS], quality),
        "Cast shadows (the shadows scene): share of the shadow pixels marked\n\n"
        + markdown_table(["method", "as shadow", "as foreground"], shadows),
        f"Speed on colour frames, {args.speed_frames} frames of the noise scene (best of two "
        "runs), each method in its own process, and the resident memory its model holds "
        "after a run (the model's state and buffers):\n\n"
        + markdown_table(["method", "fps 320x240", "MiB 320x240", "fps 640x480",
                          "MiB 640x480"], speeds),
        "Tracking over gaussmix's masks (`gaussmix.video.track` defaults):\n\n"
        + markdown_table(["scene", "objects found", "identity switches"], tracking),
    ]
    import cv2

    emit(tables, args.out, f"OpenCV {cv2.__version__}.")


if __name__ == "__main__":
    main()
