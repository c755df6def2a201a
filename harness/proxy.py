"""A reverse proxy on loopback that records, counts and spoils requests: client -> Proxy -> server.

The proxy listens on a free loopback port (optionally with TLS) and forwards
every request to ``upstream`` as it came, and every answer back as it came
(bodies still compressed). Every request received is recorded (method, path,
monotonic and wall-clock receive times, action), so tests can count requests
per endpoint and assert how retries were spaced. Rules pick requests to spoil,
by method and path regex and by occurrence (``nth``, ``every``) or at a seeded
``rate``:

========== ====================================================================
action     what the client sees
========== ====================================================================
reset      the connection is reset (RST) before anything is forwarded
drop       the request IS forwarded and the server acts; the answer is thrown
           away and the connection closed (the client never hears)
delay      nothing for ``delay`` seconds, then the request is forwarded and
           answered (late: the client has usually given up by then)
status     an answer made up by the proxy: ``status`` with ``headers`` and
           ``body`` (429/503 with ``Retry-After``, 500, 403 ...), not forwarded
garbage    ``200`` with a body that is not JSON, not forwarded
========== ====================================================================

Two more modes, set when constructed: ``api_path`` serves the API under
another path (``/api/accounts/A/workspaces/W``, as Prefect Cloud does) and
forwards each request to the same place below the upstream's path; and
``max_per_minute`` answers ``429`` (action ``"limited"``, not forwarded) to the
requests above that rate, measured with a token bucket that holds one second's
worth (``burst``) and refills continuously.

::

    with Proxy(api_url) as proxy:
        proxy.add_rule(Rule(action="status", status=429, path=r"/create_flow_run$",
                            nth={1}, headers={"Retry-After": "2"}))
        Client(proxy.api_url).run_deployment(...)
        times = proxy.times(path=r"/create_flow_run$")
        proxy.clear_received(); ...; print(proxy.total(), proxy.by_endpoint())
"""

from __future__ import annotations

import contextlib
import random
import re
import socket
import ssl
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, FrozenSet, List, Optional, Sequence, Tuple, Type
from urllib.parse import urlsplit

import requests

ACTIONS = ("reset", "drop", "delay", "status", "garbage")
"""What a :class:`Rule` can do to a request; ``"mixed"`` picks one of its ``mix``."""

UPSTREAM_TIMEOUT_SECONDS = 120.0

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


@dataclass
class Rule:
    """Which requests to spoil and how.

    A rule matches a request when ``method`` and ``path`` (regexes, searched in
    the method and in the path with its query) match. Of the matching requests
    (counted from 1, by every rule that matches) it fires on those in ``nth``,
    on every ``every``-th one, at random with probability ``rate`` (seeded), or
    on all of them when none of the three is given; at most ``limit`` times.

    For ``action="mixed"`` each firing picks one of ``mix`` at random (seeded).
    """

    action: str
    method: str = ".*"
    path: str = ".*"
    nth: FrozenSet[int] = frozenset()
    every: Optional[int] = None
    rate: Optional[float] = None
    limit: Optional[int] = None
    status: int = 503
    headers: Dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"detail":"injected by the test proxy"}'
    delay: float = 0.0
    mix: Sequence[Rule] = ()
    seen: int = 0
    fired: int = 0

    def __post_init__(self) -> None:
        if self.action not in (*ACTIONS, "mixed"):
            raise ValueError(f"unknown action {self.action!r}")
        self.nth = frozenset(self.nth)

    def fires(self, chance: random.Random) -> bool:
        """Whether the rule acts on the request it has just counted in ``seen``.

        Args:
            chance: Draws the number compared with ``rate``, only when it is needed.
        """
        if self.limit is not None and self.fired >= self.limit:
            return False
        return (
            self.seen in self.nth
            or (self.every is not None and self.seen % self.every == 0)
            or (self.rate is not None and chance.random() < self.rate)
            or (not self.nth and self.every is None and self.rate is None)
        )


@dataclass
class Received:
    """One request as the proxy received it, what it did with it (``"forward"``: nothing),
    and the status the client was answered (None: no answer, or not yet).

    ``client_port`` is the port of the client's end of the connection it came
    on: requests with the same port came on the same connection.
    """

    method: str
    path: str
    monotonic: float
    wall: float
    action: str
    body: bytes = field(default=b"", repr=False)
    status: Optional[int] = None
    client_port: int = 0


