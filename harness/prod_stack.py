"""A production-shaped Prefect stack on loopback: PostgreSQL, the server, a work pool, workers.

What the scaling benchmark measures deploytrigger on, and what the
production integration test runs against::

    with ProdStack(Path("examples/flows.py")) as stack:
        print(stack.api_url)   # http://127.0.0.1:<port>/api, deployments in stack.pool

The pieces, each a process stopped by pid, the last started first (the
context manager, or mirakuru when Python exits):

1. a throwaway PostgreSQL cluster (:class:`~harness.postgres.Postgres`);
2. the Prefect server with ``PREFECT_API_DATABASE_CONNECTION_URL`` pointing at it;
   or, with ``api_servers=2`` (scale-out), two API-only servers on that database
   (``prefect server start --no-services``), the background services once in a
   process of their own (``prefect server services start``), nginx in front of
   the API servers (:mod:`harness.nginx`), whose URL is the stack's
   ``api_url``, and by default a Redis server (pytest-redis's
   ``RedisExecutor``) for Prefect's Redis messaging (``prefect-redis``),
   through which every API server's events websocket sees the events of all
   of them;
3. a ``process`` work pool and deployments of a flows script (:data:`DEPLOYMENTS`),
   created over REST with a ``set_working_directory`` pull step, so a worker
   runs the flow from the script's directory (no image, no storage block);
4. ``prefect worker start --pool <pool>`` processes that poll every second and
   run each flow run in a subprocess (they talk to ``api_url``: nginx
   when there is one).

This module imports nothing from Prefect; the interpreter needs the ``server``
extra (Prefect and ``asyncpg``) and PostgreSQL's programs; scale-out also
``prefect-redis`` and Debian's ``nginx`` and ``redis-server`` (``make
system-packages`` installs the three).
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional
from urllib.parse import quote

import requests

from harness.local_server import (
    prefect_command,
    prefect_environment,
    server_command,
    server_healthy,
)
from harness.nginx import Nginx
from harness.postgres import Postgres
from harness.processes import Harness, Service, free_port, system_program

if TYPE_CHECKING:
    from mirakuru import SimpleExecutor
    from pytest_redis.executor import RedisExecutor

POOL_NAME = "prod-pool"
"""The work pool's default name."""
POSTGRES = "postgres"
"""The database's name among :attr:`ProdStack.children`."""
SERVER = "server"
"""The server's name among :attr:`ProdStack.children`; the workers are ``prod-worker-<n>``.

With several API servers they are ``server-<n>``, beside :data:`SERVICES` and :data:`BALANCER`.
"""
SERVICES = "services"
"""The background services' process (scale-out only)."""
BALANCER = "nginx"
"""The load balancer's process, nginx (scale-out only)."""
REDIS = "redis"
"""The Redis server's process (scale-out with Redis messaging only)."""


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


_INT = {"type": "integer"}
_NUMBER = {"type": "number"}
_STRING = {"type": "string"}

#: Deployments created in the pool, for the flows of ``examples/flows.py``:
#: ``"<flow>/<deployment>"`` -> the flow's function in the flows script, the
#: deployment's default parameters, tags and version, and the flow's parameters
#: (a minimal OpenAPI schema, as Prefect derives it).
DEPLOYMENTS: Dict[str, Dict[str, Any]] = {
    "add/add-dep": {
        "function": "add",
        "parameters": {"y": 10},
        "tags": ["examples"],
        "version": "1.0",
        "properties": {"x": {**_INT, "default": 1}, "y": {**_INT, "default": 2}},
    },
    "fail/fail-dep": {
        "function": "fail",
        "properties": {"message": {**_STRING, "default": "boom"}},
    },
    "sleepy/sleepy-dep": {
        "function": "sleepy",
        "properties": {"seconds": {**_NUMBER, "default": 30.0}},
    },
}


