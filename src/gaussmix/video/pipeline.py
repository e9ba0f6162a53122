"""``gaussmix track``'s work: a video in, masks, an annotated video, tracks.csv and a report
out, written as one run (nothing of a stopped run is left beside the earlier run's files)."""

from __future__ import annotations

import os
import time

ANNOTATED = ("mp4", "gif", "none")


def track_video(video, folder, reporter, background=None, detection=None, tracking=None,
                annotated="mp4", masks=True, max_frames=None):
    """Track the moving objects of ``video`` into ``folder``.

    Parameters
    ----------
    video : Video
        A video file or a folder of pictures, opened and checked by
        :func:`~gaussmix.video.files.open_video`.
    folder : str
        Output folder, created and checked by the caller.
    reporter : progress reporter (``gaussmix.imaging.progress``)
    background : dict, optional
        :class:`~gaussmix.video.BackgroundModel` parameters.
    detection : dict, optional
        :func:`~gaussmix.video.detect` parameters (``min_area``, ``clean``, ``join``).
    tracking : dict, optional
        :class:`~gaussmix.video.Tracker` parameters.
    annotated : {'mp4', 'gif', 'none'}, default='mp4'
    masks : bool, default=True
        Write each frame's mask as ``masks/NNNNNN.png``.
    max_frames : int, optional
        Stop after this many frames.

    Returns
    -------
    report : dict
        What was read and found, and ``files``: every file written (report.json last).
    """
    from PIL import Image

    from ..imaging.files import publish_run, staged_run, write_png
    from .background import BackgroundModel
    from .files import AnnotatedWriter, annotate, tracks_csv
    from .tracking import Tracker, detect

    model = BackgroundModel(**(background or {}))
    model._check_parameters()
    tracker = Tracker(**(tracking or {}))
    start = time.perf_counter()
    names, trails, n_frames = [], {}, 0
    total = video.n_frames if max_frames is None else min(video.n_frames or max_frames,
                                                          max_frames)
    with staged_run(folder) as staging:
        if masks:
            os.makedirs(os.path.join(staging, "masks"))
            names.append("masks")
        writer = None
        if annotated != "none":
            names.append(f"annotated.{annotated}")
            writer = AnnotatedWriter(os.path.join(staging, names[-1]), video.fps, annotated)
        with reporter.stage("tracking", total) as advance:
            for frame in _first(video.frames(), max_frames):
                mask = model.apply(frame)
                shown = tracker.update(detect(mask, n_frames, **(detection or {})))
                if masks:
                    Image.fromarray(mask).save(os.path.join(staging, "masks",
                                                            f"{n_frames:06d}.png"))
                if writer is not None:
                    writer.add(annotate(frame, mask, shown, trails))
                n_frames += 1
                advance(1, f"{len(shown)} objects")
        if writer is not None:
            writer.close()
        tracks = tracker.tracks()
        with open(os.path.join(staging, "tracks.csv"), "w", encoding="utf-8") as f:
            f.write(tracks_csv(tracks))
        names.append("tracks.csv")
        write_png(os.path.join(staging, "background.png"), model.background_image())
        names.append("background.png")
        seconds = time.perf_counter() - start
        report = {
            "input": os.path.abspath(video.path), "frames": n_frames,
            "frame_shape": list(video.shape), "fps": video.fps,
            "seconds": round(seconds, 3), "frames_per_second": round(n_frames / seconds, 1),
            "background": model.get_params(), "detection": detection or {},
            "tracking": tracker.get_params(),
            "tracks": [{"id": t.id, "first_frame": int(t.frames[0]),
                        "last_frame": int(t.frames[-1]), "frames_seen": t.seen}
                       for t in tracks],
        }
        written = publish_run(staging, folder, names, report)
    return {**report, "files": written}


def _first(frames, max_frames):
    for index, frame in enumerate(frames):
        if max_frames is not None and index >= max_frames:
            return
        yield frame


def summary(report):
    """One line for the terminal."""
    n = len(report["tracks"])
    return (f"{report['frames']} frames at {report['frames_per_second']:.0f} frames per "
            f"second; {n} track{'s' * (n != 1)}; wrote "
            f"{', '.join(os.path.basename(f) for f in report['files'])} to "
            f"{os.path.dirname(report['files'][-1])}")

