"""The studio's web application (Starlette): the page, and the HTTP API it uses.

    POST   /api/jobs                       multipart: image (a file) or sample (a name), and
                                           mode, k, seed, color_scale, max_pixels, threshold,
                                           keep_light, max_iter -> 202 {"id": ...}
    GET    /api/jobs/{id}                  the job's state (see ``jobs.Job.snapshot``)
    GET    /api/jobs/{id}/events           the same, as Server-Sent Events, as they happen
    GET    /api/jobs/{id}/preview.png      the latest preview while EM runs
    GET    /api/jobs/{id}/renders/{name}.png?sharpen=&tone=&peak=&samples=&seed=
    GET    /api/jobs/{id}/model.npz        the fitted model (``gaussmix.load`` reads it)
    GET    /api/jobs/{id}/report.json
    DELETE /api/jobs/{id}                  cancel a running job, forget a finished one
    GET    /api/samples                    the bundled pictures, renders and limits

Every error is JSON ``{"error": "one sentence"}`` (with ``"field"``, the field's name, when
one field is wrong): 400 a bad field, 403 a request to another host name or a change from
another site (``doors``), 404 an unknown job or render, 408 an upload that stalls, 413 an upload
over the size limit or a picture over the pixel limit (read from its header, before decoding),
415 not a picture (or a truncated one), 429 a full queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import json
import math
import threading
from collections import OrderedDict
from importlib import resources

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser
from starlette.middleware import Middleware
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .._foundations.validation import MAX_SEED
from ..imaging import render
from ..imaging.files import MAX_READ_PIXELS
from ..imaging.pipeline import (
    COLOUR_SCALE_RANGE,
    MODES,
    RENDERS,
    SHARPEN_RANGE,
    Renderer,
)
from .doors import Doors
from .jobs import (
    FINISHED,
    MAX_QUEUED,
    SAMPLES,
    JobStore,
    QueueFull,
    Settings,
    load_picture,
    png_bytes,
)

MAX_UPLOAD_BYTES = 25 * 2**20
# An upload over the limit is still read (and dropped) up to this size, so that clients that
# send the whole body before reading the answer (browsers' fetch, Python's urllib) get the
# 413 sentence and not a reset connection.
DRAIN_UPLOAD_BYTES = 256 * 2**20
# An upload from which nothing arrives for this long, or that takes longer in all, is
# refused (408): a stalled client does not hold the server's memory.
UPLOAD_IDLE_SECONDS = 15.0
UPLOAD_SECONDS = 300.0
# Pictures declaring more pixels are refused from their header (larger ones than
# MAX_READ_PIXELS are read reduced).
MAX_UPLOAD_PIXELS = 50_000_000
# Pictures of formats other than PNG and JPEG are decoded at the door up to this many pixels.
DOOR_DECODE_PIXELS = 2**22
MAX_COMPONENTS = 5000
MAX_ITERATIONS = 1000
# Dots a live samples render may ask for: about a second on 2 cores.
MAX_LIVE_SAMPLES = 10_000_000
FIELDS = ("image", "sample", "mode", "k", "seed", "color_scale", "max_pixels", "threshold",
          "keep_light", "max_iter")
STATIC = resources.files("gaussmix.studio") / "static"


class ApiError(Exception):
    """A request the API refuses: its HTTP status and one sentence."""

    def __init__(self, status, message, field=None, headers=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = headers


def create_app(workers=1, max_upload_bytes=MAX_UPLOAD_BYTES,
               max_upload_pixels=MAX_UPLOAD_PIXELS, listen_host="127.0.0.1",
               max_queued=MAX_QUEUED, upload_idle_seconds=UPLOAD_IDLE_SECONDS,
               upload_seconds=UPLOAD_SECONDS):
    """The studio application with its own :class:`~gaussmix.studio.jobs.JobStore`.

    Parameters
    ----------
    workers : int
        Fits that run at once (1 or 2).
    max_upload_bytes, max_upload_pixels : int
        Limits of an uploaded picture (413 beyond).
    listen_host : str
        The address the server listens on: requests must name it or a loopback name
        (see ``doors``).
    max_queued : int
        Jobs that may wait for a worker (429 beyond).
    upload_idle_seconds, upload_seconds : float
        An upload is refused (408) when nothing of it arrives for ``upload_idle_seconds``, or
        when it takes longer than ``upload_seconds`` in all.
    """
    store = JobStore(workers, max_queued)
    renderers = _RendererCache()
    limits = _UploadLimits(max_upload_bytes, upload_idle_seconds, upload_seconds)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        store.close()

    async def index(request):
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    async def samples(request):
        return JSONResponse({
            "samples": list(SAMPLES), "renders": list(RENDERS), "modes": list(MODES),
            "tone": _knots_text(render.DEFAULT_TONE_KNOTS),
            "peak": render.DEFAULT_PEAK_QUANTILE, "sharpen_range": list(SHARPEN_RANGE),
            "max_upload_bytes": max_upload_bytes, "max_samples": MAX_LIVE_SAMPLES,
            "upload_errors": {"too_big": limits.too_big(), "not_a_picture": NOT_A_PICTURE}})

    async def favicon(request):
        return FileResponse(str(STATIC / "favicon.png"), media_type="image/png",
                            headers={"Cache-Control": "public, max-age=86400"})

    async def sample_thumbnail(request):
        name = request.path_params["name"]
        if not name.endswith(".png") or name[:-4] not in SAMPLES:
            raise ApiError(404, f"No sample {name!r}; the samples are "
                                f"{', '.join(f'{s}.png' for s in SAMPLES)}.")
        data = await run_in_threadpool(_thumbnail, name[:-4])
        return Response(data, media_type="image/png",
                        headers={"Cache-Control": "public, max-age=86400"})

    async def submit(request):
        form = await _read_form(request, limits)
        try:
            picture, sample, settings = await _job_fields(form, max_upload_pixels)
        finally:
            await form.close()
        try:
            job = store.submit(settings, picture=picture, sample=sample)
        except QueueFull as exc:
            raise ApiError(429, str(exc), headers={"Retry-After": "10"}) from None
        return JSONResponse({"id": job.id}, status_code=202)

    async def job_state(request):
        return JSONResponse(_snapshot(_job(store, request)))

    async def events(request):
        job = _job(store, request)

        async def stream():
            sent = 0
            while True:
                while sent < len(job.history):
                    state = _json_safe(job.history[sent])
                    sent += 1
                    yield f"data: {json.dumps(state)}\n\n"
                    if state["state"] in FINISHED:
                        return
                await asyncio.sleep(0.05)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    async def preview(request):
        job = _job(store, request)
        if job.preview is None:
            raise ApiError(404, f"Job {job.id} has no preview yet (it is {job.state}).")
        return Response(job.preview, media_type="image/png",
                        headers={"Cache-Control": "no-store"})

    async def render_png(request):
        job = _done_job(store, request)
        name = request.path_params["name"]
        if not name.endswith(".png") or name[:-4] not in job.renders:
            known = ", ".join(f"{r}.png" for r in sorted(job.renders))
            raise ApiError(404, f"No render {name!r} for this job; choose from {known}.")
        name = name[:-4]
        options = _render_options(request.query_params)
        if not options:
            return _png(job.renders[name])
        data = await run_in_threadpool(_render, renderers, job, name, options)
        return _png(data)

    async def model_file(request):
        job = _done_job(store, request)
        return Response(job.model_file, media_type="application/octet-stream", headers={
            "Content-Disposition": f'attachment; filename="gaussmix-{job.id}.npz"'})

    async def report(request):
        job = _done_job(store, request)
        return JSONResponse(job.report, headers={
            "Content-Disposition": f'attachment; filename="report-{job.id}.json"'})

    async def delete(request):
        job = store.cancel_or_forget(request.path_params["job_id"])
        if job is None:
            raise ApiError(404, f"No job {request.path_params['job_id']!r}; it was never "
                                "submitted or has been forgotten.")
        renderers.forget(job.id)
        return JSONResponse({"id": job.id, "state": job.state})

    routes = [
        Route("/", index),
        Route("/favicon.ico", favicon),
        Route("/api/samples", samples),
        Route("/api/samples/{name}", sample_thumbnail),
        Route("/api/jobs", submit, methods=["POST"]),
        Route("/api/jobs/{job_id}", job_state),
        Route("/api/jobs/{job_id}", delete, methods=["DELETE"]),
        Route("/api/jobs/{job_id}/events", events),
        Route("/api/jobs/{job_id}/preview.png", preview),
        Route("/api/jobs/{job_id}/renders/{name}", render_png),
        Route("/api/jobs/{job_id}/model.npz", model_file),
        Route("/api/jobs/{job_id}/report.json", report),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]
    handlers = {ApiError: _api_error, HTTPException: _http_error}
    app = Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan,
                    middleware=[Middleware(Doors, listen_host=listen_host)])
    app.state.store = store
    return app


async def _api_error(request, exc):
    body = {"error": exc.message} if exc.field is None else {"error": exc.message,
                                                              "field": exc.field}
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


async def _http_error(request, exc):
    messages = {404: f"Nothing at {request.url.path}; see the API in the README.",
                405: f"{request.method} is not allowed on {request.url.path}."}
    return JSONResponse({"error": messages.get(exc.status_code, str(exc.detail))},
                        status_code=exc.status_code)


def _snapshot(job):
    return _json_safe(job.snapshot())


def _json_safe(state):
    """A job's state with a log-likelihood JSON can carry (None for an infinite one)."""
    state = dict(state)
    value = state["log_likelihood"]
    if value is not None and not math.isfinite(value):
        state["log_likelihood"] = None
    return state


