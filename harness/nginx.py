"""nginx on a free loopback port as the load balancer in front of several Prefect API servers.

What a user puts in front of several ``prefect server start --no-services``
processes, configured as a user would (:func:`nginx_config`, also shown in
``docs/guides/production.rst``):

* one ``upstream`` with every API server, round robin, keep-alive connections
  to them;
* the websocket upgrade (``proxy_http_version 1.1`` and the ``Upgrade`` /
  ``Connection`` headers, with the usual ``map``), so Prefect's events stream
  (``/api/events/out``) works through it;
* ``proxy_read_timeout 3600s``: far longer than the server's 20 s websocket
  ping, so an idle stream is never cut by the balancer;
* ``proxy_next_upstream error timeout http_502 http_503``: a request that a
  server refuses (connection refused, reset, 502/503) goes to the next one;
  nginx never resends a POST or PATCH that reached a server (it may have
  acted), the client decides (deploytrigger resends a create with the same
  idempotency key).

The harness runs Debian's ``nginx`` (``make system-packages`` installs it)
with its own prefix and config in a temporary directory, in the foreground
(``daemon off``) in its own process group, and stops it by pid. Its access log
is JSON, one line per request with the upstream(s) tried and their statuses
(:meth:`Nginx.access_log`)::

    with Nginx(["http://127.0.0.1:4201/api", "http://127.0.0.1:4202/api"]) as lb:
        Client(lb.api_url).run_deployment(...)

As a process of its own (the production stack runs it so)::

    nginx -p <prefix> -e <prefix>/error.log -c <prefix>/nginx.conf
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from harness.processes import Harness, Service, free_port, system_program

READ_TIMEOUT = "3600s"
"""``proxy_read_timeout``: idle time nginx allows on a connection, websockets included.

Prefect's server pings a websocket every 20 s; nginx's default (60 s) would
already do, but a wait may sit on one socket for hours between events.
"""
STARTUP_TIMEOUT_SECONDS = 60.0
"""How long nginx may take to accept connections."""


def split_backends(backend_urls: Sequence[str]) -> Tuple[List[str], str]:
    """The ``host:port`` of each backend URL and their common API path (``/api``).

    Raises:
        ValueError: No backends, or they differ in their path.
    """
    if not backend_urls:
        raise ValueError("nginx needs at least one backend")
    parts = [urlsplit(url) for url in backend_urls]
    paths = {part.path.rstrip("/") for part in parts}
    if len(paths) != 1:
        raise ValueError(f"the backends must share one API path, not {sorted(paths)}")
    return [part.netloc for part in parts], paths.pop()


def nginx_config(
    port: int,
    backends: Sequence[str],
    *,
    prefix: Path,
    worker_processes: int = 1,
) -> str:
    """The whole ``nginx.conf`` for a balancer on ``127.0.0.1:port`` over ``backends``.

    Args:
        port: Where nginx listens.
        backends: Each API server's ``host:port``.
        prefix: nginx's prefix (``-p``): the pid file, logs and temp files go there.
        worker_processes: nginx worker processes.
    """
    line = "        server {} max_fails=1 fail_timeout=10s;"
    servers = "\n".join(line.format(backend) for backend in backends)
    log_format = json.dumps(
        {
            "method": "$request_method",
            "uri": "$request_uri",
            "status": "$status",
            "upstream_addr": "$upstream_addr",
            "upstream_status": "$upstream_status",
            "request_time": "$request_time",
        }
    )
    return f"""\
# A load balancer in front of several Prefect API servers (harness.nginx).
worker_processes {worker_processes};
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;

events {{
    worker_connections 4096;
}}

