"""The fake Prefect API on loopback: :class:`FakePrefect` and :func:`fake_prefect`.

A ``http.server.ThreadingHTTPServer`` on ``127.0.0.1`` (a free port) in a
daemon thread puts ``backend.Backend`` behind HTTP. While a :class:`FakePrefect`
is active, ``PREFECT_API_URL`` points at it, so ``deploytrigger.run_deployment``,
``Client()`` and Prefect's own client use it without being told.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Set,
    Type,
)

from deploytrigger.guard import fence

from . import _websocket as ws
from ._backend import Backend, RecordedRequest
from ._events import EventFilter, InvalidFilter
from ._outcomes import NO_RESULT, Outcome

if TYPE_CHECKING:
    from deploytrigger import Deployment, FlowRun


API_PREFIX = "/api"

_FENCE_FIX = (
    "This client was made for another URL, e.g. at import: make clients when first "
    "needed (Client() and the module-level functions read PREFECT_API_URL, which "
    "points at the fake), or pass api_url=fake.api_url (the fake_prefect fixture's); "
    "a deploytrigger.configure(api_url=...) at import needs the same: read the URL "
    "from PREFECT_API_URL instead (see the testing guide)."
)

EVENTS_PATH = API_PREFIX + "/events/out"
"""The events websocket, as on a 3.x server."""

PING_INTERVAL = 20.0
"""Seconds between the server's pings on an idle events socket (the server's own)."""

TICK = 0.02
"""Seconds between two looks for planned state changes that are due."""

ENVIRONMENT = ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_API_AUTH_STRING")
"""The variables a started fake sets (the URL) or clears (credentials), and restores on exit."""


class _Handler(BaseHTTPRequestHandler):
    """Hands each request to the server's backend and writes its JSON answer."""

    protocol_version = "HTTP/1.1"
    server: _Server

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


class _Server(ThreadingHTTPServer):
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


def _split_name(name: Any) -> List[str]:
    parts = name.split("/") if isinstance(name, str) else []
    if len(parts) != 2 or not all(part.strip() for part in parts):
        raise ValueError(f"a deployment is named 'flow/deployment', not {name!r}")
    return parts