def _job(store, request):
    job = store.get(request.path_params["job_id"])
    if job is None:
        raise ApiError(404, f"No job {request.path_params['job_id']!r}; it was never submitted "
                            "or has been forgotten.")
    return job


def _done_job(store, request):
    job = _job(store, request)
    if job.state != "done":
        raise ApiError(404, f"Job {job.id} is {job.state}: renders, the model and the report "
                            "come when it is done.")
    return job


def _png(data):
    return Response(data, media_type="image/png",
                    headers={"Cache-Control": "private, max-age=3600"})


class _UploadLimits:
    """How much of a request body is read, and how long it may take."""

    def __init__(self, max_bytes, idle_seconds, total_seconds):
        self.max_bytes = max_bytes
        self.idle_seconds = idle_seconds
        self.total_seconds = total_seconds

    def too_big(self):
        return (f"The upload is over {self.max_bytes / 2**20:.3g} MB; send a smaller picture "
                f"(a picture over {MAX_READ_PIXELS} pixels is read reduced anyway).")

    def stalled(self):
        return (f"The upload stalled (nothing arrived for {self.idle_seconds:g} s, or it took "
                f"over {self.total_seconds:g} s); check the connection and send it again.")


NOT_A_PICTURE = ("The upload is not a picture that can be read; send a PNG, JPEG or another "
                 "common image file.")


