"""``studio.serve`` without a real server (its notices and ``--open``), then real servers
on 127.0.0.1 as users reach them: the doors (Host and Origin), the bounded queue, and the
errors that must arrive (uploads over the limit, long queries, stalled uploads)."""

import http.client
import io
import json
import socket
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

from gaussmix import studio
from gaussmix.studio import app as studio_app
from gaussmix.studio import doors
from gaussmix.studio import jobs

from .servers import running_server  # noqa: E402


@pytest.fixture
def no_server(monkeypatch):
    """uvicorn's server replaced by one that 'listens' at once and returns."""
    ran = []

    def run(self):
        self.started = True
        ran.append((self.config.host, self.config.port))
        threading.Event().wait(0.3)  # time for the browser thread to see it listening

    monkeypatch.setattr(uvicorn.Server, "run", run)
    return ran


def test_it_listens_on_this_machine_unless_told_and_warns_beyond(no_server, monkeypatch):
    opened = []
    monkeypatch.setattr("webbrowser.open", opened.append)
    said = []
    studio.serve(say=said.append)
    assert no_server == [("127.0.0.1", 8765)] and not opened
    assert said == ["gaussmix studio at http://127.0.0.1:8765/ (Ctrl-C stops it)"]
    said.clear()
    studio.serve("0.0.0.0", 9000, open_browser=True, say=said.append)
    assert said[0].startswith("Listening on 0.0.0.0: anyone who can reach this machine")
    assert opened == ["http://127.0.0.1:9000/"]  # the wildcard is reached through loopback


# ---- a real server on 127.0.0.1: its doors, its queue and the errors that must arrive ------

UPLOAD_LIMIT = 200_000


@pytest.fixture(scope="module")
def real():
    """A real server with small limits: ``(port, app)``."""
    app = studio_app.create_app(workers=1, max_upload_bytes=UPLOAD_LIMIT, max_queued=2,
                                upload_idle_seconds=1.0, upload_seconds=3.0)
    with running_server(app) as port:
        yield port, app