class Proxy:
    """A threaded reverse proxy in front of ``upstream`` that records requests and injects faults.

    Without rules it only forwards and counts. Use it as a context manager, or
    call :meth:`start` and :meth:`stop`.

    Args:
        upstream: The real server's API URL (``http://127.0.0.1:4200/api``).
        seed: Seeds every random choice, so a run is repeatable.
        ssl_context: Serve HTTPS with this server-side context.
        port: The loopback port to listen on; a free one by default.
        api_path: The path the proxy serves the API under (``upstream``'s by
            default); requests below it go to the same place below ``upstream``'s
            path, others get 404 (action ``"unknown-path"``).
        max_per_minute: Answer 429 to requests above this rate (None: no limit).
        burst: Requests the rate limit lets through at once after a quiet spell
            (default: one second's worth, at least 1).
        retry_after: The ``Retry-After`` header of those 429s (None: none).

    Attributes:
        api_url: The proxy's API URL (``api_path`` on the proxy's host and port).
        upstream_origin: ``scheme://host:port`` of ``upstream``.
        received: Every request received since the last :meth:`clear_received`.
    """

    def __init__(
        self,
        upstream: str,
        *,
        seed: int = 0,
        ssl_context: Optional[ssl.SSLContext] = None,
        port: int = 0,
        api_path: Optional[str] = None,
        max_per_minute: Optional[float] = None,
        burst: Optional[float] = None,
        retry_after: Optional[str] = None,
    ) -> None:
        parts = urlsplit(upstream)
        self.upstream_origin = f"{parts.scheme}://{parts.netloc}"
        self.upstream_path = parts.path.rstrip("/")
        self.api_path = (parts.path if api_path is None else api_path).rstrip("/")
        self.max_per_minute = max_per_minute
        self._burst = max(1.0, (max_per_minute or 0) / 60.0) if burst is None else burst
        self._tokens = self._burst
        self._refilled = time.monotonic()
        self._retry_after = retry_after
        self._current = threading.local()  # the record of the request each handler thread serves
        self.received: List[Received] = []
        self._rules: List[Rule] = []
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._stopping = threading.Event()
        self._server = _Server(("127.0.0.1", port), self._handler_class())
        self._server.proxy = self
        if ssl_context is not None:
            self._server.socket = ssl_context.wrap_socket(self._server.socket, server_side=True)
        port = self._server.server_address[1]
        scheme = "https" if ssl_context is not None else "http"
        self.api_url = f"{scheme}://127.0.0.1:{port}{self.api_path}"
        self._thread: Optional[threading.Thread] = None

    def __repr__(self) -> str:
        return f"Proxy({self.api_url!r} -> {self.upstream_origin!r})"

    def _handler_class(self) -> Type[_Handler]:
        """The class that serves each connection; a subclass may serve its own."""
        return _Handler

    # -- lifecycle --------------------------------------------------------------

    def start(self) -> Proxy:
        """Start serving in a daemon thread; returns this proxy."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening, end delayed requests, close every open connection."""
        self._stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(10)
            self._thread = None
        self._server.server_close()
        self._server.close_all()

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- rules ------------------------------------------------------------------

    def add_rule(self, rule: Rule) -> Rule:
        """Apply ``rule`` to the requests from now on, after the rules added before it."""
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear_rules(self) -> None:
        """Forward every request from now on."""
        with self._lock:
            self._rules.clear()

    # -- records and counts -------------------------------------------------------

    def clear_received(self) -> None:
        """Forget the requests received so far (rules keep their counts)."""
        with self._lock:
            self.received.clear()

    def matching(self, method: str = ".*", path: str = ".*") -> List[Received]:
        """The requests received whose method and path (with query) match the regexes."""
        with self._lock:
            return [
                r for r in self.received if re.search(method, r.method) and re.search(path, r.path)
            ]

    def times(self, method: str = ".*", path: str = ".*") -> List[float]:
        """Monotonic receive times of the matching requests."""
        return [r.monotonic for r in self.matching(method, path)]

    def actions(self) -> Dict[str, int]:
        """How many requests each action was applied to (``"forward"`` for untouched ones)."""
        with self._lock:
            return dict(Counter(r.action for r in self.received))

    def total(self) -> int:
        """How many requests were received."""
        with self._lock:
            return len(self.received)

    def by_endpoint(self) -> Dict[str, int]:
        """Requests received per ``"METHOD /path"``, query dropped and UUIDs folded to ``{id}``."""
        with self._lock:
            return dict(Counter(_endpoint(r.method, r.path) for r in self.received))

    # -- decisions --------------------------------------------------------------

    def upstream_path_of(self, path: str) -> Optional[str]:
        """The upstream path for a path received (query kept); None: not below ``api_path``."""
        if not path.startswith(self.api_path):
            return None
        rest = path[len(self.api_path) :]
        if rest and rest[0] not in "/?":
            return None
        return self.upstream_path + rest

    def _over_rate(self, now: float) -> bool:
        """Whether a request at ``now`` is above ``max_per_minute``; takes a token if not."""
        if self.max_per_minute is None:
            return False
        rate = self.max_per_minute / 60.0
        self._tokens = min(self._burst, self._tokens + (now - self._refilled) * rate)
        self._refilled = now
        if self._tokens < 1.0:
            return True
        self._tokens -= 1.0
        return False

    def _decide(
        self, method: str, path: str, body: bytes = b"", client_port: int = 0
    ) -> Optional[Rule]:
        """Record a request and pick the rule that acts on it (None: forward it)."""
        with self._lock:
            rule = self._choose(method, path, body, client_port)
            self._current.record = self.received[-1]
            return rule

    def _answered(self, status: int) -> None:
        """Note the status this thread's request was answered with."""
        record = getattr(self._current, "record", None)
        if record is not None:
            record.status = status

    def _choose(self, method: str, path: str, body: bytes, client_port: int) -> Optional[Rule]:
        """Record a request and pick its rule; called with the lock held."""
        now = time.monotonic()
        if self.upstream_path_of(path) is None:
            self.received.append(
                Received(
                    method, path, now, time.time(), "unknown-path", body, client_port=client_port
                )
            )
            return _UNKNOWN_PATH
        if self._over_rate(now):
            self.received.append(
                Received(method, path, now, time.time(), "limited", body, client_port=client_port)
            )
            return Rule(
                action="status",
                status=429,
                headers={} if self._retry_after is None else {"Retry-After": self._retry_after},
                body=b'{"detail":"rate limited by the test proxy"}',
            )
        matching = [
            rule
            for rule in self._rules
            if re.search(rule.method, method) and re.search(rule.path, path)
        ]
        for rule in matching:  # every matching rule counts the request
            rule.seen += 1
        chosen = next((rule for rule in matching if rule.fires(self._random)), None)
        if chosen is not None:
            chosen.fired += 1
            if chosen.action == "mixed":
                chosen = self._random.choice(list(chosen.mix))
        action = chosen.action if chosen else "forward"
        self.received.append(
            Received(
                method, path, time.monotonic(), time.time(), action, body, client_port=client_port
            )
        )
        return chosen


