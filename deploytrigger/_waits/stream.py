"""The events stream's websocket: connecting, the handshake, and reading its frames.

One :class:`Connection` is one open socket to ``<api_url>/events/out``
(subprotocol ``prefect``); :func:`handshake` sends the auth message and the one
filter (:func:`stream_filter`: every flow run's final-state events), and
:func:`final_run_of` picks the final flow-run states out of the frames. The
listener thread that owns the socket is ``events.py``.

**Secrets.** The token travels in the auth message only; it is never logged,
put in a ``repr`` or an exception, and websocket-client's trace logging is never
enabled. TLS uses the REST settings' ``verify`` (:func:`ssl_options`: a CA
bundle or insecure); ``http(s)_proxy``/``no_proxy`` are read by
websocket-client as requests does.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import ssl
import time
import uuid
from datetime import datetime, timedelta
from typing import Any, Callable, Dict, Mapping, Optional, Protocol, Tuple

from ..models import FINAL_STATES

logger = logging.getLogger("deploytrigger")

FLOW_RUN_PREFIX = "prefect.flow-run."
RECEIVE_TIMEOUT = 1.0
"""Seconds one read of the socket blocks: pings are answered, ``close`` is seen, this often."""

MAX_FRAME_CHARS = 1_000_000
"""Frames longer than this (a flow-run state event is about 1 KB) are ignored."""

BACKFILL_MARGIN = timedelta(seconds=60)
"""How far back the filter's ``occurred.since`` reaches (clock skew, the connect itself)."""

UNTIL_AHEAD = timedelta(days=365)
"""``occurred.until``: far ahead, else the server stops at "now" and sends no live event."""

REFUSING_CLOSE_CODES = frozenset({1002, 1008})
"""Close codes that mean "no stream for you": no subprotocol, a refused token."""


class StreamRefused(Exception):
    """The server does not offer the stream to this client: listening stops for good."""


class StreamClosed(Exception):
    """The socket closed or failed while open; ``code`` is the close code, when one came."""

    def __init__(self, reason: str, code: Optional[int] = None) -> None:
        super().__init__(reason)
        self.code = code


class Connection(Protocol):
    """One open websocket, as the listener uses it (tests script their own)."""

    def send(self, text: str) -> None:
        """Send one text frame (``StreamClosed`` when the socket is gone)."""
        ...

    def receive(self) -> Optional[str]:
        """The next text frame; None when nothing came within the receive timeout.

        Raises:
            StreamClosed: the socket closed (with the close code) or failed.
        """
        ...

    def close(self) -> None:
        """Close the socket; safe from another thread and more than once."""
        ...


Connect = Callable[[str, Mapping[str, Any]], Connection]
"""Opens a websocket to a URL with ``options`` (``sslopt``, ``timeout``, ``receive_timeout``).

Raises ``StreamRefused`` when the server answers the handshake with an HTTP
error, and any other exception for a connection that failed on the way.
"""


def connect_websocket(url: str, options: Mapping[str, Any]) -> Connection:
    """A :class:`Connection` over websocket-client (imported here, never at import time)."""
    import websocket  # the optional extra 'events'

    try:
        ws = websocket.create_connection(
            url,
            timeout=options["timeout"],
            subprotocols=["prefect"],
            sslopt=dict(options["sslopt"]),
            enable_multithread=True,
            # Its pure-Python UTF-8 check costs ~0.2 ms a 1 KB frame, more than all the
            # rest; ``receive`` decodes each text frame strictly instead, at C speed.
            skip_utf8_validation=True,
        )
    except websocket.WebSocketBadStatusException as exc:
        raise StreamRefused(
            f"the server answered the handshake with HTTP {exc.status_code}"
        ) from None
    ws.settimeout(options["receive_timeout"])
    return _WebsocketClientConnection(ws)


class _WebsocketClientConnection:
    """websocket-client's ``WebSocket`` as a :class:`Connection`."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws

    def send(self, text: str) -> None:
        import websocket

        try:
            self._ws.send(text)
        except (websocket.WebSocketException, OSError) as exc:
            raise StreamClosed(f"sending failed: {type(exc).__name__}") from None

    def receive(self) -> Optional[str]:
        import websocket

        try:
            opcode, frame = self._ws.recv_data_frame(True)  # answers pings while reading
        except websocket.WebSocketTimeoutException:
            return None
        except (websocket.WebSocketException, OSError, ValueError) as exc:
            raise StreamClosed(f"the socket failed: {type(exc).__name__}") from None
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            data = frame.data or b""
            code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
            raise StreamClosed(f"the server closed the stream (code {code})", code)
        if opcode != websocket.ABNF.OPCODE_TEXT:
            return None  # ping, pong, binary: nothing for us
        return _text(frame.data)

    def close(self) -> None:
        for step in (self._ws.send_close, self._ws.shutdown):
            with contextlib.suppress(Exception):  # closing is best effort
                step()


def _text(data: Any) -> Optional[str]:
    """A text frame's payload as a string; None (logged at debug level) if it is not UTF-8."""
    if not isinstance(data, bytes):
        return str(data)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        logger.debug("events: ignored a text frame that is not UTF-8 (%d bytes)", len(data))
        return None


