"""The studio's jobs: each picture is fitted in a worker process of its own, at most
``workers`` at a time, the rest queued in order; the server keeps what a finished job left
(the model, its default renders) and renders new settings from it.

A worker sends what happens as it happens through a pipe: progress after each EM iteration
(with a preview render every few), then the model file, the report and every render of the
painting at the default settings. Cancelling a job ends its process, so its memory goes
with it. Everything a request can touch is in :class:`Job` objects keyed by random ids: no
request's text ever names a file. A worker process starts from this module; the painting code
(numpy, scikit-image, Pillow, the estimators) is imported inside the functions that use it.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass, field

STATES = ("queued", "fitting", "rendering", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")
# Finished jobs kept for their renders; older ones are forgotten (their memory freed) as
# soon as a newer one finishes.
KEPT_JOBS = 16
# Jobs that may wait for a worker; more are refused (each holds its upload, 25 MB at most).
MAX_QUEUED = 8
# A preview render every this many EM iterations (and after the first).
PREVIEW_EVERY = 5
# Previews are drawn this many pixels across at most: quick enough between iterations.
PREVIEW_PIXELS = 256 * 256
# The renders of a finished job, in the gallery's order: the paintings first.
GALLERY_ORDER = ("conditional-mean", "samples", "density-mapped", "density", "components",
                 "contour", "ellipses")
# Pictures that ship with scikit-image (offline), by the names the page offers.
SAMPLES = ("astronaut", "horse", "coffee", "chelsea", "rocket", "camera", "text")


@dataclass(frozen=True)
class Settings:
    """What a job paints with (``gaussmix paint``'s options); None: the painting's default."""

    mode: str = "auto"
    k: int | None = None
    seed: int = 0
    color_scale: float = 1.0
    max_pixels: int | None = None
    threshold: float | None = None
    keep_light: bool = False
    max_iter: int = 100

    def paint_options(self):
        return {"mode": self.mode, "n_components": self.k, "seed": self.seed,
                "colour_scale": self.color_scale, "max_pixels": self.max_pixels,
                "threshold": self.threshold, "keep": "light" if self.keep_light else "dark",
                "max_iter": self.max_iter}


@dataclass
class Job:
    """One picture's fit and what it left. Every change appends the new :meth:`snapshot` to
    ``history`` (at most ``max_iter`` + 4 entries), which the event streams replay, so none
    is missed however quickly EM runs."""

    id: str
    settings: Settings
    state: str = "queued"
    iteration: int = 0
    log_likelihood: float | None = None
    error: str | None = None
    report: dict | None = None
    preview: bytes | None = None
    model_file: bytes | None = None
    painting: object = None
    renders: dict = field(default_factory=dict)
    finished_at: float | None = None
    process: object = None
    history: list = field(default_factory=list)
    picture: bytes | None = field(default=None, repr=False)  # the upload, until it is fitted

    def snapshot(self):
        """The job as the API shows it."""
        return {"id": self.id, "state": self.state, "iteration": self.iteration,
                "max_iter": self.settings.max_iter, "log_likelihood": self.log_likelihood,
                "error": self.error, "report": self.report,
                "renders": list(self.renders), "preview": self.preview is not None}


class QueueFull(Exception):
    """More jobs wait than the store takes (``max_queued``)."""


class JobStore:
    """Jobs by id, their worker processes and the queue.

    Parameters
    ----------
    workers : int
        Fits that run at once (1 or 2); more wait in order.
    max_queued : int
        Jobs that may wait at once; :meth:`submit` raises :class:`QueueFull` beyond.
    """

    def __init__(self, workers=1, max_queued=MAX_QUEUED):
        self.jobs = {}
        self.lock = threading.Lock()
        self.slots = threading.Semaphore(workers)
        self.max_queued = max_queued
        self.closed = False
        self._context = multiprocessing.get_context("spawn")

    def submit(self, settings, picture=None, sample=None):
        """Queue a job for an uploaded picture (bytes) or a bundled sample (name).

        Raises
        ------
        QueueFull
            When ``max_queued`` jobs wait already.
        """
        job = Job(id=secrets.token_urlsafe(9), settings=settings, picture=picture)
        with self.lock:
            waiting = sum(j.state == "queued" for j in self.jobs.values())
            if waiting >= self.max_queued:
                raise QueueFull(f"{waiting} pictures wait for a worker already; wait for one "
                                "to finish, or cancel one, and send this one again.")
            self._changed(job)
            self.jobs[job.id] = job
        # The thread holds the job, not the upload: cancelling the job frees the bytes.
        threading.Thread(target=self._run, args=(job, sample), daemon=True).start()
        return job

    def get(self, job_id):
        return self.jobs.get(job_id)

    def cancel_or_forget(self, job_id):
        """Cancel an unfinished job (its process ends, its memory is freed; it stays listed
        as cancelled); forget a finished one. Returns the job, or None when unknown."""
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None:
                return None
            if job.state in FINISHED:
                del self.jobs[job_id]
                return job
            self._finish(job, "cancelled")
            process = job.process
        if process is not None:
            process.terminate()
        return job

    def close(self):
        """End every worker (the server is stopping)."""
        with self.lock:
            self.closed = True
            processes = [j.process for j in self.jobs.values() if j.process is not None]
            for job in list(self.jobs.values()):
                if job.state not in FINISHED:
                    self._finish(job, "cancelled")
        for process in processes:
            process.terminate()

    def update(self, job, **changes):
        """Change a job's fields (unless it has finished) and record the change."""
        with self.lock:
            if job.state in FINISHED and changes.get("state") not in FINISHED:
                return
            for name, value in changes.items():
                setattr(job, name, value)
            self._changed(job)

    def _finish(self, job, state, **changes):
        """(Lock held.) End a job: keep what its state needs, free the rest."""
        for name, value in changes.items():
            setattr(job, name, value)
        job.state = state
        job.finished_at = time.time()
        job.picture = None
        if state != "done":
            job.painting, job.renders, job.model_file, job.preview = None, {}, None, None
        self._changed(job)
        self._forget_old()

    def _changed(self, job):
        """(Lock held.) Record the job's new state for the event streams."""
        job.history.append(job.snapshot())

    def _forget_old(self):
        """(Lock held.) Forget the oldest finished jobs beyond ``KEPT_JOBS``."""
        finished = sorted((j for j in self.jobs.values() if j.state in FINISHED),
                          key=lambda j: j.finished_at)
        for job in finished[:max(0, len(finished) - KEPT_JOBS)]:
            del self.jobs[job.id]

    def _run(self, job, sample):
        with self.slots:
            with self.lock:
                if job.state != "queued" or self.closed:
                    return
                receive, send = self._context.Pipe(duplex=False)
                process = self._context.Process(
                    target=work, args=(send, job.settings, job.picture, sample), daemon=True)
                job.process = process
                job.state = "fitting"
                job.picture = None  # the process has its own copy once started
                self._changed(job)
                try:
                    process.start()
                except (OSError, RuntimeError) as exc:
                    job.process = None
                    self._finish(job, "failed", error=f"Cannot start a worker process "
                                 f"({exc}); free some memory and try again.")
                    return
            send.close()
            try:
                self._follow(job, receive)
            finally:
                receive.close()
                process.join(timeout=5)
                job.process = None

    def _follow(self, job, receive):
        """Apply the worker's messages to the job until it ends or its process does."""
        while True:
            try:
                kind, payload = receive.recv()
            except (EOFError, OSError):
                with self.lock:
                    if job.state not in FINISHED:
                        self._finish(job, "failed",
                                     error="The worker process stopped before the fit ended "
                                           "(out of memory?); try fewer pixels or components.")
                return
            if kind == "progress":
                self.update(job, **payload)
            elif kind == "rendering":
                self.update(job, state="rendering", report=payload)
            elif kind == "failed":
                with self.lock:
                    if job.state not in FINISHED:
                        self._finish(job, "failed", error=payload)
                return
            elif kind == "done":
                painting = _painting_from(payload)
                with self.lock:
                    if job.state not in FINISHED:
                        self._finish(job, "done", painting=painting, renders=payload["renders"],
                                     model_file=payload["model_file"],
                                     report=payload["report"])
                return


def _painting_from(payload):
    """The worker's painting, its model read back from the model file it wrote."""
    from ..imaging.pipeline import Painting
    from ..loading import load

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.npz")
        with open(path, "wb") as f:
            f.write(payload["model_file"])
        model = load(path)
    return Painting(model=model, mode=payload["mode"], picture=payload["picture"],
                    shape=tuple(payload["shape"]), factor=payload["factor"],
                    colour_scale=payload["colour_scale"], n_points=payload["n_points"],
                    image=payload["image"])


def load_picture(picture=None, sample=None):
    """The picture of a job: an uploaded file's bytes, or a bundled sample by name."""
    if sample is not None:
        from skimage import data

        return getattr(data, sample)()
    from ..imaging.files import read_image

    return read_image(io.BytesIO(picture), name="the uploaded picture")


def work(conn, settings, picture=None, sample=None):
    """A worker process: fit the picture, report progress, send the painting, exit."""
    try:
        conn.send(("done", _paint(conn, settings, picture, sample)))
    except Exception as exc:  # noqa: BLE001 - the worker reports every failure as a sentence
        from ..imaging.files import FileError
        from ..imaging.pipeline import PaintError

        if isinstance(exc, (PaintError, FileError, ValueError)):
            message = str(exc)
        else:
            message = (f"The fit failed unexpectedly ({type(exc).__name__}: {exc}); please "
                       "report it.")
        conn.send(("failed", message))
    finally:
        conn.close()


def _paint(conn, settings, picture, sample):
    import numpy as np

    from ..imaging.pipeline import Renderer, check_renders, paint

    image = load_picture(picture, sample)
    preview = _preview_frame(image, settings)

    def on_iteration(progress):
        changes = {"iteration": progress.iteration,
                   "log_likelihood": float(progress.lower_bound)}
        if progress.iteration == 1 or progress.iteration % PREVIEW_EVERY == 0:
            changes["preview"] = preview_png(progress.mixture(), *preview)
        conn.send(("progress", changes))

    painting = paint(image, renders=(), on_iteration=on_iteration, **settings.paint_options())
    conn.send(("rendering", painting.report))
    renderer = Renderer(painting)
    made = check_renders(None, painting.mode)  # every render the mode has
    renders = {name: png_bytes(renderer.render(name)) for name in GALLERY_ORDER
               if name in made}
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.npz")
        painting.model.save(path)
        with open(path, "rb") as f:
            model_file = f.read()
    return {"renders": renders, "model_file": model_file, "report": painting.report,
            "mode": painting.mode, "picture": np.asarray(painting.picture, dtype=np.float32),
            "shape": painting.shape, "factor": painting.factor,
            "colour_scale": painting.colour_scale, "n_points": painting.n_points,
            "image": np.round(painting.image * 255.0).astype(np.uint8)}


def _preview_frame(image, settings):
    """The previews' size and scale: the fitted picture's frame within ``PREVIEW_PIXELS``.

    Returns
    -------
    shape : (int, int)
    factor : float
        Model pixels per preview pixel.
    """
    from ..imaging.pipeline import DEFAULT_MAX_PIXELS, choose_mode
    from ..imaging.points import as_float_image, budget_shape

    try:
        mode = choose_mode(as_float_image(image), settings.mode)
    except ValueError:
        mode = "color"  # a bad picture or mode: paint() says so in its own sentence
    budget = DEFAULT_MAX_PIXELS[mode] if settings.max_pixels is None else settings.max_pixels
    fitted = budget_shape(image.shape[:2], budget)
    shape = budget_shape(fitted, PREVIEW_PIXELS)
    return shape, fitted[0] / shape[0]


def preview_png(model, shape, factor):
    """A small render of the mixture so far: the painting in colour, the density in black
    and white."""
    from ..imaging import render

    if model.n_features_in_ == 5:
        return png_bytes(render.render_conditional_mean(model, shape, factor))
    return png_bytes(render.render_density(render.evaluate_grid(model, shape, factor)))


def png_bytes(image):
    """A render (uint8 array, or a matplotlib Figure) as PNG bytes; quick rather than small."""
    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    if hasattr(image, "savefig"):
        import matplotlib.pyplot as plt

        image.savefig(buffer, format="png", dpi=image.dpi)
        plt.close(image)
    else:
        Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG",
                                                          compress_level=1)
    return buffer.getvalue()
