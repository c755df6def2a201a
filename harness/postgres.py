"""A throwaway PostgreSQL cluster for a Prefect server, on a free loopback port.

``initdb`` makes the cluster; ``postgres`` then runs in the foreground as a
:class:`~harness.processes.Service`, stopped by pid with a fast shutdown
(SIGINT). Both run as the ``postgres`` user when this process is root
(PostgreSQL refuses root). The programs are Debian's ``postgresql`` package's
(``make system-packages`` installs it)::

    with postgres() as url:
        env = {"PREFECT_API_DATABASE_CONNECTION_URL": url}

No database driver is imported here: the Prefect server connects with
``asyncpg`` (the ``server`` extra).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, Iterator, List, Optional

from harness.processes import Service, free_port, system_program

STARTUP_TIMEOUT_SECONDS = 60.0
"""How long ``postgres`` may take to accept connections."""


def _as_postgres() -> List[str]:
    """The command prefix that runs a program as ``postgres`` when we are root."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


class Postgres:
    """A throwaway PostgreSQL cluster on loopback with trust authentication.

    Args:
        data_dir: An empty (or not yet existing) directory for the cluster;
            made ``postgres``-owned when we are root.
        port: The TCP port; a free one by default.

    Attributes:
        data_dir: As given.
        port: The port it listens on.
    """

    def __init__(self, data_dir: Path, port: Optional[int] = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()

    def __repr__(self) -> str:
        return f"Postgres(data_dir={str(self.data_dir)!r}, port={self.port})"

    @property
    def url(self) -> str:
        """The SQLAlchemy URL Prefect's server wants (``asyncpg`` driver)."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def ready(self) -> bool:
        """Whether the server accepts connections (``pg_isready``)."""
        check = [system_program("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        return subprocess.run(check, timeout=30).returncode == 0

    def service(self, env: Dict[str, str], timeout: float = STARTUP_TIMEOUT_SECONDS) -> Service:
        """Create the cluster (``initdb``); the server as a :class:`Service`, not started.

        Raises:
            RuntimeError: PostgreSQL is not installed, or ``initdb`` failed (its
                output is included).
        """
        initdb = system_program("initdb")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.data_dir, "postgres", "postgres")
        init = [initdb, "-D", str(self.data_dir), "-A", "trust", "-U", "postgres", "-E", "UTF8"]
        done = subprocess.run(
            [*_as_postgres(), *init],
            capture_output=True,
            text=True,
            timeout=120,
            cwd="/",  # postgres may not be allowed into our working directory
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        server = [system_program("postgres"), "-D", str(self.data_dir), "-p", str(self.port)]
        server += ["-k", str(self.data_dir), "-c", "listen_addresses=127.0.0.1"]
        server += ["-c", "max_connections=300", "-c", "fsync=off", "-c", "synchronous_commit=off"]
        return Service(
            "postgres",
            [*_as_postgres(), *server],
            env,
            self.data_dir.parent / "postgres.log",
            ready=self.ready,
            cwd=Path("/"),
            timeout=timeout,
            stop_signal=signal.SIGINT,  # fast shutdown: clients are disconnected
        )


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL for a Prefect server, stopped and deleted afterwards.

    Yields:
        Its ``postgresql+asyncpg://`` URL.

    Raises:
        RuntimeError: PostgreSQL is not installed, or did not start.
    """
    base = Path(tempfile.mkdtemp(prefix="deploytrigger-pg-"))
    os.chmod(base, 0o755)
    cluster = Postgres(base / "data")
    try:
        with cluster.service({"PATH": os.environ.get("PATH", "/usr/bin:/bin")}):
            yield cluster.url
    finally:
        shutil.rmtree(base, ignore_errors=True)
