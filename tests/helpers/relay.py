"""A loopback TCP relay to a test server: it carries REST and websockets alike.

``harness.proxy.Proxy`` speaks HTTP and does not pass websocket upgrades; this
relay pipes bytes, so the events stream goes through it too. It can cut every
connection through it (a dropped stream), and with ``ssl_context`` it
terminates TLS, serving ``https://``/``wss://`` in front of a plain server.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from typing import List, Optional
from urllib.parse import urlsplit


class Relay:
    """A loopback TCP relay to the server that can cut every connection through it.

    Args:
        upstream: the server's API URL (``http://127.0.0.1:4200/api``).
        ssl_context: a server-side context: the relay serves TLS (``api_url``
            is ``https://``); handshakes that fail are counted in
            ``failed_handshakes`` and the relay goes on accepting.
    """

    def __init__(self, upstream: str, ssl_context: Optional[ssl.SSLContext] = None) -> None:
        parts = urlsplit(upstream)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._context = ssl_context
        self._listener = socket.create_server(("127.0.0.1", 0))
        port = self._listener.getsockname()[1]
        scheme = "https" if ssl_context is not None else parts.scheme
        self.api_url = f"{scheme}://127.0.0.1:{port}{parts.path}"
        self._sockets: List[socket.socket] = []
        self._lock = threading.Lock()
        self.cuts = 0
        self.failed_handshakes = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        if self._context is not None:
            try:
                client.settimeout(30)
                client = self._context.wrap_socket(client, server_side=True)
                client.settimeout(None)
            except (ssl.SSLError, OSError):
                with self._lock:
                    self.failed_handshakes += 1
                with contextlib.suppress(OSError):
                    client.close()
                return
        try:
            upstream = socket.create_connection(self._target)
        except OSError:
            client.close()
            return
        with self._lock:
            self._sockets += [client, upstream]
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError, ValueError):
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        for end in (source, sink):
            with contextlib.suppress(OSError, ValueError):
                end.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Drop every connection through the relay (new ones are still accepted)."""
        with self._lock:
            cut, self._sockets = self._sockets, []
        for end in cut:
            with contextlib.suppress(OSError, ValueError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()
        self.cuts += 1

    def close(self) -> None:
        self._listener.close()
        self.cut()
