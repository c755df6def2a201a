"""A throwaway Redis server on a free loopback port, for Prefect's Redis messaging.

Several Prefect API servers share events (and so the events websocket of one
sees state changes made through another) only through a message broker;
``prefect-redis`` is Prefect's. This starts ``redis-server`` (Debian's
``redis-server`` package, installed by
:func:`~harness.system_packages.ensure_program` when missing and we are root)
in its own process group, with its files in a temporary directory, nothing
saved to disk, and stops it by pid::

    with redis() as server:
        env = server.prefect_settings()   # PREFECT_MESSAGING_BROKER=prefect_redis.messaging, ...

No Redis client is imported here: readiness is a raw ``PING``.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Dict, Iterator, List, Optional

from harness.processes import Child, free_port, wait_until
from harness.system_packages import ensure_program, find_program

STARTUP_TIMEOUT_SECONDS = 60.0
"""How long ``redis-server`` may take to answer ``PING``."""


def redis_available() -> bool:
    """Whether ``redis-server`` is installed (it can still be installed when we are root)."""
    return find_program("redis-server") is not None


def prefect_redis_settings(host: str, port: int, db: int = 0) -> Dict[str, str]:
    """The settings that make a Prefect server use the Redis at ``host:port`` for messaging.

    Broker and cache (events between API servers), causal ordering of events,
    and concurrency lease storage, as Prefect's scale-out guide has them.
    Every process of a stack (API servers, services) needs the same ones.
    """
    return {
        "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
        "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
        "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
        "PREFECT_REDIS_MESSAGING_HOST": host,
        "PREFECT_REDIS_MESSAGING_PORT": str(port),
        "PREFECT_REDIS_MESSAGING_DB": str(db),
    }


def ping(host: str, port: int, timeout: float = 2.0) -> bool:
    """Whether a Redis server at ``host:port`` answers ``PING`` with ``+PONG``."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class Redis:
    """A ``redis-server`` on 127.0.0.1 without persistence, its files in ``base_dir``.

    Args:
        base_dir: A directory for its working files and log (created if missing).
        port: The TCP port; a free one by default.

    Attributes:
        base_dir: As given.
        port: The port it listens on.
        host: Always ``127.0.0.1``.
        child: The running server while started.
    """

    host = "127.0.0.1"

    def __init__(self, base_dir: Path, port: Optional[int] = None) -> None:
        self.base_dir = base_dir
        self.port = port or free_port()
        self.child: Optional[Child] = None

    def __repr__(self) -> str:
        return f"Redis(base_dir={str(self.base_dir)!r}, port={self.port})"

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def log_path(self) -> Path:
        """The server's log file, inside ``base_dir``."""
        return self.base_dir / "redis.log"

    def pid(self) -> Optional[int]:
        """The server's pid while it runs, else None."""
        return self.child.pid if self.child is not None and self.child.running() else None

    def prefect_settings(self, db: int = 0) -> Dict[str, str]:
        """See :func:`prefect_redis_settings`."""
        return prefect_redis_settings(self.host, self.port, db)

    def command(self) -> List[str]:
        """The ``redis-server`` command line (installing the package first when needed).

        Raises:
            RuntimeError: ``redis-server`` is missing and cannot be installed here.
        """
        program = ensure_program("redis-server", "redis-server")
        args = [program, "--bind", self.host, "--port", str(self.port)]
        args += ["--dir", str(self.base_dir), "--save", "", "--appendonly", "no"]
        return [*args, "--daemonize", "no", "--protected-mode", "yes", "--logfile", ""]

    def answers(self) -> bool:
        """Whether the server answers ``PING``."""
        return ping(self.host, self.port)

    def start(self, timeout: float = STARTUP_TIMEOUT_SECONDS) -> None:
        """Start the server; returns when it answers ``PING``.

        Raises:
            RuntimeError: ``redis-server`` is missing and cannot be installed,
                or it exited or did not answer in time (its log's tail is included).
        """
        if self.child is not None:
            raise RuntimeError(f"{self!r} is already started")
        command = self.command()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.child = Child("redis-server", command, {"PATH": "/usr/bin:/bin"}, self.log_path)
        try:
            wait_until(
                self.answers,
                f"redis-server on port {self.port} to answer PING",
                children=[self.child],
                watched=self.child,
                timeout=timeout,
            )
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server by pid (SIGTERM, then SIGKILL). Safe to call again."""
        if self.child is not None:
            self.child.stop(grace=10)
            self.child = None


@contextlib.contextmanager
def redis(port: Optional[int] = None) -> Iterator[Redis]:
    """A started throwaway :class:`Redis` in a temporary directory, stopped and deleted afterwards.

    Raises:
        RuntimeError: See :meth:`Redis.start`.
    """
    base = Path(tempfile.mkdtemp(prefix="deploytrigger-redis-"))
    server = Redis(base, port)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
