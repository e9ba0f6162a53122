"""Who may use the studio: requests addressed to the names it was started for, and changes
(a new job, a cancel) only from its own page.

A web page the user happens to visit can send requests to the studio on 127.0.0.1 without
being able to read the answers: a cross-origin form POST would queue a job. And a page whose
domain name it re-points to 127.0.0.1 (DNS rebinding) could read models, reports and renders
as if it were the studio's own. So, as Jupyter's server does: the ``Host`` of every request
must be a name the server was started for (127.0.0.1, localhost, ::1, its ``--host``; any IP
address when it listens on all of them), and a request that changes something must come from
the studio's own origin when a browser says where it comes from (``Origin``,
``Sec-Fetch-Site``). Clients that are not browsers (curl, scripts) send neither and are let
through. Refusals are 403 with one sentence.
"""

from __future__ import annotations

import ipaddress
import json

LOOPBACK = ("127.0.0.1", "localhost", "::1")
WILDCARDS = ("0.0.0.0", "::", "")

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# A refused request's body is read up to this size before the answer, so that a client that
# sends its whole body first gets the answer and not a reset connection.
DRAIN_REFUSED_BYTES = 1024 * 1024


async def drain(receive, limit):
    """Read and drop a request's body, ``limit`` bytes at most (the rest is left unread)."""
    received = 0
    while received <= limit:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            return
        received += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def host_name(host_header):
    """The name in a ``Host`` header, without its port, in lower case ("[::1]:80" -> "::1")."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _is_ip_address(name):
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class Doors:
    """ASGI middleware: 403 for requests to other host names and cross-origin changes.

    Parameters
    ----------
    app : ASGI application
    listen_host : str
        The address the server listens on (``gaussmix studio --host``).
    """

    def __init__(self, app, listen_host="127.0.0.1"):
        self.app = app
        self.listen_host = host_name(listen_host)
        self.names = set(LOOPBACK) | {self.listen_host}
        self.any_address = self.listen_host in WILDCARDS

    def host_allowed(self, host_header):
        if host_header is None:  # HTTP/1.0 without a Host: no name to re-point
            return True
        name = host_name(host_header).rstrip(".")
        return name in self.names or (self.any_address and _is_ip_address(name))

    def refusal(self, scope):
        """The sentence that refuses this request, or None when it may pass."""
        headers = {key.decode("latin-1"): value.decode("latin-1")
                   for key, value in scope.get("headers", ())}
        host = headers.get("host")
        if not self.host_allowed(host):
            return (f"The studio answers only requests addressed to {self._names_text()}, not "
                    f"{host_name(host)[:80]!r}; open the page at one of those addresses.")
        if scope.get("method", "GET") in SAFE_METHODS:
            return None
        origin = headers.get("origin")
        site = headers.get("sec-fetch-site")
        own = f"http://{host}".lower() if host else None
        if (origin is not None and origin.lower() != own) or site in ("cross-site",
                                                                       "same-site"):
            source = "another site" if origin is None else repr(origin[:80])
            at = f"at {own}/" if own else "at its own address"
            return (f"The studio takes changes only from its own page, not from {source}; "
                    f"open it {at} and use it there.")
        return None

    def _names_text(self):
        names = sorted(self.names - set(WILDCARDS))
        extra = " or any of this machine's IP addresses" if self.any_address else ""
        return ", ".join(names) + extra

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sentence = self.refusal(scope)
        if sentence is None:
            await self.app(scope, receive, send)
            return
        await drain(receive, DRAIN_REFUSED_BYTES)
        body = json.dumps({"error": sentence}).encode()
        await send({"type": "http.response.start", "status": 403, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
