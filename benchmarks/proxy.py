"""A counting reverse proxy on loopback: how many requests does the server receive?

Runs in a thread of the benchmark process and forwards every request to the
Prefect server unchanged, counting them by method and path, so that the
count is what the server sees whichever client sends it::

    with CountingProxy("http://127.0.0.1:4200") as proxy:
        ...  # point a client at proxy.api_url
        proxy.reset(); ...; print(proxy.total())
"""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Tuple

import urllib3

HOP_BY_HOP = {
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


class CountingProxy:
    """Forward ``http://127.0.0.1:<port>/...`` to ``upstream``; count what passes.

    Args:
        upstream: the server's base URL without ``/api``, e.g. ``http://127.0.0.1:4200``.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self._pool = urllib3.PoolManager(maxsize=64, retries=False)
        self._lock = threading.Lock()
        self._counts: Counter[Tuple[str, str]] = Counter()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                proxy._count(self.command, self.path)
                upstream = proxy._pool.request(
                    self.command,
                    proxy.upstream + self.path,
                    body=body,
                    headers=headers,
                    redirect=False,
                    preload_content=True,
                    decode_content=False,  # pass gzip through as the server sent it
                    timeout=60,
                )
                data = upstream.data
                self.send_response(upstream.status)
                for key, value in upstream.headers.items():
                    if key.lower() not in HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._pool.clear()

    def _count(self, method: str, path: str) -> None:
        with self._lock:
            self._counts[(method, path.split("?")[0])] += 1

    def reset(self) -> None:
        """Forget the counts so far."""
        with self._lock:
            self._counts.clear()

    def total(self) -> int:
        """Requests received since the last reset."""
        with self._lock:
            return sum(self._counts.values())

    def by_endpoint(self) -> Dict[str, int]:
        """Requests since the last reset per ``METHOD path`` (run ids folded to ``{id}``)."""
        folded: Counter[str] = Counter()
        with self._lock:
            for (method, path), count in self._counts.items():
                parts = [
                    "{id}" if len(part) == 36 and part.count("-") == 4 else part
                    for part in path.split("/")
                ]
                folded[f"{method} {'/'.join(parts)}"] += count
        return dict(folded)
