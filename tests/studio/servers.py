"""Real studio servers for the tests: uvicorn with the studio's own settings
(``studio.server_config``), listening on 127.0.0.1 in a thread of the test process."""

import contextlib
import socket
import threading
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(app):
    """Serve ``app`` on a free port of 127.0.0.1; yields the port."""
    import uvicorn

    from gaussmix import studio

    port = free_port()
    server = uvicorn.Server(studio.server_config(app, "127.0.0.1", port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(400):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "the studio's server did not start"
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)
