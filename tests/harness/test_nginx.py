"""nginx as the balancer (harness.nginx) over small loopback backends.

Each backend is a threaded HTTP server in this process that answers with its
own name; a "dead" one is a port nothing listens on (connection refused), a
"crashing" one reads the request and closes the connection without answering
(what a killed server does to a request in flight).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator, List, Tuple

import pytest
import requests

from harness.nginx import Nginx, nginx_config, parse_access
from harness.processes import free_port


class Backend:
    """A loopback HTTP server whose every answer is ``{"name": <name>, "path": <path>}``."""

    def __init__(self, name: str, crash: bool = False) -> None:
        self.name = name
        self.received: List[Tuple[str, str]] = []
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def handle_one(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                backend.received.append((self.command, self.path))
                if crash:
                    self.close_connection = True
                    self.connection.close()
                    return
                body = json.dumps({"name": backend.name, "path": self.path}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = handle_one

            def setup(self) -> None:
                super().setup()
                backend.connections.append(self.connection)

        self.connections: List[socket.socket] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stop listening and close every open connection, as a killed process's kernel does."""
        self.server.shutdown()
        self.server.server_close()
        for connection in self.connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()
        self.thread.join(5)


@pytest.fixture()
def backends() -> Iterator[List[Backend]]:
    started = [Backend("a"), Backend("b")]
    yield started
    for backend in started:
        backend.stop()


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}/api"


def names(balancer: Nginx, count: int, method: str = "GET") -> List[str]:
    answers = []
    for index in range(count):
        response = requests.request(method, f"{balancer.api_url}/thing/{index}", timeout=10)
        assert response.status_code == 200, response.text
        answers.append(response.json()["name"])
    return answers


def test_the_config_is_what_the_production_guide_tells_users(tmp_path: Path) -> None:
    config = nginx_config(4200, ["127.0.0.1:4201", "127.0.0.1:4202"], prefix=tmp_path)
    for line in [
        "daemon off;",
        "server 127.0.0.1:4201 max_fails=1 fail_timeout=10s;",
        "server 127.0.0.1:4202 max_fails=1 fail_timeout=10s;",
        "keepalive 64;",
        "map $http_upgrade $connection_upgrade {",
        "proxy_http_version 1.1;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        "proxy_read_timeout 3600s;",
        "proxy_next_upstream error timeout http_502 http_503;",
        "listen 127.0.0.1:4200;",
    ]:
        assert line in config
    guide = Path(__file__).resolve().parents[2] / "docs" / "guides" / "production.rst"
    text = guide.read_text()
    assert "proxy_read_timeout 3600s;" in text
    assert "proxy_next_upstream error timeout http_502 http_503;" in text


def test_an_access_log_line_names_every_upstream_tried() -> None:
    line = (
        '{"method":"GET","uri":"/api/x","status":"200","upstream_addr":"127.0.0.1:1, 127.0.0.1:2",'
        '"upstream_status":"502, 200","request_time":"0.004"}'
    )
    access = parse_access(line)
    assert access.upstreams == (("127.0.0.1:1", "502"), ("127.0.0.1:2", "200"))
    assert (access.method, access.uri, access.status) == ("GET", "/api/x", 200)


def test_requests_go_to_the_backends_in_turn(backends: List[Backend]) -> None:
    with Nginx([b.url for b in backends]) as balancer, requests.Session() as http:
        got = [http.get(f"{balancer.api_url}/x", timeout=10).json()["name"] for _ in range(6)]
    assert got == ["a", "b", "a", "b", "a", "b"]
    assert backends[0].received == [("GET", "/api/x")] * 3


