"""``studio.serve`` without a real server: its notices and ``--open``."""

import threading

import pytest

uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

from gaussmix import studio


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
