"""A production-shaped Prefect stack on loopback: PostgreSQL, the server, a work pool, workers.

What issue 7 measures deploytrigger on, and what the production integration
test runs against::

    with ProdStack() as stack:
        print(stack.api_url)   # http://127.0.0.1:<port>/api, deployments in stack.pool

From a shell (``make prod-up`` / ``make prod-down``)::

    python benchmarks/prod_stack.py up       # start; state in .prod/state.json
    python benchmarks/prod_stack.py status   # what runs, and whether the server is healthy
    python benchmarks/prod_stack.py down     # stop everything by pid, delete the temp dirs

The pieces, each a child process in its own process group (session):

1. a throwaway PostgreSQL 15 cluster (``initdb`` + ``pg_ctl`` from
   ``/usr/lib/postgresql/15/bin``) in a temporary directory on a free loopback
   port, run as the ``postgres`` user when we are root (it refuses root);
2. the pinned Prefect server with
   ``PREFECT_API_DATABASE_CONNECTION_URL=postgresql+asyncpg://...``;
3. a ``process`` work pool and deployments of ``examples/flows.py``
   (``add/add-dep``, ``fail/fail-dep``, ``sleepy/sleepy-dep``), created over
   REST with a ``set_working_directory`` pull step, so a worker runs the flow
   from the local ``examples/`` directory (no image, no storage block);
4. two or more ``prefect worker start --pool <pool>`` processes that poll every
   second (``PREFECT_WORKER_QUERY_SECONDS=1``) and run each flow run in a subprocess.

This module imports nothing from Prefect; the interpreter needs the ``server``
extra (Prefect and ``asyncpg``). Nothing is left running: the context manager,
``atexit`` and ``down`` stop every process started here by pid.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence
from urllib.parse import quote

import requests

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
EXAMPLES_DIR = REPO / "examples"
if str(EXAMPLES_DIR) not in sys.path:
    sys.path.insert(0, str(EXAMPLES_DIR))

from local_prefect import free_port, prefect_command  # noqa: E402

PG_BIN = Path("/usr/lib/postgresql/15/bin")
STATE_DIR = REPO / ".prod"
STATE_FILE = STATE_DIR / "state.json"
POOL_NAME = "prod-pool"
STOP_GRACE_SECONDS = 15.0
READY_POLL_SECONDS = 0.5
LOG_TAIL_LINES = 40

_INT = {"type": "integer"}
_NUMBER = {"type": "number"}
_STRING = {"type": "string"}

#: Deployments created in the pool: name -> entrypoint in examples/, defaults, tags,
#: version, and the flow's parameters (a minimal OpenAPI schema, as Prefect derives it).
DEPLOYMENTS: Dict[str, Dict[str, Any]] = {
    "add/add-dep": {
        "entrypoint": "flows.py:add",
        "parameters": {"y": 10},
        "tags": ["examples"],
        "version": "1.0",
        "properties": {"x": {**_INT, "default": 1}, "y": {**_INT, "default": 2}},
    },
    "fail/fail-dep": {
        "entrypoint": "flows.py:fail",
        "properties": {"message": {**_STRING, "default": "boom"}},
    },
    "sleepy/sleepy-dep": {
        "entrypoint": "flows.py:sleepy",
        "properties": {"seconds": {**_NUMBER, "default": 30.0}},
    },
}


def postgres_bin(name: str) -> Optional[str]:
    """The path of PostgreSQL program ``name`` (15 preferred), or None when absent."""
    candidate = PG_BIN / name
    if candidate.is_file():
        return str(candidate)
    return shutil.which(name)


def postgres_available() -> bool:
    """Whether ``initdb`` and ``pg_ctl`` are installed."""
    return postgres_bin("initdb") is not None and postgres_bin("pg_ctl") is not None


def _as_postgres() -> List[str]:
    """The command prefix that runs a program as ``postgres`` (it refuses to run as root)."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


# -- processes, by pid ---------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours has exited: reap it
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        done = 0
    if done:
        return False
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            return False
    return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def stop_group(pid: int, marker: str = "") -> None:
    """Stop the process group led by ``pid``: SIGTERM, then SIGKILL after a grace period.

    With ``marker``, only when the process's command line still contains it
    (so a recycled pid from an old state file is never signalled).
    """
    if not _alive(pid) or (marker and marker not in _cmdline(pid)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)  # whatever the leader left behind in its group
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    _wait_gone(pid, STOP_GRACE_SECONDS)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    _wait_gone(pid, 5)


