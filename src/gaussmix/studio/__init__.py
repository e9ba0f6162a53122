"""gaussmix studio: a local web page that paints pictures with mixtures, live.

``gaussmix studio`` serves a page (plain HTML, CSS and JavaScript inside the package: it
works offline) and the HTTP API it uses (``app.py``); fits run in worker processes
(``jobs.py``). Needs the ``studio`` extra (Starlette, uvicorn).
"""

from __future__ import annotations

from .doors import LOOPBACK

# Request heads (the line with its query, and the headers) up to this size are read: a tone
# curve of 10,000 knots fits (about 140 KB).
MAX_REQUEST_HEAD_BYTES = 1024 * 1024


def server_config(app, host="127.0.0.1", port=8765):
    """uvicorn's settings for the studio (also what the tests' real servers run)."""
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on",
                          http="h11", h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES)


def check_address(host, port):
    """Raise OSError when ``host:port`` cannot be listened on (taken, or not this
    machine's address)."""
    import socket

    # The first address the name resolves to (an IP address resolves to itself).
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)


def serve(host="127.0.0.1", port=8765, open_browser=False, workers=1, say=print):
    """Run the studio until interrupted (Ctrl-C stops it and its workers cleanly).

    Parameters
    ----------
    host, port : where to listen; 127.0.0.1 unless told otherwise
    open_browser : bool
        Open the page in the default browser once the server listens.
    workers : int
        Fits that run at once (1 or 2).
    say : callable
        Where the one-line notices go.
    """
    import threading
    import webbrowser

    import uvicorn

    from .app import create_app

    # A wildcard address listens everywhere; a browser reaches it through this machine's own.
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    url = f"http://{'[' + shown + ']' if ':' in shown else shown}:{port}/"
    if host not in LOOPBACK:
        say(f"Listening on {host}: anyone who can reach this machine can use the studio.")
    say(f"gaussmix studio at {url} (Ctrl-C stops it)")
    server = uvicorn.Server(server_config(create_app(workers, listen_host=host), host, port))
    if open_browser:
        def open_when_listening():
            while not server.started and not server.should_exit:
                threading.Event().wait(0.1)
            if server.started:
                webbrowser.open(url)

        threading.Thread(target=open_when_listening, daemon=True).start()
    server.run()
