"""A throwaway PostgreSQL cluster for a Prefect server, on a free loopback port.

It uses the PostgreSQL 15 programs (``initdb``, ``pg_ctl``) from
``/usr/lib/postgresql/15/bin``, or any on ``PATH``, and runs them as the
``postgres`` user when this process is root (PostgreSQL refuses root)::

    with postgres() as url:   # None when PostgreSQL is not installed
        env = {"PREFECT_API_DATABASE_CONNECTION_URL": url} if url else {}

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
from typing import Iterator, List, Optional

from harness.processes import alive, command_line, free_port, tail, wait_gone

PG_BIN = Path("/usr/lib/postgresql/15/bin")
"""Where Debian installs the PostgreSQL 15 programs; preferred over ``PATH``."""


def postgres_bin(name: str) -> Optional[str]:
    """The path of PostgreSQL program ``name`` (version 15 preferred), or None when absent."""
    candidate = PG_BIN / name
    if candidate.is_file():
        return str(candidate)
    return shutil.which(name)


def postgres_available() -> bool:
    """Whether ``initdb`` and ``pg_ctl`` are installed."""
    return postgres_bin("initdb") is not None and postgres_bin("pg_ctl") is not None


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

    @property
    def log_path(self) -> Path:
        """The server's log file, inside ``data_dir``."""
        return self.data_dir / "postgres.log"

    def start(self) -> None:
        """Create the cluster and start it; returns when it accepts connections.

        Raises:
            RuntimeError: A PostgreSQL program is missing or failed (its output
                and the server log's tail are included).
        """
        initdb, pg_ctl = postgres_bin("initdb"), postgres_bin("pg_ctl")
        if initdb is None or pg_ctl is None:
            raise RuntimeError("PostgreSQL is not installed (initdb and pg_ctl not found)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.data_dir, "postgres", "postgres")
        self._run([initdb, "-D", str(self.data_dir), "-A", "trust", "-U", "postgres", "-E", "UTF8"])
        options = (
            f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1 "
            "-c max_connections=300 -c fsync=off -c synchronous_commit=off"
        )
        start = [pg_ctl, "-D", str(self.data_dir), "-o", options, "-l", str(self.log_path)]
        self._run([*start, "-w", "-t", "60", "start"])

    def pid(self) -> Optional[int]:
        """The postmaster's pid from ``postmaster.pid``, or None when it is not running."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        return pid if alive(pid) else None

    def stop(self) -> None:
        """Stop the server (``pg_ctl stop -m fast``, else signals). Safe to call again."""
        pg_ctl = postgres_bin("pg_ctl")
        pid = self.pid()
        if pid is None:
            return
        if pg_ctl is not None:
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                subprocess.run(
                    [*_as_postgres(), pg_ctl, "-D", str(self.data_dir), "-m", "fast", "-w", "stop"],
                    capture_output=True,
                    timeout=60,
                )
        if alive(pid) and "postgres" in command_line(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGQUIT)  # immediate shutdown, children included
            if not wait_gone(pid, 10):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def _run(self, args: List[str]) -> None:
        done = subprocess.run(
            [*_as_postgres(), *args],
            capture_output=True,
            text=True,
            timeout=120,
            start_new_session=True,  # the postmaster pg_ctl forks leaves our process group
            cwd="/",  # postgres may not be allowed into our working directory
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args[:2])} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
                f"\n{tail(self.log_path)}"
            )


@contextlib.contextmanager
def postgres() -> Iterator[Optional[str]]:
    """A throwaway PostgreSQL for a Prefect server, deleted afterwards.

    Yields:
        Its ``postgresql+asyncpg://`` URL, or None when PostgreSQL is not installed.
    """
    if not postgres_available():
        yield None
        return
    base = Path(tempfile.mkdtemp(prefix="deploytrigger-pg-"))
    os.chmod(base, 0o755)
    cluster = Postgres(base / "data")
    try:
        cluster.start()
        yield cluster.url
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
