"""The studio's HTTP API end to end: jobs fit in worker processes, progress arrives as
events, renders come back at the picture's size, and every bad request gets its status and
one sentence."""

import io
import json
import time

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx2")

from PIL import Image
from starlette.testclient import TestClient

import gaussmix
from gaussmix.imaging.pipeline import RENDERS
from gaussmix.studio import app as studio_app
from gaussmix.studio.jobs import FINISHED, GALLERY_ORDER

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SMALL = {"k": "6", "max_pixels": "600", "max_iter": "12", "seed": "1"}


def png(width=40, height=30, seed=0):
    """A small colour picture as PNG bytes: two blobs of colour on grey."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[:height, :width]
    picture = np.full((height, width, 3), 128.0)
    picture[(x - 10) ** 2 + (y - 10) ** 2 < 60] = (220, 40, 40)
    picture[(x - 28) ** 2 + (y - 18) ** 2 < 50] = (30, 60, 200)
    picture += rng.normal(scale=6, size=picture.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(picture, 0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def local_client(app):
    """An in-process client addressing the app as a browser on this machine does."""
    return TestClient(app, base_url="http://127.0.0.1:8765")


@pytest.fixture(scope="module")
def client():
    with local_client(studio_app.create_app(workers=1)) as test_client:
        yield test_client


def wait(client, job_id, timeout=120):
    start = time.time()
    while time.time() - start < timeout:
        state = client.get(f"/api/jobs/{job_id}").json()
        if state["state"] in FINISHED:
            return state
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish: {state}")


@pytest.fixture(scope="module")
def done_job(client):
    response = client.post("/api/jobs", data=SMALL, files={"image": ("blobs.png", png())})
    assert response.status_code == 202
    job_id = response.json()["id"]
    events = []
    with client.stream("GET", f"/api/jobs/{job_id}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[len("data: "):]))
    return job_id, events


def test_a_small_picture_fits_and_progress_arrives_as_events(done_job):
    _, events = done_job
    states = [e["state"] for e in events]
    assert states[-1] == "done", events[-1]
    assert "fitting" in states and "rendering" in states
    assert states.index("fitting") < states.index("rendering") < states.index("done")
    iterations = [e["iteration"] for e in events if e["state"] == "fitting"]
    assert iterations == sorted(iterations) and max(iterations) >= 2
    assert all(e["max_iter"] == 12 for e in events)
    assert any(e["preview"] for e in events)
    report = events[-1]["report"]
    assert report["picture"] == {"width": 40, "height": 30}
    assert report["n_components"] == 6 and report["iterations"] == events[-1]["iteration"]
    assert np.isfinite(events[-1]["log_likelihood"])


def test_every_render_comes_back_at_the_pictures_size(client, done_job):
    job_id, _ = done_job
    state = client.get(f"/api/jobs/{job_id}").json()
    assert state["renders"] == list(GALLERY_ORDER) and set(GALLERY_ORDER) == set(RENDERS)
    for name in state["renders"]:
        response = client.get(f"/api/jobs/{job_id}/renders/{name}.png")
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        width, height = Image.open(io.BytesIO(response.content)).size
        assert height == 30, name
        assert width == 40 or (name == "contour" and width > 40), name  # + its colour bar
    preview = client.get(f"/api/jobs/{job_id}/preview.png")
    assert preview.status_code == 200 and Image.open(io.BytesIO(preview.content)).size[0] > 1


def pixels(response):
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"), dtype=float)


def test_renders_follow_the_query_and_equal_the_pipelines(client, done_job):
    job_id, _ = done_job
    base = f"/api/jobs/{job_id}/renders"
    plain = pixels(client.get(f"{base}/conditional-mean.png"))
    sharp = pixels(client.get(f"{base}/conditional-mean.png?sharpen=0.3"))
    assert np.abs(plain - sharp).mean() > 0.5  # sharpening changes the painting
    same = pixels(client.get(f"{base}/conditional-mean.png?sharpen=1"))
    np.testing.assert_array_equal(same, plain)
    tone = pixels(client.get(f"{base}/density-mapped.png?tone=0:0,0.5:0.9,1:1"))
    assert np.abs(tone - pixels(client.get(f"{base}/density-mapped.png"))).mean() > 0.5
    peak = pixels(client.get(f"{base}/density.png?peak=0.5"))
    assert np.abs(peak - pixels(client.get(f"{base}/density.png"))).mean() > 0.5
    a = pixels(client.get(f"{base}/samples.png?samples=500&seed=1"))
    b = pixels(client.get(f"{base}/samples.png?samples=500&seed=2"))
    assert (a != b).any() and (a < 255).any()
    np.testing.assert_array_equal(a, pixels(client.get(f"{base}/samples.png?samples=500&seed=1")))


def test_the_model_and_the_report_download(client, done_job, tmp_path):
    job_id, events = done_job
    response = client.get(f"/api/jobs/{job_id}/model.npz")
    assert response.status_code == 200
    path = tmp_path / "model.npz"
    path.write_bytes(response.content)
    model = gaussmix.load(path)
    assert model.n_components == 6 and model.n_features_in_ == 5
    report = client.get(f"/api/jobs/{job_id}/report.json")
    assert report.status_code == 200 and report.json() == events[-1]["report"]


def test_samples_are_offered_with_thumbnails(client):
    info = client.get("/api/samples").json()
    assert "astronaut" in info["samples"] and info["renders"] == list(RENDERS)
    for name in info["samples"]:
        thumb = client.get(f"/api/samples/{name}.png")
        assert thumb.status_code == 200 and max(Image.open(io.BytesIO(thumb.content)).size) <= 160
    assert client.get("/api/samples/nothing.png").status_code == 404
    page = client.get("/")
    assert page.status_code == 200 and "gaussmix studio" in page.text
    assert client.get("/static/studio.js").status_code == 200


def error_of(response, status, field=None):
    """The sentence of an error answer (and its field's name, when one field is wrong)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == ({"error"} if field is None else {"error", "field"}), body
    assert body.get("field") == field
    assert body["error"].endswith(".") and "\n" not in body["error"]
    return body["error"]


@pytest.mark.parametrize("fields, files, words, field", [
    ({"k": "many"}, None, "k must be a whole number", "k"),
    ({"k": "0"}, None, "k must lie in [1, 5000]", "k"),
    ({"seed": "-1"}, None, "seed must lie in", "seed"),
    ({"color_scale": "nan"}, None, "color_scale must lie in", "color_scale"),
    ({"mode": "sepia"}, None, "mode must be one of", "mode"),
    ({"keep_light": "maybe"}, None, "keep_light must be true or false", "keep_light"),
    ({"colour": "1"}, None, "Unknown field 'colour'", None),
    ({"sample": "mona-lisa"}, None, "Unknown sample 'mona-lisa'", None),
    ({}, {}, "Send either an 'image' file or a 'sample' name", None),
    ({"sample": "horse"}, {"image": ("a.png", png())}, "not both or neither", None),
])
def test_bad_fields_are_400(client, fields, files, words, field):
    if files is not None and not files and not fields:
        fields = {"k": "3"}  # neither picture nor sample
    data = {"sample": "astronaut", **fields} if files is None and "sample" not in fields \
        else fields
    response = client.post("/api/jobs", data=data, files=files or None)
    assert words in error_of(response, 400, field)


def test_bad_requests_get_their_status_and_a_sentence(client, done_job):
    job_id, _ = done_job
    assert "multipart/form-data" in error_of(client.post("/api/jobs", json={"sample": "x"}), 400)
    assert "No job 'nope'" in error_of(client.get("/api/jobs/nope"), 404)
    error_of(client.get("/api/jobs/nope/events"), 404)
    error_of(client.delete("/api/jobs/nope"), 404)
    assert "No render 'portrait.png'" in error_of(
        client.get(f"/api/jobs/{job_id}/renders/portrait.png"), 404)
    error_of(client.get(f"/api/jobs/{job_id}/renders/density.jpg"), 404)
    error_of(client.get("/api/nothing"), 404)
    error_of(client.put("/api/jobs"), 405)
    base = f"/api/jobs/{job_id}/renders/density.png"
    for query, words, field in [
            ("sharpen=0", "sharpen must lie in", "sharpen"), ("peak=0", "peak must lie in", "peak"),
            ("samples=1e9", "samples must be a whole number", "samples"),
            ("samples=100000000", "samples must lie in", "samples"),
            ("tone=0:0,0.5", "Tone knots must look like", None),
            ("tone=0:0,0:1", "densities increasing", None), ("zoom=2", "Unknown query", None)]:
        assert words in error_of(client.get(f"{base}?{query}"), 400, field)
    assert "not a picture" in error_of(
        client.post("/api/jobs", files={"image": ("x.png", b"not a picture at all")}), 415,
        "image")
    # A truncated picture is refused at the door, not by the worker later.
    noise = np.random.RandomState(0).randint(0, 255, (120, 160, 3)).astype(np.uint8)
    for name, data in (("t.png", png()), ("t.jpg", encoded(noise, "JPEG")),
                       ("t.bmp", encoded(noise, "BMP"))):
        for cut in (len(data) // 2, len(data) - 300):
            assert "truncated or damaged" in error_of(
                client.post("/api/jobs", files={"image": (name, data[:cut])}), 415, "image")


def test_the_door_never_decodes_a_large_png(monkeypatch):
    """A 25-megapixel PNG is checked by its chunks' checksums alone: nothing is decoded in the
    server (the worker decodes it, reduced)."""
    from PIL import ImageFile

    big = encoded(np.zeros((5000, 5000), np.uint8), "PNG")
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda img: decoded.append(img.size))
    studio_app._check_picture(big, 50_000_000)
    assert decoded == []
    with pytest.raises(studio_app.ApiError, match="truncated or damaged"):
        studio_app._check_picture(big[:-20], 50_000_000)
    studio_app._check_picture(encoded(np.zeros((5000, 5000), np.uint8), "BMP"), 50_000_000)
    assert decoded == []  # beyond DOOR_DECODE_PIXELS other formats are left to the worker


def test_uploads_over_the_limits_are_413_before_decoding():
    with local_client(studio_app.create_app(max_upload_bytes=50_000,
                                            max_upload_pixels=40 * 30 - 1)) as small:
        assert "over the limit of 1199" in error_of(
            small.post("/api/jobs", files={"image": ("b.png", png())}), 413, "image")
        noise = np.random.RandomState(0).randint(0, 255, (200, 200, 3)).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(noise).save(buffer, format="PNG")
        assert len(buffer.getvalue()) > 50_000
        assert "The upload is over" in error_of(
            small.post("/api/jobs", files={"image": ("n.png", buffer.getvalue())}), 413)
        # A header that declares an enormous picture is refused without decoding it.
        for side, words in [(5000, "5000x5000 pixels"), (100_000, "declares more than")]:
            assert words in error_of(
                small.post("/api/jobs", files={"image": ("h.png", forged_png(side))}), 413,
                "image")


def forged_png(side):
    """A small PNG whose header declares ``side`` x ``side`` pixels (its checksum mended)."""
    import zlib

    data = bytearray(png())
    data[16:24] = side.to_bytes(4, "big") * 2
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


def exit_code(process, timeout=10.0):
    """The worker's exit code once it has ended (None if it still runs after ``timeout``).
    The store's thread waits for the same process, and of two concurrent waits one reaps it
    while the other's ``is_alive()`` can read True for a moment (waitpid answers it ECHILD
    before the first has recorded the code): the code is polled, not asked once."""
    deadline = time.monotonic() + timeout
    while process.exitcode is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return process.exitcode


def test_a_running_job_is_cancelled_and_a_finished_one_forgotten(client, done_job):
    response = client.post("/api/jobs", data={"sample": "astronaut", "k": "300",
                                              "max_iter": "1000"})
    job_id = response.json()["id"]
    for _ in range(300):
        if client.get(f"/api/jobs/{job_id}").json()["state"] == "fitting":
            break
        time.sleep(0.05)
    store = client.app.state.store
    process = store.get(job_id).process
    cancelled = client.delete(f"/api/jobs/{job_id}").json()
    assert cancelled == {"id": job_id, "state": "cancelled"}
    state = client.get(f"/api/jobs/{job_id}").json()
    assert state["state"] == "cancelled" and state["renders"] == []
    if process is not None:
        assert exit_code(process) is not None
    assert "is cancelled" in error_of(client.get(f"/api/jobs/{job_id}/model.npz"), 404)
    assert client.delete(f"/api/jobs/{job_id}").status_code == 200  # now forgotten
    error_of(client.get(f"/api/jobs/{job_id}"), 404)


def test_a_picture_that_cannot_be_painted_fails_with_its_sentence(client):
    response = client.post("/api/jobs", data={"k": "5000", "max_pixels": "100"},
                           files={"image": ("b.png", png())})
    state = wait(client, response.json()["id"])
    assert state["state"] == "failed"
    assert "Asked for 5000 components" in state["error"]


def test_jobs_beyond_the_workers_wait_in_order(client):
    first = client.post("/api/jobs", data={"sample": "astronaut", "k": "300",
                                           "max_iter": "1000"}).json()["id"]
    second = client.post("/api/jobs", data={"sample": "horse", **SMALL}).json()["id"]
    for _ in range(300):
        if client.get(f"/api/jobs/{first}").json()["state"] == "fitting":
            break
        time.sleep(0.05)
    assert client.get(f"/api/jobs/{second}").json()["state"] == "queued"  # one worker
    client.delete(f"/api/jobs/{first}")
    assert wait(client, second)["state"] == "done"  # its turn came


def test_no_request_path_reaches_the_file_system(client):
    for path in ["/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2fjobs.py",
                 "/api/jobs/..%2f..%2fetc/model.npz", "/api/samples/..%2fhorse.png"]:
        response = client.get(path)
        assert response.status_code == 404, path
        assert "import" not in response.text


def encoded(array, format, mode=None):
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format=format)
    return buffer.getvalue()