class FakePrefect:
    """A fake Prefect 3.x API on loopback, for testing code that triggers deployments.

    Use it as a context manager (or through the ``fake_prefect`` pytest
    fixture)::

        with fake_prefect() as fake:
            fake.add_deployment("etl/nightly", parameters={"day": "today"})
            fake.set_outcome("etl/nightly", "FAILED", message="disk full")
            run = deploytrigger.run_deployment("etl/nightly", timeout=10)

    Args:
        set_environment: point ``PREFECT_API_URL`` at the fake while it runs
            (and unset ``PREFECT_API_KEY`` and ``PREFECT_API_AUTH_STRING``),
            restoring them on exit, and fence the process in: every
            deploytrigger client, whenever it was made, may then send requests
            only to the fake; one made for another URL raises
            :class:`~deploytrigger.ConfigurationError` and sends nothing.
            Without it, pass :attr:`api_url` yourself.
        clock: the current POSIX time in seconds (state changes are due
            against it); ``time.time`` by default.
    """

    def __init__(
        self, *, set_environment: bool = True, clock: Callable[[], float] = time.time
    ) -> None:
        self._set_environment = set_environment
        self._clock = clock
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None
        self._saved: Dict[str, Optional[str]] = {}
        self._home: Optional[Path] = None
        self._backend: Optional[Backend] = None
        self._take_down_fence: Optional[Callable[[], None]] = None
        self._ticker: Optional[threading.Thread] = None
        self._stopping = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> FakePrefect:
        """Start serving (and set the environment); returns itself.

        Raises:
            RuntimeError: already started.
        """
        if self._server is not None:
            raise RuntimeError("this FakePrefect is already started")
        self._home = Path(tempfile.mkdtemp(prefix="deploytrigger-fake-"))
        self._backend = Backend(self._home, self._clock)
        self._server = _Server(self._backend)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="deploytrigger-fake-prefect",
            daemon=True,
        )
        self._thread.start()
        self._stopping.clear()
        self._ticker = threading.Thread(
            target=self._tick, args=(self._backend,), name="deploytrigger-fake-ticker", daemon=True
        )
        self._ticker.start()
        if self._set_environment:
            self._saved = {key: os.environ.get(key) for key in ENVIRONMENT}
            for key in ENVIRONMENT[1:]:
                os.environ.pop(key, None)
            os.environ["PREFECT_API_URL"] = self.api_url
            self._take_down_fence = fence([self.api_url[: -len(API_PREFIX)]], fix=_FENCE_FIX)
        return self

    def _tick(self, backend: Backend) -> None:
        """Apply due state changes as they fall due, so that their events go out on time."""
        while not self._stopping.wait(TICK):
            backend.advance_due()

    def stop(self) -> None:
        """Stop serving, restore the environment and delete the result files. Idempotent."""
        self._stopping.set()
        if self._ticker is not None:
            self._ticker.join(timeout=5)
            self._ticker = None
        server, thread, self._server, self._thread = self._server, self._thread, None, None
        take_down, self._take_down_fence = self._take_down_fence, None
        if take_down is not None:
            take_down()
        if server is not None:
            server.shutdown()
            server.server_close()
            server.close_connections()
        if thread is not None:
            thread.join(timeout=5)
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved = {}
        if self._home is not None:
            shutil.rmtree(self._home, ignore_errors=True)
            self._home = None

    def __enter__(self) -> FakePrefect:
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.api_url if self._server is not None else "stopped"
        return f"<FakePrefect {where}>"

    # -- where it is ---------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        """The fake's API URL, ``http://127.0.0.1:<port>/api``.

        Raises:
            RuntimeError: not started.
        """
        if self._server is None:
            raise RuntimeError("start the FakePrefect first (use it in a with block)")
        return f"http://127.0.0.1:{self._server.server_address[1]}{API_PREFIX}"

    @property
    def _store(self) -> Backend:
        if self._backend is None:
            raise RuntimeError("start the FakePrefect first (use it in a with block)")
        return self._backend

    # -- setting it up -------------------------------------------------------------------

    def add_deployment(
        self,
        name: str,
        *,
        parameters: Optional[Mapping[str, Any]] = None,
        tags: Optional[Iterable[str]] = None,
        parameter_schema: Optional[Mapping[str, Any]] = None,
        enforce_parameter_schema: bool = False,
        version: Optional[str] = None,
    ) -> Deployment:
        """Create a deployment (and its flow), or replace one of the same name.

        Its runs complete at once until :meth:`set_outcome` says otherwise.

        Args:
            name: ``"flow name/deployment name"``.
            parameters: the deployment's default parameters, merged under each run's.
            tags: the deployment's tags, merged with each run's.
            parameter_schema: the JSON schema of the flow's parameters, as Prefect
                writes ``parameter_openapi_schema`` (``{"type": "object",
                "properties": {...}, "required": [...]}``); ``{}`` when not given.
            enforce_parameter_schema: check each run's parameters against the
                schema and answer 409 when they fail, as the server does.
            version: the deployment's version.

        Returns:
            The deployment, as ``deploytrigger.Client().read_deployment`` would return it.

        Raises:
            ValueError: ``name`` is not of the form ``"flow/deployment"``.
            TypeError: an argument has the wrong type.
        """
        flow_name, deployment_name = _split_name(name)
        if parameters is not None and not isinstance(parameters, Mapping):
            raise TypeError(f"parameters must be a dict, not {type(parameters).__name__}")
        if isinstance(tags, str) or not all(isinstance(tag, str) for tag in tags or []):
            raise TypeError(f"tags must be a list of strings, not {tags!r}")
        if parameter_schema is not None and not isinstance(parameter_schema, Mapping):
            raise TypeError(
                f"parameter_schema must be a dict, not {type(parameter_schema).__name__}"
            )
        record = self._store.add_deployment(
            flow_name,
            deployment_name,
            parameters=json.loads(json.dumps(dict(parameters or {}))),
            tags=list(tags or []),
            parameter_schema=dict(parameter_schema) if parameter_schema is not None else {},
            enforce_parameter_schema=bool(enforce_parameter_schema),
            version=version,
        )
        from deploytrigger import Deployment

        return Deployment.from_json(record)

    def set_outcome(
        self,
        name: str,
        state: Any,
        *,
        after: float = 0.0,
        message: Optional[str] = None,
        result: Any = NO_RESULT,
    ) -> None:
        """Decide how each new run of a deployment ends (runs created before keep theirs).

        A run goes Scheduled -> Pending -> Submitting -> Running -> ``state``
        within ``after`` seconds of its scheduled time (Pending and Submitting
        at once, Running halfway). Each state comes when it is due, with its
        event on ``/api/events/out``, whether the run is read or not.

        Args:
            name: the deployment, ``"flow/deployment"`` (added before).
            state: ``"COMPLETED"``, ``"FAILED"``, ``"CRASHED"`` or ``"CANCELLED"``
                (or a ``deploytrigger.StateType``); ``"SCHEDULED"``, ``"PENDING"``
                or ``"RUNNING"`` leave the run there for good.
            after: seconds until that state.
            message: the final state's message.
            result: what ``deploytrigger.read_result`` returns for the run, kept
                as Prefect's JSON serializer persists it (JSON values plus
                datetimes, dates, UUIDs, decimals, paths, sets, bytes); an
                exception for a FAILED run names what it raised.

        Raises:
            KeyError: no such deployment.
            ValueError, TypeError: a bad state, ``after`` or ``result``.
        """
        flow_name, deployment_name = _split_name(name)
        self._store.set_outcome(
            flow_name, deployment_name, Outcome.build(state, after, message, result)
        )

    def add_log(
        self,
        flow_run_id: Any,
        message: str,
        *,
        level: int = 20,
        timestamp: Optional[str] = None,
        name: str = "prefect.flow_runs",
    ) -> None:
        """Add a log line to a flow run (``level`` as in ``logging``: 20 is INFO)."""
        body: Dict[str, Any] = {
            "name": name,
            "level": level,
            "message": message,
            "flow_run_id": str(flow_run_id),
        }
        if timestamp is not None:
            body["timestamp"] = timestamp
        self._store.add_log(body)

    # -- what happened -------------------------------------------------------------------

    @property
    def runs(self) -> List[FlowRun]:
        """Every flow run created so far, oldest first, in its state as of now."""
        from deploytrigger import FlowRun

        api_url = self.api_url
        return [
            FlowRun.from_json(record, api_url=api_url) for record in self._store.flow_run_records()
        ]

    @property
    def requests(self) -> List[RecordedRequest]:
        """Every request received so far, oldest first (method, path, json, query)."""
        return list(self._store.requests)

    @property
    def event_filters(self) -> List[Any]:
        """The filter of every subscription to ``/api/events/out`` so far, oldest first, as
        sent (the websocket is not in :attr:`requests`): one per socket that got that far."""
        return list(self._store.events.filters)

    def requests_to(self, method: str, path: str) -> List[RecordedRequest]:
        """The requests received with this method and path (e.g. ``"POST"``, ``"/flow_runs/"``)."""
        return [r for r in self._store.requests if r.method == method and r.path == path]


def fake_prefect(
    *, set_environment: bool = True, clock: Callable[[], float] = time.time
) -> FakePrefect:
    """A :class:`FakePrefect`, to use in a ``with`` block (which starts and stops it)."""
    return FakePrefect(set_environment=set_environment, clock=clock)