def test_a_refused_connection_goes_to_the_next_backend_and_the_dead_one_is_skipped(
    backends: List[Backend],
) -> None:
    dead = dead_url()
    with Nginx([dead, backends[0].url]) as balancer:
        assert names(balancer, 4, "POST") == ["a"] * 4
        log = balancer.access_log()
    dead_addr = dead.split("//")[1].split("/")[0]
    tried_dead = [access for access in log if access.upstreams[0][0] == dead_addr]
    assert len(tried_dead) == 1  # tried once, then skipped for fail_timeout
    assert tried_dead[0].upstreams[0][1] == "502" and tried_dead[0].status == 200
    assert backends[0].received == [("POST", f"/api/thing/{n}") for n in range(4)]


def test_a_backend_killed_between_requests_is_routed_around(backends: List[Backend]) -> None:
    with Nginx([b.url for b in backends]) as balancer, requests.Session() as http:
        assert [http.get(f"{balancer.api_url}/x", timeout=10).json()["name"] for _ in range(2)] == [
            "a",
            "b",
        ]
        backends[1].stop()
        after = [http.post(f"{balancer.api_url}/x", timeout=10) for _ in range(6)]
    assert [r.status_code for r in after] == [200] * 6
    assert {r.json()["name"] for r in after} == {"a"}


def test_a_post_that_fails_after_it_was_sent_is_answered_502_and_not_resent(
    backends: List[Backend],
) -> None:
    crashing = Backend("crashing", crash=True)
    try:
        with Nginx([crashing.url, backends[0].url]) as balancer:
            response = requests.post(f"{balancer.api_url}/create", json={}, timeout=10)
    finally:
        crashing.stop()
    assert response.status_code == 502
    assert crashing.received == [("POST", "/api/create")]
    assert backends[0].received == []  # the backend may have acted: never sent twice


def test_a_get_that_fails_after_it_was_sent_is_resent_to_the_next_backend(
    backends: List[Backend],
) -> None:
    crashing = Backend("crashing", crash=True)
    try:
        with Nginx([crashing.url, backends[0].url]) as balancer:
            response = requests.get(f"{balancer.api_url}/read", timeout=10)
    finally:
        crashing.stop()
    assert response.status_code == 200 and response.json()["name"] == "a"
    assert crashing.received == [("GET", "/api/read")]


def test_every_backend_dead_is_a_502() -> None:
    with Nginx([dead_url(), dead_url()]) as balancer:
        response = requests.post(f"{balancer.api_url}/create", json={}, timeout=10)
    assert response.status_code == 502


def test_a_websocket_upgrade_is_tunnelled_both_ways_to_a_live_backend() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    heads: List[bytes] = []

    def echo_backend() -> None:
        connection, _ = listener.accept()
        with connection:
            head = b""
            while b"\r\n\r\n" not in head:
                head += connection.recv(4096)
            heads.append(head)
            connection.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\n\r\n"
            )
            while True:
                data = connection.recv(4096)
                if not data:
                    break
                connection.sendall(data.upper())

    thread = threading.Thread(target=echo_backend, daemon=True)
    thread.start()
    try:
        balancer = Nginx([dead_url(), f"http://127.0.0.1:{port}/api"])
        with balancer, socket.create_connection(("127.0.0.1", balancer.port), timeout=10) as client:
            client.sendall(
                b"GET /api/events/in HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\n\r\n"
            )
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += client.recv(4096)
            client.sendall(b"ping")
            echoed = client.recv(4096)
    finally:
        listener.close()
        thread.join(5)
    assert answer.startswith(b"HTTP/1.1 101")
    assert echoed == b"PING"
    assert heads[0].startswith(b"GET /api/events/in HTTP/1.1\r\n")
    assert b"Upgrade: websocket\r\n" in heads[0]
    assert b"Connection: upgrade\r\n" in heads[0]


def test_a_balancer_needs_backends_on_one_api_path() -> None:
    with pytest.raises(ValueError, match="at least one backend"):
        Nginx([])
    with pytest.raises(ValueError, match="share one API path"):
        Nginx(["http://127.0.0.1:1/api", "http://127.0.0.1:2/other"])
