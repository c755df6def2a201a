"""A round-robin load balancer on loopback in front of several Prefect API servers.

client -> Balancer -> server 0, server 1, ... Each request goes to the next
backend in turn (per request, not per connection). What it does when a
backend fails follows nginx's defaults (``proxy_next_upstream error timeout``):

=================================== =============================================
the backend ...                     the client sees
=================================== =============================================
refuses the connection              nothing: the request goes to the next backend,
                                    and the refusing one is skipped for
                                    ``retry_down_after`` seconds (then tried again)
fails after the request was sent    GET/HEAD/OPTIONS/PUT/DELETE: resent to the next
(reset, closed, timed out)          backend. POST/PATCH: ``502 Bad Gateway``, never
                                    resent, since the backend may have acted on it;
                                    the client decides (deploytrigger resends a
                                    create, whose idempotency key makes it safe)
every backend refuses               ``502 Bad Gateway``
=================================== =============================================

A WebSocket upgrade (Prefect's clients stream events over one) is tunnelled
byte for byte to one backend for the connection's life; when that backend
dies the tunnel closes and the client reconnects through the balancer.
``GET /_balancer`` answers the balancer's own counts per backend as JSON.

It is a :class:`~harness.proxy.Proxy`, so it also records
requests and applies fault rules. In a test::

    with Balancer(["http://127.0.0.1:4201/api", "http://127.0.0.1:4202/api"]) as lb:
        Client(lb.api_url).run_deployment(...)
        print(lb.stats())

As a process of its own (the production stack runs it so)::

    python -m harness.balancer --port 4200 \\
        http://127.0.0.1:4201/api http://127.0.0.1:4202/api
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Type
from urllib.parse import urlsplit

import requests

from harness.proxy import Proxy, _Handler

logger = logging.getLogger(__name__)

STATS_PATH = "/_balancer"
"""The path the balancer answers itself, with :meth:`Balancer.stats` as JSON."""
RETRY_DOWN_AFTER_SECONDS = 5.0
"""How long a backend that refused a connection is skipped by default."""
RESENDABLE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
"""Methods that HTTP defines as idempotent: resent to the next backend after a failure."""
_TUNNEL_CONNECT_SECONDS = 5.0


@dataclass
class BackendStats:
    """What happened to the requests sent to one backend.

    Attributes:
        origin: ``scheme://host:port``.
        answered: Requests it answered (any status).
        refused: Connections it refused (the request went to the next backend).
        failed: Requests that failed after they were sent (reset, closed, timeout).
        tunnels: WebSocket connections tunnelled to it.
        down: Whether it is being skipped right now.
    """

    origin: str
    answered: int = 0
    refused: int = 0
    failed: int = 0
    tunnels: int = 0
    down: bool = False


class Balancer(Proxy):
    """A round-robin reverse proxy over ``backends`` that routes around dead ones.

    Args:
        backends: The API URLs of the servers (same path, e.g. ``/api``).
        seed: Seeds the random choices of fault rules (see :class:`Proxy`).
        port: The loopback port to listen on; a free one by default.
        retry_down_after: Seconds a backend that refused a connection is
            skipped before it is tried again.

    Attributes:
        api_url: The balancer's API URL (same path as the backends').
        origins: ``scheme://host:port`` of each backend, in turn order.

    Raises:
        ValueError: No backend, or backends with different paths.
    """

    def __init__(
        self,
        backends: Sequence[str],
        *,
        seed: int = 0,
        port: int = 0,
        retry_down_after: float = RETRY_DOWN_AFTER_SECONDS,
    ) -> None:
        if not backends:
            raise ValueError("a balancer needs at least one backend")
        paths = {urlsplit(url).path.rstrip("/") for url in backends}
        if len(paths) != 1:
            raise ValueError(f"the backends must share one API path, not {sorted(paths)}")
        super().__init__(backends[0], seed=seed, port=port)
        self.origins: List[str] = [_origin(url) for url in backends]
        self.retry_down_after = retry_down_after
        self._turn = 0
        self._down_until: Dict[str, float] = {}
        self._stats: Dict[str, BackendStats] = {o: BackendStats(o) for o in self.origins}

    def __repr__(self) -> str:
        return f"Balancer({self.api_url!r} -> {self.origins!r})"

    def _handler_class(self) -> Type[_Handler]:
        return _BalancingHandler

    def order(self) -> List[str]:
        """The backends to try for the next request: the next in turn first, skipped ones last."""
        with self._lock:
            start = self._turn
            self._turn = (self._turn + 1) % len(self.origins)
            turn = self.origins[start:] + self.origins[:start]
            now = time.monotonic()
            up = [origin for origin in turn if self._down_until.get(origin, 0.0) <= now]
        return up + [origin for origin in turn if origin not in up]

    def stats(self) -> List[BackendStats]:
        """A copy of each backend's counts, in turn order."""
        now = time.monotonic()
        with self._lock:
            return [
                BackendStats(**{**asdict(s), "down": self._down_until.get(s.origin, 0.0) > now})
                for s in self._stats.values()
            ]

    def _count(self, origin: str, what: str) -> None:
        with self._lock:
            stats = self._stats[origin]
            setattr(stats, what, getattr(stats, what) + 1)
            if what == "refused":
                self._down_until[origin] = time.monotonic() + self.retry_down_after
            elif what == "answered":
                self._down_until.pop(origin, None)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _refused(exc: requests.RequestException) -> bool:
    """Whether the request surely never reached the backend (the connection was not made)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError):
        text = repr(exc.args[0]) if exc.args else ""
        return "NewConnectionError" in text
    return False


class _BalancingHandler(_Handler):
    """One client connection: each request to the next backend, upgrades tunnelled."""

    @property
    def balancer(self) -> Balancer:
        """The balancer this connection belongs to."""
        balancer = self.server.proxy
        assert isinstance(balancer, Balancer)
        return balancer

    def _proxy(self) -> None:
        if self.path == STATS_PATH and self.command == "GET":
            stats = [asdict(s) for s in self.balancer.stats()]
            body = json.dumps({"backends": stats}).encode()
            self._answer(200, {"Content-Type": "application/json"}, body)
        elif self.headers.get("Upgrade", "").lower() == "websocket":
            self._tunnel()
        else:
            super()._proxy()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _proxy

    def _forward(self, body: bytes) -> Tuple[int, Dict[str, str], bytes]:
        balancer = self.balancer
        for origin in balancer.order():
            request = f"{self.command} {self.path}"
            try:
                answer = self._send(origin, body)
            except requests.RequestException as exc:
                if _refused(exc):
                    balancer._count(origin, "refused")
                    logger.warning("%s refused %s; next backend", origin, request)
                    continue
                balancer._count(origin, "failed")
                if self.command in RESENDABLE_METHODS:
                    logger.warning("%s failed %s (%s); resent", origin, request, exc)
                    continue
                logger.warning("%s failed %s (%s); answered 502", origin, request, exc)
                return _bad_gateway(f"{origin} failed after the request was sent")
            balancer._count(origin, "answered")
            return answer
        return _bad_gateway("no backend answered")

    def _tunnel(self) -> None:
        """Pass the upgrade request and then every byte both ways to one backend."""
        self.close_connection = True
        balancer = self.balancer
        for origin in balancer.order():
            parts = urlsplit(origin)
            try:
                upstream = socket.create_connection(
                    (parts.hostname, parts.port), timeout=_TUNNEL_CONNECT_SECONDS
                )
            except OSError:
                balancer._count(origin, "refused")
                continue
            balancer._count(origin, "tunnels")
            break
        else:
            self._answer(*_bad_gateway("no backend accepted the upgrade"))
            return
        with upstream:
            upstream.settimeout(None)
            head = [f"{self.requestline}\r\n"] + [f"{k}: {v}\r\n" for k, v in self.headers.items()]
            upstream.sendall(("".join(head) + "\r\n").encode("latin-1"))
            back = threading.Thread(target=_pump, args=(upstream, self.connection), daemon=True)
            back.start()
            _pump(self.connection, upstream)
            back.join()


def _pump(source: socket.socket, target: socket.socket) -> None:
    """Copy bytes from ``source`` to ``target`` until either end closes."""
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            target.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (target, source):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _bad_gateway(detail: str) -> Tuple[int, Dict[str, str], bytes]:
    body = json.dumps({"detail": f"Bad Gateway: {detail}"}).encode()
    return 502, {"Content-Type": "application/json"}, body


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Balance requests over the given backends until SIGTERM or Ctrl-C; the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m harness.balancer",
        description="A round-robin reverse proxy over Prefect API servers.",
    )
    parser.add_argument("backends", nargs="+", metavar="API_URL", help="a backend's API URL")
    parser.add_argument("--port", type=int, default=0, help="the loopback port (default: free)")
    parser.add_argument("--retry-down-after", type=float, default=RETRY_DOWN_AFTER_SECONDS)
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    balancer = Balancer(
        options.backends, port=options.port, retry_down_after=options.retry_down_after
    )
    with balancer, contextlib.suppress(KeyboardInterrupt):
        logger.info("balancing %s over %s", balancer.api_url, ", ".join(balancer.origins))
        stopped.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