def ask(port, method, path, body=None, headers=None, timeout=30):
    """``(status, parsed JSON or bytes, headers)`` of one request through a fresh connection
    (``headers`` may name the Host)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    kind = response.getheader("content-type", "")
    return response.status, json.loads(data) if "json" in kind else data, response


def sentence(status_body, status):
    got, body, _ = status_body
    assert got == status, body
    assert set(body) <= {"error", "field"} and body["error"].endswith(".")
    return body["error"]


def sample_form(sample="horse", **fields):
    return "&".join(f"{k}={v}" for k, v in {"sample": sample, **fields}.items()).encode()


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def png_upload(size=4000, seed=0):
    """Multipart body and headers of an upload of a noisy PNG of about ``size`` bytes."""
    from PIL import Image

    side = max(4, int((size / 3) ** 0.5))
    pixels = np.random.RandomState(seed).randint(0, 255, (side, side, 3)).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=0)
    return multipart(buffer.getvalue())


def multipart(data, boundary="b0undary"):
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
            f"filename=\"p.png\"\r\nContent-Type: image/png\r\n\r\n").encode() + data + \
        f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"max_pixels\"\r\n\r\n" \
        f"400\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def test_requests_to_other_host_names_are_403(real):
    port, _ = real
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example"):
        words = sentence(ask(port, "GET", "/api/samples", headers={"Host": host}), 403)
        assert "answers only requests addressed to 127.0.0.1, ::1, localhost" in words
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "LOCALHOST"):
        assert ask(port, "GET", "/api/samples", headers={"Host": host})[0] == 200


def test_changes_from_other_sites_are_403_and_queue_nothing(real):
    port, app = real
    before = len(app.state.store.jobs)
    body, headers = png_upload()
    for extra in ({"Origin": "http://evil.example"}, {"Origin": "null"},
                  {"Origin": f"http://localhost:{port}"},  # another origin than the page's
                  {"Sec-Fetch-Site": "cross-site"}):
        words = sentence(ask(port, "POST", "/api/jobs", body, {**headers, **extra}), 403)
        assert "takes changes only from its own page" in words
        words = sentence(ask(port, "DELETE", "/api/jobs/x", None, extra), 403)
    assert len(app.state.store.jobs) == before
    # The page's own origin, and clients that say none (curl, scripts), are served.
    own = {"Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"}
    status, answer, _ = ask(port, "POST", "/api/jobs", sample_form(max_iter=1, k=2),
                            {**FORM, **own})
    assert status == 202
    assert ask(port, "DELETE", f"/api/jobs/{answer['id']}", None, own)[0] == 200


@pytest.mark.parametrize("listen, host, allowed", [
    ("0.0.0.0", "192.168.1.7:8765", True), ("0.0.0.0", "[fe80::1]:8765", True),
    ("0.0.0.0", "evil.example:8765", False), ("studio.lan", "studio.lan:8765", True),
    ("studio.lan", "other.lan", False), ("127.0.0.1", "192.168.1.7", False),
    ("::", "[::1]:1", True), ("127.0.0.1", None, True)])
def test_the_host_names_a_server_answers(listen, host, allowed):
    assert doors.Doors(None, listen).host_allowed(host) is allowed


def test_a_full_queue_is_429_and_a_deleted_upload_is_freed_at_once(real):
    port, app = real
    store = app.state.store
    status, running, _ = ask(port, "POST", "/api/jobs",
                             sample_form("astronaut", k=300, max_iter=1000), FORM)
    assert status == 202
    for _ in range(600):
        if store.get(running["id"]).state == "fitting":
            break
        time.sleep(0.05)
    queued = []
    for seed in range(2):
        body, headers = png_upload(150_000, seed)
        status, answer, _ = ask(port, "POST", "/api/jobs", body, headers)
        assert status == 202, answer
        queued.append(answer["id"])
    body, headers = png_upload(150_000, 2)
    full = ask(port, "POST", "/api/jobs", body, headers)
    assert "2 pictures wait for a worker already" in sentence(full, 429)
    assert full[2].getheader("Retry-After") == "10"
    picture = store.get(queued[0]).picture
    assert len(picture) > 100_000
    assert ask(port, "DELETE", f"/api/jobs/{queued[0]}")[0] == 200
    # Nothing but this test holds the deleted job's upload any more.
    assert store.get(queued[0]).picture is None and sys.getrefcount(picture) == 2
    for job_id in (queued[1], running["id"]):
        ask(port, "DELETE", f"/api/jobs/{job_id}")


def test_finished_jobs_beyond_the_limit_are_forgotten_as_they_finish(monkeypatch):
    monkeypatch.setattr(jobs, "KEPT_JOBS", 3)
    store = jobs.JobStore()
    made = [jobs.Job(id=str(i), settings=jobs.Settings(), state="fitting") for i in range(6)]
    store.jobs.update({job.id: job for job in made})
    for job in made:
        with store.lock:
            store._finish(job, "failed", error="x")
    assert sorted(store.jobs) == ["3", "4", "5"]


def test_an_upload_over_the_limit_gets_its_413_however_it_is_sent(real):
    port, _ = real
    body, headers = multipart(b"\0" * (3 * UPLOAD_LIMIT))
    url = f"http://127.0.0.1:{port}/api/jobs"
    # urllib sends the whole body (with its length) before it reads the answer.
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers),
                               timeout=30)
    assert refused.value.code == 413
    assert "The upload is over" in json.loads(refused.value.read())["error"]
    # Chunked, without a length: counted as it arrives.
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    chunks = (body[i:i + 65536] for i in range(0, len(body), 65536))
    connection.request("POST", "/api/jobs", body=chunks, headers=headers, encode_chunked=True)
    response = connection.getresponse()
    assert response.status == 413 and "The upload is over" in json.loads(response.read())["error"]
    connection.close()


def test_a_long_query_is_answered(real):
    port, _ = real
    knots = ",".join(f"{x:.6f}:{x:.6f}" for x in np.linspace(0, 1, 10_000))
    path = f"/api/jobs/nope/renders/density-mapped.png?tone={knots}"
    assert len(path) > 150_000
    assert "No job 'nope'" in sentence(ask(port, "GET", path), 404)


@pytest.mark.parametrize("pause, words", [(2.5, "nothing arrived for 1 s"),
                                          (0.5, "took over 3 s")])
def test_a_stalled_or_trickling_upload_is_timed_out(real, pause, words):
    """Idle 1 s at most between pieces, 3 s in all (the fixture's limits)."""
    port, _ = real
    body, headers = png_upload(20_000)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
        head = (f"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Content-Type: {headers['Content-Type']}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        client.sendall(head + body[:100])
        began = time.monotonic()
        answer = b""
        for start in range(100, len(body), 50):
            if time.monotonic() - began > 8:
                break
            client.settimeout(pause)
            try:
                piece = client.recv(65536)
            except TimeoutError:
                client.sendall(body[start:start + 50])  # one more piece after each pause
                continue
            answer += piece
            break
        client.settimeout(10)
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            piece = client.recv(65536)
            if not piece:
                break
            answer += piece
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert words in answer.decode()


def test_the_favicon_is_served(real):
    port, _ = real
    status, data, response = ask(port, "GET", "/favicon.ico")
    assert status == 200 and response.getheader("content-type") == "image/png"
    assert data.startswith(b"\x89PNG")