http {{
    log_format upstreams escape=json '{log_format}';
    access_log {prefix}/access.log upstreams;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;

    # A websocket upgrade passes "Connection: upgrade" on; any other request
    # sends no Connection header, which keeps the upstream connections alive.
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      '';
    }}

    upstream prefect_api {{
{servers}
        keepalive 64;
    }}

    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 64m;

        location / {{
            proxy_pass http://prefect_api;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            # longer than the server's 20 s websocket ping, and than any long request
            proxy_read_timeout {READ_TIMEOUT};
            proxy_send_timeout {READ_TIMEOUT};
            # a refused, reset or overloaded server: try the next one (never for a
            # POST/PATCH that reached a server: nginx does not resend those)
            proxy_next_upstream error timeout http_502 http_503;
            proxy_next_upstream_tries 3;
            proxy_buffering off;
        }}
    }}
}}
"""


@dataclass(frozen=True)
class Access:
    """One line of the access log.

    Attributes:
        method: The request's method.
        uri: Its path and query.
        status: What the client got.
        upstreams: Each upstream tried, in order, with what it answered
            (``"502"`` for a refused or broken connection).
    """

    method: str
    uri: str
    status: int
    upstreams: Tuple[Tuple[str, str], ...]


def parse_access(line: str) -> Access:
    """One access log line as an :class:`Access`."""
    record: Dict[str, Any] = json.loads(line)
    addrs = [addr.strip() for addr in str(record["upstream_addr"]).split(",")]
    statuses = [status.strip() for status in str(record["upstream_status"]).split(",")]
    upstreams = tuple(
        (addr, status) for addr, status in zip(addrs, statuses) if addr and addr != "-"
    )
    return Access(record["method"], record["uri"], int(record["status"]), upstreams)


class Nginx(Harness):
    """nginx balancing ``backend_urls`` on a free loopback port, run from a temporary prefix.

    Args:
        backend_urls: Each API server's URL (``http://127.0.0.1:<port>/api``).
        port: Where nginx listens; a free port by default.
        base_dir: nginx's prefix; a new temporary directory by default (deleted on stop).
        startup_timeout: Seconds to wait for nginx to accept connections.

    Attributes:
        api_url: ``http://127.0.0.1:<port><path>``, the backends' API path through nginx.
        backends: Each backend's ``host:port``.
        prefix: nginx's prefix while started.
    """

    def __init__(
        self,
        backend_urls: Sequence[str],
        *,
        port: Optional[int] = None,
        base_dir: Optional[Path] = None,
        startup_timeout: float = STARTUP_TIMEOUT_SECONDS,
    ) -> None:
        self.backends, path = split_backends(backend_urls)
        self.port = port or free_port()
        self.api_url = f"http://127.0.0.1:{self.port}{path}"
        self.startup_timeout = startup_timeout
        self._given_base = base_dir
        self.prefix: Optional[Path] = None

    def __repr__(self) -> str:
        return f"Nginx(api_url={self.api_url!r}, backends={self.backends!r})"

    @property
    def config_path(self) -> Path:
        """``nginx.conf`` in the prefix."""
        assert self.prefix is not None
        return self.prefix / "nginx.conf"

    def command(self) -> List[str]:
        """The command that runs nginx in the foreground with this prefix and config.

        Raises:
            RuntimeError: nginx is not installed (the message says how to install it).
        """
        assert self.prefix is not None
        program = system_program("nginx")
        prefix = str(self.prefix)
        return [program, "-p", prefix, "-e", f"{prefix}/error.log", "-c", str(self.config_path)]

    def prepare(self) -> None:
        """Make the prefix and write the config (nothing is started)."""
        if self._given_base is not None:
            self._given_base.mkdir(parents=True, exist_ok=True)
            self.prefix = self._given_base.resolve()
        else:
            self.prefix = Path(tempfile.mkdtemp(prefix="deploytrigger-nginx-"))
        os.chmod(self.prefix, 0o755)  # workers run as nobody when the master is root
        (self.prefix / "tmp").mkdir(exist_ok=True)
        (self.prefix / "logs").mkdir(exist_ok=True)
        self.config_path.write_text(nginx_config(self.port, self.backends, prefix=self.prefix))

    def accepting(self) -> bool:
        """Whether something accepts TCP connections on nginx's port."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2):
                return True
        except OSError:
            return False

    def access_log(self) -> List[Access]:
        """Every request nginx has logged so far (written when each one ends)."""
        assert self.prefix is not None
        try:
            lines = (self.prefix / "access.log").read_text().splitlines()
        except OSError:
            return []
        return [parse_access(line) for line in lines if line.strip()]

    def service(self, env: Mapping[str, str], timeout: float = STARTUP_TIMEOUT_SECONDS) -> Service:
        """nginx as a :class:`~harness.processes.Service` (not started), after :meth:`prepare`."""
        assert self.prefix is not None
        return Service(
            "nginx",
            self.command(),
            env,
            self.prefix / "nginx.out",
            ready=self.accepting,
            cwd=self.prefix,
            timeout=timeout,
        )

    def _start(self) -> None:
        self.prepare()
        self.on_stop(self._forget_prefix)
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
        self.run(self.service(env, self.startup_timeout))

    def _forget_prefix(self) -> None:
        if self.prefix is not None and self._given_base is None:
            shutil.rmtree(self.prefix, ignore_errors=True)
        self.prefix = None