async def _read_form(request, limits):
    """The multipart form of a request: refused (413) beyond ``limits.max_bytes`` whatever
    its headers say, after reading the rest of the body (up to ``DRAIN_UPLOAD_BYTES``) so
    that the client reads the answer; refused (408) when the upload stalls."""
    content_type = request.headers.get("content-type", "")
    urlencoded = content_type.startswith("application/x-www-form-urlencoded")
    if not (urlencoded or content_type.startswith("multipart/form-data")):
        raise ApiError(400, "Send the job as multipart/form-data with an 'image' file or a "
                            "'sample' name.")
    declared = request.headers.get("content-length")
    chunks = _timed_chunks(request, limits)
    if declared is not None and declared.isdigit() and int(declared) > limits.max_bytes:
        if int(declared) <= DRAIN_UPLOAD_BYTES:
            async for _ in chunks:
                pass
        raise ApiError(413, limits.too_big(), headers={"Connection": "close"})

    async def limited():
        received = 0
        async for chunk in chunks:
            received += len(chunk)
            if received > limits.max_bytes:
                async for rest in chunks:
                    received += len(rest)
                    if received > DRAIN_UPLOAD_BYTES:
                        break
                raise ApiError(413, limits.too_big(), headers={"Connection": "close"})
            yield chunk

    if urlencoded:  # a sample needs no file: ``curl -d sample=horse`` is enough
        parser = FormParser(request.headers, limited())
    else:
        parser = MultiPartParser(request.headers, limited(), max_files=1,
                                 max_fields=len(FIELDS), max_part_size=1024)
    try:
        return await parser.parse()
    except MultiPartException as exc:
        raise ApiError(400, f"The form cannot be read ({exc}); send one 'image' file or a "
                            "'sample' name and the settings as fields.") from None