class ProdStack(Harness):
    """PostgreSQL, a Prefect server on it, a process work pool with deployments, and workers.

    Args:
        flows_script: The Python file that defines the deployments' flows; the
            workers run them from its directory.
        deployments: The deployments to create, as :data:`DEPLOYMENTS`.
        workers: How many ``prefect worker start`` processes; 0 leaves the runs
            of the pool's deployments to something else to execute.
        api_servers: How many API server processes share the database; above
            one they are API-only, behind nginx, with the background services
            run once in a process of their own.
        redis: With several API servers, whether they share events through
            Prefect's Redis messaging (a Redis server of the stack's own);
            without it each API server's events websocket sees only the state
            changes made through that server. Ignored for one API server.
        pool: The work pool's name.
        worker_limit: Flow runs each worker executes at once (each is a Python
            subprocess importing Prefect: a few per core at most).
        startup_timeout: Seconds to wait for each piece to become ready.
        env: Extra environment for the server and the workers, winning over ours.
        base_dir: Where to put the cluster, ``PREFECT_HOME`` and the logs; a new
            temporary directory by default (deleted on stop).

    Attributes:
        api_url: ``http://127.0.0.1:<port>/api`` once started: the server's, or
            nginx's when there are several API servers.
        backend_urls: Each API server's own URL, in nginx's turn order.
        nginx: The balancer's configuration and logs while started (scale-out only).
        redis: The Redis server while started (scale-out with ``redis`` only).
        base_dir: The directory with ``pg/``, ``home/`` and ``*.log`` while started.
        postgres: The database while started.
        children: The database, Redis, servers, services, nginx and workers by
            name, in the order they started, while started.

    Raises:
        ValueError: ``workers`` is below zero or ``api_servers`` below one.
        FileNotFoundError: ``flows_script`` is not a file.
    """

    def __init__(
        self,
        flows_script: Path,
        *,
        deployments: Mapping[str, Mapping[str, Any]] = DEPLOYMENTS,
        workers: int = 2,
        api_servers: int = 1,
        redis: bool = True,
        pool: str = POOL_NAME,
        worker_limit: int = 4,
        startup_timeout: float = 240.0,
        env: Optional[Mapping[str, str]] = None,
        base_dir: Optional[Path] = None,
    ) -> None:
        if workers < 0:
            raise ValueError(f"workers must be 0 or more, not {workers}")
        if api_servers < 1:
            raise ValueError(f"a stack needs at least one API server, not {api_servers}")
        if not Path(flows_script).is_file():
            raise FileNotFoundError(f"no flows script at {flows_script}")
        self.flows_script = Path(flows_script).resolve()
        self.deployments = dict(deployments)
        self.workers = workers
        self.api_servers = api_servers
        self.use_redis = redis and api_servers > 1
        self.pool = pool
        self.worker_limit = worker_limit
        self.startup_timeout = startup_timeout
        self._extra_env = dict(env or {})
        self._given_base = base_dir
        self.base_dir: Optional[Path] = None
        self.port = 0
        self.api_url = ""
        self.backend_urls: List[str] = []
        self.postgres: Optional[Postgres] = None
        self.nginx: Optional[Nginx] = None
        self.redis: Optional[RedisExecutor] = None
        self.children: Dict[str, SimpleExecutor] = {}

    def __repr__(self) -> str:
        return f"ProdStack(api_url={self.api_url!r}, base_dir={str(self.base_dir)!r})"

    @property
    def redis_url(self) -> Optional[str]:
        """``redis://127.0.0.1:<port>/0`` while the stack's Redis runs, else None."""
        return None if self.redis is None else f"redis://{self.redis.host}:{self.redis.port}/0"

    @property
    def state(self) -> Dict[str, Any]:
        """What the stack is made of, for people and scripts (JSON-serialisable)."""
        return {
            "api_url": self.api_url,
            "pool": self.pool,
            "base_dir": str(self.base_dir),
            "database": self.postgres.url if self.postgres else None,
            "backends": list(self.backend_urls),
            "redis": self.redis_url,
            "pids": {
                name: child.process.pid
                for name, child in self.children.items()
                if child.process is not None
            },
            "deployments": sorted(self.deployments),
        }

    def _start(self) -> None:
        """Bring everything up, in order, each piece waited for."""
        if self._given_base is not None:
            self._given_base.mkdir(parents=True, exist_ok=True)
            self.base_dir = self._given_base
        else:
            self.base_dir = Path(tempfile.mkdtemp(prefix="deploytrigger-prod-"))
        self.on_stop(self._forget)
        os.chmod(self.base_dir, 0o755)  # postgres must reach its data dir inside
        (self.base_dir / "home").mkdir(exist_ok=True)
        self.postgres = Postgres(self.base_dir / "pg")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        self._run(POSTGRES, self.postgres.service(env, self.startup_timeout))
        if self.api_servers == 1:
            self._start_server()
        else:
            self._start_scaled_out()
        self._create_pool_and_deployments()
        if self.workers:
            self._start_workers()

    def _forget(self) -> None:
        """Delete base_dir (a temporary one) once every process has stopped."""
        if self.base_dir is not None and self._given_base is None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
        self.base_dir = self.postgres = self.nginx = self.redis = None
        self.children = {}

    def environment(self, extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
        """The environment of the server and the workers, plus ``extra``."""
        assert self.base_dir is not None and self.postgres is not None
        ours = {
            "PREFECT_API_DATABASE_CONNECTION_URL": self.postgres.url,
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_PREFETCH_SECONDS": "5",
            "PREFECT_LOGGING_LEVEL": "INFO",
        }
        if self.redis is not None:
            ours.update(prefect_redis_settings(self.redis.host, self.redis.port))
        home = self.base_dir / "home"
        return prefect_environment(home, self.api_url, ours, extra, self._extra_env)

    def deployment_body(self, flow_id: str, name: str, spec: Mapping[str, Any]) -> Dict[str, Any]:
        """The ``POST /deployments/`` body for a deployment ``name`` of flow ``flow_id``.

        Args:
            flow_id: The flow's id on the server.
            name: The deployment's name (without the flow's).
            spec: One of :data:`DEPLOYMENTS`' values.
        """
        directory = str(self.flows_script.parent)
        return {
            "name": name,
            "flow_id": flow_id,
            "work_pool_name": self.pool,
            "entrypoint": f"{self.flows_script.name}:{spec['function']}",
            "path": directory,
            "pull_steps": [
                {"prefect.deployments.steps.set_working_directory": {"directory": directory}}
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
        return server_healthy(self.api_url)

    def kill(self, name: str) -> None:
        """Kill child ``name``'s process group with SIGKILL, as a crash would, and wait for it.

        It stays in :attr:`children` (stopping it again later is harmless).

        Raises:
            KeyError: No child has that name.
        """
        self.children[name].kill()

    def _start_server(self) -> None:
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.backend_urls = [self.api_url]
        self._run(SERVER, self._service(SERVER, server_command(self.port), ready=self.healthy))

    def _start_scaled_out(self) -> None:
        """Redis, API-only servers (the first one migrates the database), the services, nginx."""
        assert self.base_dir is not None
        if self.use_redis:
            from pytest_redis.executor import RedisExecutor

            (self.base_dir / "redis").mkdir(exist_ok=True)
            self.redis = RedisExecutor(
                system_program("redis-server"),
                databases=1,
                redis_timeout=0,  # never close an idle client
                loglevel="notice",
                host="127.0.0.1",
                port=free_port(),
                datadir=self.base_dir / "redis",
                startup_timeout=int(self.startup_timeout),
            )
            self._run(REDIS, self.redis)
        ports = [free_port() for _ in range(self.api_servers)]
        self.backend_urls = [f"http://127.0.0.1:{port}/api" for port in ports]
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        names = [f"{SERVER}-{index}" for index in range(self.api_servers)]
        migrated = {"PREFECT_API_DATABASE_MIGRATE_ON_START": "false"}
        servers = [
            self._service(
                name,
                [*server_command(port), "--no-services"],
                None if index == 0 else migrated,
                ready=functools.partial(server_healthy, url),
            )
            for index, (name, port, url) in enumerate(zip(names, ports, self.backend_urls))
        ]
        self._run(names[0], servers[0])  # migrates the database before the others start
        for name, server in zip(names[1:], servers[1:]):
            self._run(name, server)
        self._run(
            SERVICES,
            self._service(SERVICES, [*prefect_command(), "server", "services", "start"], migrated),
        )
        self.nginx = Nginx(self.backend_urls, port=self.port, base_dir=self.base_dir / "nginx")
        self.nginx.prepare()
        self._run(BALANCER, self.nginx.service(self.environment(), self.startup_timeout))

    def _create_pool_and_deployments(self) -> None:
        with requests.Session() as http:
            _post(http, f"{self.api_url}/work_pools/", {"name": self.pool, "type": "process"})
            for name, spec in self.deployments.items():
                flow_name, deployment_name = name.split("/")
                flow = _post(http, f"{self.api_url}/flows/", {"name": flow_name})
                body = self.deployment_body(flow["id"], deployment_name, spec)
                _post(http, f"{self.api_url}/deployments/", body)

    def _start_workers(self) -> None:
        names = [f"prod-worker-{index}" for index in range(self.workers)]
        for name in names:
            args = [*prefect_command(), "worker", "start", "--pool", self.pool, "--name", name]
            args += ["--type", "process", "--limit", str(self.worker_limit)]
            last = name == names[-1]
            ready = (lambda: set(names) <= set(self.online_workers())) if last else None
            self._run(name, self._service(name, args, ready=ready))

    def _service(
        self,
        name: str,
        args: List[str],
        env: Optional[Mapping[str, str]] = None,
        ready: Optional[Callable[[], bool]] = None,
    ) -> Service:
        """A Prefect process of the stack, run from base_dir, its output in ``<name>.log``."""
        assert self.base_dir is not None
        return Service(
            name,
            args,
            self.environment(env),
            self.base_dir / f"{name}.log",
            ready=ready,
            cwd=self.base_dir,
            timeout=self.startup_timeout,
        )

    def _run(self, name: str, executor: SimpleExecutor) -> None:
        """Start ``executor`` as child ``name`` and wait until it is ready."""
        self.children[name] = self.run(executor)


def _post(http: requests.Session, url: str, body: Mapping[str, Any]) -> Dict[str, Any]:
    response = http.post(url, json=body, timeout=30)
    if response.status_code not in (200, 201):
        raise RuntimeError(f"POST {url}: {response.status_code} {response.text[:500]}")
    result: Dict[str, Any] = response.json()
    return result