def _spawn(
    args: Sequence[str], env: Mapping[str, str], log: Path, cwd: Optional[Path] = None
) -> int:
    """Start ``args`` in a new session (its own process group), output to ``log``; its pid."""
    with open(log, "ab") as out:
        process = subprocess.Popen(
            list(args),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process.pid


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "".join(path.read_text(errors="replace").splitlines(True)[-lines:])
    except OSError:
        return ""


# -- PostgreSQL --------------------------------------------------------------------------------


class Postgres:
    """A throwaway PostgreSQL cluster on a free loopback port with trust authentication.

    Args:
        data_dir: an empty directory for the cluster (made ``postgres``-owned).
        port: the TCP port; a free one by default.
    """

    def __init__(self, data_dir: Path, port: Optional[int] = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()

    @property
    def url(self) -> str:
        """The SQLAlchemy URL Prefect's server wants (``asyncpg`` driver)."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "postgres.log"

    def start(self) -> None:
        """``initdb`` and ``pg_ctl start``; returns when the server accepts connections.

        Raises:
            RuntimeError: a PostgreSQL program is missing or failed (its output is included).
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
            first = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
            pid = int(first)
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def stop(self) -> None:
        """``pg_ctl stop -m fast``; the postmaster is killed if that fails. Safe to call again."""
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
        if _alive(pid) and "postgres" in _cmdline(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGQUIT)  # immediate shutdown, children included
            if not _wait_gone(pid, 10):
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
                f"\n{_tail(self.log_path)}"
            )


@contextlib.contextmanager
def postgres() -> Iterator[Optional[str]]:
    """A throwaway PostgreSQL for a Prefect server: its asyncpg URL, or None when not installed.

    ``benchmarks/run.py`` can use this instead of its own copy (same contract).
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


# -- the stack ---------------------------------------------------------------------------------


class ProdStack:
    """PostgreSQL, a Prefect server on it, a process work pool with deployments, and workers.

    Args:
        workers: how many ``prefect worker start`` processes (at least one; two by default).
        pool: the work pool's name.
        worker_limit: flow runs each worker executes at once (each is a Python
            subprocess importing Prefect: a few per core at most).
        startup_timeout: seconds to wait for each piece to become ready.
        env: extra environment for the server and the workers, winning over ours.
        base_dir: where to put the cluster, ``PREFECT_HOME`` and the logs; a new
            temporary directory by default (deleted on stop).

    Attributes:
        api_url: ``http://127.0.0.1:<port>/api`` once started.
        base_dir: the directory with ``pg/``, ``home/`` and ``*.log``.
        state: pids, ports and directories (what ``prod_stack.py down`` needs).
    """

    def __init__(
        self,
        *,
        workers: int = 2,
        pool: str = POOL_NAME,
        worker_limit: int = 4,
        startup_timeout: float = 240.0,
        env: Optional[Mapping[str, str]] = None,
        base_dir: Optional[Path] = None,
    ) -> None:
        if workers < 1:
            raise ValueError("a work pool needs at least one worker")
        self.workers = workers
        self.pool = pool
        self.worker_limit = worker_limit
        self.startup_timeout = startup_timeout
        self._extra_env = dict(env or {})
        self._given_base = base_dir
        self.base_dir: Optional[Path] = None
        self.port = 0
        self.api_url = ""
        self.postgres: Optional[Postgres] = None
        self.pids: Dict[str, int] = {}
        self.logs: Dict[str, str] = {}

    def __repr__(self) -> str:
        return f"ProdStack(api_url={self.api_url!r}, base_dir={str(self.base_dir)!r})"

    def __enter__(self) -> ProdStack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def state(self) -> Dict[str, Any]:
        return {
            "api_url": self.api_url,
            "port": self.port,
            "pool": self.pool,
            "base_dir": str(self.base_dir),
            "postgres": {
                "port": self.postgres.port if self.postgres else None,
                "data_dir": str(self.postgres.data_dir) if self.postgres else None,
                "url": self.postgres.url if self.postgres else None,
            },
            "pids": dict(self.pids),
            "logs": dict(self.logs),
            "deployments": sorted(DEPLOYMENTS),
        }

    def start(self) -> ProdStack:
        """Bring everything up, in order, each piece waited for.

        Raises:
            RuntimeError: a piece failed or was not ready in time; everything
                started so far is stopped again (the error shows its log's tail).
        """
        if self.base_dir is not None:
            raise RuntimeError(f"{self!r} is already started")
        if self._given_base is not None:
            self._given_base.mkdir(parents=True, exist_ok=True)
            self.base_dir = self._given_base
        else:
            self.base_dir = Path(tempfile.mkdtemp(prefix="deploytrigger-prod-"))
        os.chmod(self.base_dir, 0o755)  # postgres must reach its data dir inside
        (self.base_dir / "home").mkdir(exist_ok=True)
        atexit.register(self.stop)
        try:
            self.postgres = Postgres(self.base_dir / "pg")
            self.postgres.start()
            self._start_server()
            self._create_pool_and_deployments()
            self._start_workers()
        except BaseException:
            self.stop()
            raise
        return self

    def detach(self) -> None:
        """Leave the stack running when this process exits (the CLI's ``up``)."""
        atexit.unregister(self.stop)

    def stop(self) -> None:
        """Stop the workers, the server and PostgreSQL by pid; delete base_dir. Idempotent."""
        for name in sorted(self.pids, key=lambda n: n == "server"):  # workers first
            stop_group(self.pids.pop(name))
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres = None
        if self.base_dir is not None:
            if self._given_base is None:
                shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None
        atexit.unregister(self.stop)

    # -- pieces --

    def environment(self, extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
        """The environment of the server and workers: ours, without the user's PREFECT_*."""
        assert self.base_dir is not None and self.postgres is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(
            PREFECT_HOME=str(self.base_dir / "home"),
            PREFECT_API_URL=self.api_url,
            PREFECT_API_DATABASE_CONNECTION_URL=self.postgres.url,
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_SERVER_UI_ENABLED="false",
            PREFECT_WORKER_QUERY_SECONDS="1",
            PREFECT_WORKER_PREFETCH_SECONDS="5",
            PREFECT_LOGGING_LEVEL="INFO",
        )
        env.update(extra or {})
        env.update(self._extra_env)
        return env

    def _start_server(self) -> None:
        assert self.base_dir is not None
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        args = [*prefect_command(), "server", "start", "--host", "127.0.0.1"]
        args += ["--port", str(self.port)]
        self._spawn("server", args, self.environment())
        self._wait_until(self.healthy, "GET /api/health to answer true", "server")

    def _create_pool_and_deployments(self) -> None:
        with requests.Session() as http:
            _post(http, f"{self.api_url}/work_pools/", {"name": self.pool, "type": "process"})
            for name, spec in DEPLOYMENTS.items():
                flow_name, deployment_name = name.split("/")
                flow = _post(http, f"{self.api_url}/flows/", {"name": flow_name})
                _post(
                    http,
                    f"{self.api_url}/deployments/",
                    self.deployment_body(flow["id"], deployment_name, spec),
                )

    def deployment_body(self, flow_id: str, name: str, spec: Mapping[str, Any]) -> Dict[str, Any]:
        """The ``POST /deployments/`` body for one of ``DEPLOYMENTS`` (tests re-create with it)."""
        return {
            "name": name,
            "flow_id": flow_id,
            "work_pool_name": self.pool,
            "entrypoint": spec["entrypoint"],
            "path": str(EXAMPLES_DIR),
            "pull_steps": [
                {
                    "prefect.deployments.steps.set_working_directory": {
                        "directory": str(EXAMPLES_DIR)
                    }
                }
            ],
            "parameters": dict(spec.get("parameters", {})),
            "tags": list(spec.get("tags", [])),
            "version": spec.get("version"),
            "parameter_openapi_schema": {
                "title": "Parameters",
                "type": "object",
                "properties": spec["properties"],
            },
            "enforce_parameter_schema": False,
        }

    def _start_workers(self) -> None:
        names = [f"prod-worker-{index}" for index in range(self.workers)]
        for name in names:
            args = [*prefect_command(), "worker", "start", "--pool", self.pool, "--name", name]
            args += ["--type", "process", "--limit", str(self.worker_limit)]
            self._spawn(name, args, self.environment())
        self._wait_until(
            lambda: set(names) <= set(self.online_workers()),
            f"workers {', '.join(names)} to report to pool {self.pool!r}",
            names[-1],
        )

    def online_workers(self) -> List[str]:
        """Names of the workers the server has seen in the pool."""
        try:
            response = requests.post(
                f"{self.api_url}/work_pools/{quote(self.pool)}/workers/filter", json={}, timeout=10
            )
        except requests.RequestException:
            return []
        if response.status_code != 200:
            return []
        return [worker["name"] for worker in response.json() if worker.get("status") == "ONLINE"]

    def healthy(self) -> bool:
        """Whether the server answers ``GET /api/health`` with ``true``."""
        try:
            response = requests.get(f"{self.api_url}/health", timeout=5)
        except requests.RequestException:
            return False
        return response.status_code == 200 and response.text.strip() == "true"

    def _spawn(self, name: str, args: List[str], env: Mapping[str, str]) -> None:
        assert self.base_dir is not None
        log = self.base_dir / f"{name}.log"
        self.pids[name] = _spawn(args, env, log, cwd=self.base_dir)
        self.logs[name] = str(log)

    def _wait_until(self, ready: Any, what: str, watched: str) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while not ready():
            for name, pid in self.pids.items():
                if not _alive(pid):
                    raise RuntimeError(
                        f"{name} exited while waiting for {what}; last lines of its log:\n"
                        f"{_tail(Path(self.logs[name]))}"
                    )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"gave up after {self.startup_timeout:.0f} s waiting for {what}; "
                    f"last lines of {watched}.log:\n{_tail(Path(self.logs[watched]))}"
                )
            time.sleep(READY_POLL_SECONDS)


def _post(http: requests.Session, url: str, body: Mapping[str, Any]) -> Dict[str, Any]:
    response = http.post(url, json=body, timeout=30)
    if response.status_code not in (200, 201):
        raise RuntimeError(f"POST {url}: {response.status_code} {response.text[:500]}")
    result: Dict[str, Any] = response.json()
    return result


# -- the command line ----------------------------------------------------------------------------


def _load_state() -> Optional[Dict[str, Any]]:
    try:
        state: Dict[str, Any] = json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return None
    return state


def cmd_up(options: argparse.Namespace) -> int:
    state = _load_state()
    if state is not None and any(_alive(pid) for pid in state["pids"].values()):
        print(f"already up ({STATE_FILE}); run 'down' first", file=sys.stderr)
        return 1
    STATE_DIR.mkdir(exist_ok=True)
    stack = ProdStack(workers=options.workers)
    print("starting PostgreSQL, the Prefect server and the workers ...", flush=True)
    stack.start()
    stack.detach()
    STATE_FILE.write_text(json.dumps(stack.state, indent=2) + "\n")
    print(f"PREFECT_API_URL={stack.api_url}")
    print(f"work pool {stack.pool!r} with {stack.workers} workers; deployments:")
    for name in DEPLOYMENTS:
        print(f"  {name}")
    print(f"logs and data in {stack.base_dir}; state in {STATE_FILE}")
    return 0


def cmd_down(options: argparse.Namespace) -> int:
    state = _load_state()
    if state is None:
        print("nothing to stop (no state file)")
        return 0
    markers = {"server": "server start"}
    for name, pid in sorted(state["pids"].items(), key=lambda item: item[0] == "server"):
        print(f"stopping {name} (pid {pid})", flush=True)
        stop_group(pid, markers.get(name, "worker start"))
    data_dir = state["postgres"]["data_dir"]
    if data_dir:
        print("stopping PostgreSQL", flush=True)
        Postgres(Path(data_dir), state["postgres"]["port"]).stop()
    base = Path(state["base_dir"])
    if base.name.startswith("deploytrigger-prod-") and base.is_dir():
        shutil.rmtree(base, ignore_errors=True)
    STATE_FILE.unlink()
    print("down")
    return 0


def cmd_status(options: argparse.Namespace) -> int:
    state = _load_state()
    if state is None:
        print("down (no state file)")
        return 1
    print(f"PREFECT_API_URL={state['api_url']}  base dir {state['base_dir']}")
    for name, pid in state["pids"].items():
        print(f"  {name:16} pid {pid:<8} {'running' if _alive(pid) else 'GONE'}")
    pg = Postgres(Path(state["postgres"]["data_dir"]), state["postgres"]["port"])
    print(f"  {'postgres':16} pid {pg.pid() or '-'!s:<8} port {pg.port}")
    try:
        health = requests.get(f"{state['api_url']}/health", timeout=5).text.strip()
    except requests.RequestException as exc:
        health = f"unreachable ({type(exc).__name__})"
    print(f"  health: {health}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the stack and leave it running")
    up.add_argument("--workers", type=int, default=2)
    sub.add_parser("down", help="stop everything 'up' started")
    sub.add_parser("status", help="show pids and server health")
    options = parser.parse_args(argv)
    commands = {"up": cmd_up, "down": cmd_down, "status": cmd_status}
    return commands[options.command](options)


if __name__ == "__main__":
    sys.exit(main())