_UNKNOWN_PATH = Rule(action="status", status=404, body=b'{"detail":"Not Found"}')


def _endpoint(method: str, path: str) -> str:
    parts = [
        "{id}" if len(part) == 36 and part.count("-") == 4 else part
        for part in path.split("?", 1)[0].split("/")
    ]
    return f"{method} {'/'.join(parts)}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # many client threads connect at once
    proxy: Proxy

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._connections: List[socket.socket] = []
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.append(request)
        super().process_request(request, client_address)

    def close_all(self) -> None:
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that went away is expected here


class _Handler(BaseHTTPRequestHandler):
    """One client connection, with its own upstream session (so its own upstream connection)."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.upstream = requests.Session()
        self.upstream.headers.clear()  # send the client's headers, no more

    def finish(self) -> None:
        self.upstream.close()
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _proxy(self) -> None:
        proxy = self.server.proxy
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        rule = proxy._decide(self.command, self.path, body, self.client_address[1])
        action = rule.action if rule else "forward"
        if action == "reset":
            self._reset()
            return
        if action == "status":
            assert rule is not None
            self._answer(rule.status, rule.headers, rule.body)
            return
        if action == "garbage":
            self._answer(200, {"Content-Type": "text/html"}, b"<html>Bad Gateway-ish</html>")
            return
        if action == "delay":
            assert rule is not None
            if proxy._stopping.wait(rule.delay):
                self._reset()
                return
        try:
            status, headers, content = self._forward(body)
        except requests.RequestException:
            self._reset()
            return
        if action == "drop":
            self._reset()
            return
        self._answer(status, headers, content)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _proxy

    def _forward(self, body: bytes) -> Tuple[int, Dict[str, str], bytes]:
        """Send the request upstream; the answer's status, headers and undecoded body."""
        return self._send(self.server.proxy.upstream_origin, body)

    def _send(self, origin: str, body: bytes) -> Tuple[int, Dict[str, str], bytes]:
        """Send the request to ``origin`` (``scheme://host:port``), as :meth:`_forward` does."""
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        proxy = self.server.proxy
        with self.upstream.request(
            self.command,
            origin + (proxy.upstream_path_of(self.path) or ""),
            data=body or None,
            headers=headers,
            timeout=UPSTREAM_TIMEOUT_SECONDS,
            allow_redirects=False,
            stream=True,
        ) as response:
            content = response.raw.read(decode_content=False)
            answer = {k: v for k, v in response.headers.items() if k.lower() not in _HOP_BY_HOP}
            return response.status_code, answer, content

    def _answer(self, status: int, headers: Dict[str, str], body: bytes) -> None:
        self.server.proxy._answered(status)
        try:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _reset(self) -> None:
        """Close the connection with a TCP RST, answering nothing."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            self.connection.close()