async def _timed_chunks(request, limits):
    """The request body's chunks; 408 when one takes ``limits.idle_seconds`` to arrive or the
    whole takes ``limits.total_seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limits.total_seconds
    stream = request.stream().__aiter__()
    while True:
        wait = min(limits.idle_seconds, deadline - loop.time())
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), max(wait, 0.0))
        except StopAsyncIteration:
            return
        except asyncio.TimeoutError:
            raise ApiError(408, limits.stalled(), headers={"Connection": "close"}) from None
        yield chunk


async def _job_fields(form, max_pixels):
    """The picture (bytes) or sample, and the :class:`Settings`, of a job form."""
    unknown = [name for name in form if name not in FIELDS]
    if unknown:
        raise ApiError(400, f"Unknown field {unknown[0]!r}; the fields are "
                            f"{', '.join(FIELDS)}.")
    upload, sample = form.get("image"), form.get("sample")
    if (upload is None) == (sample is None):
        raise ApiError(400, "Send either an 'image' file or a 'sample' name (one of "
                            f"{', '.join(SAMPLES)}), not both or neither.")
    picture = None
    if sample is not None:
        if sample not in SAMPLES:
            raise ApiError(400, f"Unknown sample {sample!r}; choose from "
                                f"{', '.join(SAMPLES)}.")
    else:
        if isinstance(upload, str):
            raise ApiError(400, "The 'image' field must be a file upload.")
        picture = await upload.read()
        await run_in_threadpool(_check_picture, picture, max_pixels)
    settings = Settings(
        mode=_choice(form, "mode", MODES, "auto"),
        k=_number(form, "k", int, 1, MAX_COMPONENTS, None),
        seed=_number(form, "seed", int, 0, MAX_SEED, 0),
        color_scale=_number(form, "color_scale", float, *COLOUR_SCALE_RANGE, 1.0),
        max_pixels=_number(form, "max_pixels", int, 4, MAX_READ_PIXELS, None),
        threshold=_number(form, "threshold", float, 0.0, 1.0, None),
        keep_light=_flag(form, "keep_light"),
        max_iter=_number(form, "max_iter", int, 1, MAX_ITERATIONS, 100),
    )
    return picture, sample, settings


def _check_picture(data, max_pixels):
    """Refuse what is not a picture (415) or declares too many pixels (413, from the header,
    before decoding), then check it to its end so that a truncated or damaged file is refused
    now (415) and not by the worker later: a PNG by its chunks' checksums, a JPEG decoded at
    an eighth of its size, other formats decoded up to ``DOOR_DECODE_PIXELS`` (beyond, the
    worker alone decodes them: the server never holds a large decoded picture)."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    too_many = "The picture is {}x{} pixels, over the limit of {}; shrink it first."
    unreadable = (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # sized here
        try:
            img = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError:
            raise ApiError(413, f"The picture declares more than {2 * Image.MAX_IMAGE_PIXELS} "
                                f"pixels, over the limit of {max_pixels}; shrink it "
                                "first.", field="image") from None
        except unreadable:
            raise ApiError(415, NOT_A_PICTURE, field="image") from None
        with img:
            width, height = img.size
            if width * height > max_pixels:
                raise ApiError(413, too_many.format(width, height, max_pixels), field="image")
            try:
                if img.format == "PNG":
                    img.verify()  # every chunk's checksum to the end: nothing decompressed
                elif img.format == "JPEG" or width * height <= DOOR_DECODE_PIXELS:
                    img.draft(img.mode, (max(1, width // 8), max(1, height // 8)))
                    img.load()
            except unreadable as exc:
                raise ApiError(415, f"The picture is truncated or damaged ({exc}); send the "
                                    "whole file again.", field="image") from None


def _choice(form, name, choices, default):
    value = form.get(name)
    if value is None or value == "":
        return default
    if value not in choices:
        raise ApiError(400, f"{name} must be one of {', '.join(choices)}, got {value!r}.",
                       field=name)
    return value


def _number(form, name, kind, low, high, default):
    return _parse_number(form.get(name), name, kind, low, high, default)


def _parse_number(value, name, kind, low, high, default):
    """A field's number within [low, high] (400 otherwise); ``default`` when absent."""
    if value is None or value == "":
        return default
    if not isinstance(value, str):
        raise ApiError(400, f"{name} must be a number, not a file.", field=name)
    word = "a whole number" if kind is int else "a number"
    try:
        number = kind(value)
    except ValueError:
        raise ApiError(400, f"{name} must be {word}, got {value!r}.", field=name) from None
    if not (math.isfinite(number) and low <= number <= high):
        raise ApiError(400, f"{name} must lie in [{low:g}, {high:g}], got {value!r}.",
                       field=name)
    return number


def _flag(form, name):
    value = form.get(name)
    if value is None or value == "":
        return False
    text = value.lower() if isinstance(value, str) else ""
    if text not in ("true", "false", "1", "0", "on", "off"):
        raise ApiError(400, f"{name} must be true or false, got {value!r}.", field=name)
    return text in ("true", "1", "on")


def _render_options(query):
    """Validated render settings from a query string (400 for a bad one); only those given."""
    unknown = [name for name in query
               if name not in ("sharpen", "tone", "peak", "samples", "seed")]
    if unknown:
        raise ApiError(400, f"Unknown query parameter {unknown[0]!r}; use sharpen, tone, peak, "
                            "samples or seed.")
    options = {}
    if "sharpen" in query:
        options["sharpen"] = _parse_number(query["sharpen"], "sharpen", float,
                                           *SHARPEN_RANGE, 1.0)
    if "peak" in query:
        peak = _parse_number(query["peak"], "peak", float, 0.0, 1.0, None)
        if peak is not None and peak <= 0.0:
            raise ApiError(400, f"peak must lie in (0, 1], got {query['peak']!r}.",
                           field="peak")
        options["peak"] = peak
    if "samples" in query:
        options["samples"] = _parse_number(query["samples"], "samples", int, 1,
                                           MAX_LIVE_SAMPLES, None)
    if "seed" in query:
        options["seed"] = _parse_number(query["seed"], "seed", int, 0, MAX_SEED, None)
    if "tone" in query:
        try:
            options["tone"] = render.check_tone_knots(render.parse_tone_knots(query["tone"]))
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
    return {name: value for name, value in options.items() if value is not None}


@functools.cache
def _thumbnail(name, size=160):
    """A bundled sample as a small PNG (at most ``size`` pixels on its longer side)."""
    from PIL import Image

    picture = load_picture(sample=name)
    if picture.dtype == bool:  # the horse: white paper (True), a black silhouette
        picture = picture.astype(np.uint8) * 255
    img = Image.fromarray(picture)
    img.thumbnail((size, size))
    return png_bytes(np.asarray(img))


def _knots_text(knots):
    return ",".join(f"{x:g}:{y:g}" for x, y in knots)


class _RendererCache:
    """A few :class:`~gaussmix.imaging.pipeline.Renderer` s per job (one per sharpen), so
    that moving another slider reuses the (x, y) grid."""

    def __init__(self, size=4):
        self.size = size
        self.entries = OrderedDict()
        self.lock = threading.Lock()  # renders run in the server's worker threads

    def get(self, job, sharpen):
        key = (job.id, sharpen)
        with self.lock:
            renderer = self.entries.get(key)
            if renderer is None:
                renderer = self.entries[key] = Renderer(job.painting, sharpen)
                while len(self.entries) > self.size:
                    self.entries.popitem(last=False)
            self.entries.move_to_end(key)
            return renderer

    def forget(self, job_id):
        with self.lock:
            for key in [k for k in self.entries if k[0] == job_id]:
                del self.entries[key]


def _render(renderers, job, name, options):
    """PNG bytes of render ``name`` of a finished job with the query's settings."""
    renderer = renderers.get(job, options.get("sharpen", 1.0))
    image = renderer.render(name, n_samples=options.get("samples"),
                            tone_knots=options.get("tone", render.DEFAULT_TONE_KNOTS),
                            peak_quantile=options.get("peak", render.DEFAULT_PEAK_QUANTILE),
                            seed=options.get("seed"))
    return png_bytes(image)