def events_url(api_url: str) -> str:
    """The stream's URL: the API URL (its path prefix kept) as ``ws(s)://`` + ``/events/out``."""
    scheme, _, rest = api_url.partition("://")
    return ("wss" if scheme == "https" else "ws") + "://" + rest.rstrip("/") + "/events/out"


def ssl_options(verify: Any, environ: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
    """websocket-client's ``sslopt`` for the REST settings' ``verify``, as requests reads it.

    ``True``: the bundle requests would use (``REQUESTS_CA_BUNDLE``,
    ``CURL_CA_BUNDLE``, else certifi's); a path: that bundle (or directory);
    ``False``: no verification (the client has warned once already).
    """
    if verify is False:
        return {"cert_reqs": ssl.CERT_NONE, "check_hostname": False}
    options: Dict[str, Any] = {"cert_reqs": ssl.CERT_REQUIRED, "check_hostname": True}
    env = os.environ if environ is None else environ
    bundle = verify if isinstance(verify, str) else None
    if bundle is None:
        bundle = env.get("REQUESTS_CA_BUNDLE") or env.get("CURL_CA_BUNDLE") or _certifi_bundle()
    if bundle:
        options["ca_cert_path" if os.path.isdir(bundle) else "ca_certs"] = bundle
    return options


def _certifi_bundle() -> Optional[str]:
    try:
        import certifi
    except ImportError:  # pragma: no cover - requests depends on certifi
        return None
    where: str = certifi.where()
    return where


def stream_filter(now: datetime) -> Dict[str, Any]:
    """The one filter: every flow run's final-state events, since a little before ``now``."""
    return {
        "occurred": {
            "since": (now - BACKFILL_MARGIN).isoformat(),
            "until": (now + UNTIL_AHEAD).isoformat(),
        },
        "event": {"prefix": [FLOW_RUN_PREFIX]},
        "resource": {
            "id_prefix": [FLOW_RUN_PREFIX],
            "labels": {"prefect.state-type": sorted(FINAL_STATES)},
        },
    }


def final_run_of(frame: str) -> Optional[Tuple[str, uuid.UUID]]:
    """``(event id, run id)`` of a frame that reports a flow run's final state, else None.

    Anything else (not JSON, another message, no state labels, a state that
    is not final, a frame far too long) is logged at debug level and ignored.
    """
    if len(frame) > MAX_FRAME_CHARS:
        logger.debug("events: ignored a frame of %d characters", len(frame))
        return None
    try:
        message = json.loads(frame)
        event = message["event"] if message.get("type") == "event" else None
        if event is None:
            logger.debug("events: ignored a %r message", message.get("type"))
            return None
        resource = event["resource"]
        resource_id = resource["prefect.resource.id"]
        state_type = resource.get("prefect.state-type")
        if not resource_id.startswith(FLOW_RUN_PREFIX) or state_type not in FINAL_STATES:
            return None
        return str(event["id"]), uuid.UUID(resource_id[len(FLOW_RUN_PREFIX) :])
    except (ValueError, TypeError, KeyError, AttributeError):
        logger.debug("events: ignored a frame that is not a flow-run state event")
        return None


def handshake(
    connection: Connection,
    *,
    token: Optional[str],
    subscription: Dict[str, Any],
    timeout: float,
    closed: Callable[[], bool],
) -> None:
    """Authenticate with ``token`` and send the filter ``subscription``; close on failure.

    Raises:
        StreamRefused: the server refused the token or the subprotocol.
        StreamClosed: the socket closed, or no answer came within ``timeout``.
    """
    try:
        connection.send(json.dumps({"type": "auth", "token": token}))
        answer = _first_message(connection, timeout, closed)
        if answer.get("type") != "auth_success":
            raise StreamRefused(f"the server answered the auth with {answer.get('type')!r}")
        connection.send(json.dumps({"type": "filter", "filter": subscription}))
    except StreamClosed as exc:
        connection.close()
        if exc.code in REFUSING_CLOSE_CODES:
            raise StreamRefused(f"closed with code {exc.code}") from None
        raise
    except StreamRefused:
        connection.close()
        raise


def _first_message(
    connection: Connection, timeout: float, closed: Callable[[], bool]
) -> Dict[str, Any]:
    """The server's answer to the auth message, within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not closed():
        frame = connection.receive()
        if frame is None:
            continue
        try:
            message = json.loads(frame)
        except ValueError:
            message = None
        if isinstance(message, dict):
            return message
        raise StreamRefused("the server's answer to the auth message is not JSON")
    raise StreamClosed("no answer to the auth message")
