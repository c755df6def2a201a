"""The fake's HTTP side: the request handler, the events websocket, the server.

Each request goes to ``backend.Backend`` and its answer is written as JSON;
a websocket upgrade of ``/api/events/out`` is served here, from the backend's
event log (``events.py``). :class:`HTTPServer` closes kept-alive connections
when the fake stops.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Set

from . import _websocket as ws
from ._backend import Backend
from ._events import EventFilter, InvalidFilter

API_PREFIX = "/api"

EVENTS_PATH = API_PREFIX + "/events/out"
"""The events websocket, as on a 3.x server."""

PING_INTERVAL = 20.0
"""Seconds between the server's pings on an idle events socket (the server's own)."""


class _Handler(BaseHTTPRequestHandler):
    """Hands each request to the server's backend and writes its JSON answer."""

    protocol_version = "HTTP/1.1"
    # The headers and the body go out in two writes: with Nagle's algorithm the body
    # waits for the client's delayed ACK of the headers, 40 ms a request on Linux.
    disable_nagle_algorithm = True
    server: HTTPServer

    def do_GET(self) -> None:
        if (
            self.path.split("?")[0] == EVENTS_PATH
            and "websocket" in (self.headers.get("Upgrade") or "").lower()
        ):
            self.close_connection = True
            _serve_events(self)
            return
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def do_PUT(self) -> None:
        self._answer("PUT")

    def do_PATCH(self) -> None:
        self._answer("PATCH")

    def do_DELETE(self) -> None:
        self._answer("DELETE")

    def _answer(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        if self.path == API_PREFIX or self.path.startswith(API_PREFIX + "/"):
            status, value = self.server.backend.handle(method, self.path[len(API_PREFIX) :], raw)
        else:
            status, value = 404, {"detail": "Not Found"}
        content = json.dumps(value).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, open_=True)

    def finish(self) -> None:
        self.server.track(self.connection, open_=False)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the requests are recorded in ``FakePrefect.requests`` instead."""


def _serve_events(handler: _Handler) -> None:
    """``/api/events/out``: the handshake, ``auth``, ``filter``, the backfill, then live events.

    As on a 3.x server: without the ``prefect`` subprotocol the socket is
    closed with 1002; a first message that is not ``auth`` closes it with
    1008 (any token passes: the fake has no auth); a second that is not
    ``filter`` with 1002; a filter the server would refuse (an unknown key, a
    bad value) cuts the connection, as the server's too-long close reason does.
    """
    key = handler.headers.get("Sec-WebSocket-Key")
    if not key:
        handler.send_error(400, "Missing Sec-WebSocket-Key")
        return
    offered = [
        name.strip()
        for header in handler.headers.get_all("Sec-WebSocket-Protocol") or []
        for name in header.split(",")
    ]
    handler.send_response(101, "Switching Protocols")
    handler.send_header("Upgrade", "websocket")
    handler.send_header("Connection", "Upgrade")
    handler.send_header("Sec-WebSocket-Accept", ws.accept_key(key))
    if "prefect" in offered:
        handler.send_header("Sec-WebSocket-Protocol", "prefect")
    handler.end_headers()
    handler.wfile.flush()
    connection = ws.Connection(handler.rfile, handler.connection)
    try:
        if "prefect" not in offered:
            connection.close(ws.PROTOCOL_ERROR, "'prefect' subprotocol required")
            return
        auth = _json_message(connection)
        if not isinstance(auth, dict) or auth.get("type") != "auth":
            connection.close(ws.POLICY_VIOLATION, "Expected 'auth' message")
            return
        connection.send_text(json.dumps({"type": "auth_success"}))
        message = _json_message(connection)
        if not isinstance(message, dict) or message.get("type") != "filter":
            connection.close(ws.PROTOCOL_ERROR, "Expected 'filter' message")
            return
        backend = handler.server.backend
        backend.events.record_filter(message.get("filter"))
        try:
            event_filter = EventFilter.parse(message.get("filter"), backend.now())
        except InvalidFilter:
            connection.drop()
            return
        _stream(connection, backend, event_filter, message.get("backfill", True) is not False)
    except ws.ProtocolError as exc:
        connection.close(exc.code, exc.reason)
    finally:
        connection.closed.set()


def _json_message(connection: ws.Connection) -> Any:
    text = connection.receive()
    if text is None:
        raise ws.ProtocolError(ws.NORMAL_CLOSURE, "")
    try:
        return json.loads(text)
    except ValueError:
        return None


def _stream(
    connection: ws.Connection, backend: Backend, event_filter: EventFilter, backfill: bool
) -> None:
    """Send the backfill and the live events until either side closes."""
    subscription, past = backend.events.subscribe(event_filter, backfill)
    reader = threading.Thread(
        target=_read_until_closed, args=(connection,), name="fake-prefect-events", daemon=True
    )
    reader.start()
    try:
        for event in past:
            if not connection.send_text(json.dumps({"type": "event", "event": event})):
                return
        last_ping = time.monotonic()
        while not connection.closed.is_set():
            live = subscription.next(timeout=0.1)
            if live is not None:
                if not connection.send_text(json.dumps({"type": "event", "event": live})):
                    return
            elif time.monotonic() - last_ping >= PING_INTERVAL:
                connection.ping()
                last_ping = time.monotonic()
    finally:
        backend.events.unsubscribe(subscription)


def _read_until_closed(connection: ws.Connection) -> None:
    """Answer the client's pings and its close; messages after the filter are ignored."""
    try:
        while connection.receive() is not None:
            pass
    except ws.ProtocolError as exc:
        connection.close(exc.code, exc.reason)
    connection.closed.set()


class HTTPServer(ThreadingHTTPServer):
    """The HTTP server; it closes kept-alive connections too when it stops."""

    daemon_threads = True

    def __init__(self, backend: Backend) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.backend = backend
        self._connections: Set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def track(self, connection: socket.socket, *, open_: bool) -> None:
        """Remember an open connection (``open_``), or forget a closed one."""
        with self._connections_lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        """Shut every open connection, so no client keeps talking to a stopped fake."""
        with self._connections_lock:
            connections, self._connections = list(self._connections), set()
        for connection in connections:
            with contextlib.suppress(OSError):  # the client closed it already
                connection.shutdown(socket.SHUT_RDWR)