def picture_kinds():
    rng = np.random.RandomState(0)
    grey = (rng.uniform(size=(24, 32)) > 0.6).astype(np.uint8) * 255
    rgb = np.asarray(Image.open(io.BytesIO(png())))
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)])
    return {
        "grey PNG (black and white)": (encoded(grey, "PNG"), "bw"),
        "16-bit grey PNG": (encoded((grey.astype(np.uint16) * 257), "PNG"), "bw"),
        "RGBA PNG": (encoded(rgba, "PNG"), "color"),
        "JPEG": (encoded(rgb, "JPEG"), "color"),
        "GIF": (encoded(rgb, "GIF"), "color"),
    }


@pytest.mark.parametrize("kind", list(picture_kinds()))
def test_every_common_kind_of_picture_paints(client, kind):
    data, mode = picture_kinds()[kind]
    response = client.post("/api/jobs", data={"k": "4", "max_iter": "5"},
                           files={"image": ("p", data)})
    assert response.status_code == 202, response.text
    state = wait(client, response.json()["id"])
    assert state["state"] == "done", state["error"]
    assert state["report"]["mode"] == mode


def test_a_picture_too_small_to_paint_fails_with_the_paint_sentence(client):
    tiny = encoded(np.zeros((1, 1, 3), np.uint8), "PNG")
    state = wait(client, client.post("/api/jobs", files={"image": ("t.png", tiny)}).json()["id"])
    assert state["state"] == "failed" and "needs at least 2x2" in state["error"]


def test_an_upload_is_counted_as_it_arrives_whatever_its_headers_say():
    body = (b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.png\"\r\n"
            b"Content-Type: image/png\r\n\r\n" + b"\0" * 200_000 + b"\r\n--b--\r\n")

    def chunks():  # no Content-Length: sent chunked
        for start in range(0, len(body), 8192):
            yield body[start:start + 8192]

    with local_client(studio_app.create_app(max_upload_bytes=50_000)) as small:
        for headers, content in [({}, chunks()), ({"content-length": "10"}, body)]:
            response = small.post("/api/jobs", content=content, headers={
                "content-type": "multipart/form-data; boundary=b", **headers})
            assert "The upload is over" in error_of(response, 413)
