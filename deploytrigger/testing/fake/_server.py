"""The fake Prefect API on loopback: :class:`FakePrefect` and :func:`fake_prefect`.

A ``http.server.ThreadingHTTPServer`` on ``127.0.0.1`` (a free port) in a
daemon thread puts ``backend.Backend`` behind HTTP (``http_server.py``). While
a :class:`FakePrefect` is active, ``PREFECT_API_URL`` points at it, so
``deploytrigger.run_deployment``, ``Client()`` and Prefect's own client use it
without being told.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Type,
)

from deploytrigger.guard import fence

from ._backend import Backend, RecordedRequest
from ._http_server import API_PREFIX, HTTPServer
from ._outcomes import NO_RESULT, Outcome

if TYPE_CHECKING:
    from deploytrigger import Deployment, FlowRun


_FENCE_FIX = (
    "This client was made for another URL, e.g. at import: make clients when first "
    "needed (Client() and the module-level functions read PREFECT_API_URL, which "
    "points at the fake), or pass api_url=fake.api_url (the fake_prefect fixture's); "
    "a deploytrigger.configure(api_url=...) at import needs the same: read the URL "
    "from PREFECT_API_URL instead (see the testing guide)."
)

TICK = 0.02
"""Seconds between two looks for planned state changes that are due."""

ENVIRONMENT = ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_API_AUTH_STRING")
"""The variables a started fake sets (the URL) or clears (credentials), and restores on exit."""


def _split_name(name: Any) -> List[str]:
    parts = name.split("/") if isinstance(name, str) else []
    if len(parts) != 2 or not all(part.strip() for part in parts):
        raise ValueError(f"a deployment is named 'flow/deployment', not {name!r}")
    return parts


class FakePrefect:
    """A fake Prefect 3.x API on loopback, for testing code that triggers deployments.

    Use it as a context manager (or through the ``fake_prefect`` pytest
    fixture)::

        with fake_prefect() as fake:
            fake.add_deployment("etl/nightly", parameters={"day": "today"})
            fake.set_outcome("etl/nightly", "FAILED", message="disk full")
            run = deploytrigger.run_deployment("etl/nightly", timeout=10)

    Args:
        set_environment: point ``PREFECT_API_URL`` at the fake while it runs
            (and unset ``PREFECT_API_KEY`` and ``PREFECT_API_AUTH_STRING``),
            restoring them on exit, and fence the process in: every
            deploytrigger client, whenever it was made, may then send requests
            only to the fake; one made for another URL raises
            :class:`~deploytrigger.ConfigurationError` and sends nothing.
            Without it, pass :attr:`api_url` yourself.
        clock: the current POSIX time in seconds (state changes are due
            against it); ``time.time`` by default.
    """

    def __init__(
        self, *, set_environment: bool = True, clock: Callable[[], float] = time.time
    ) -> None:
        self._set_environment = set_environment
        self._clock = clock
        self._server: Optional[HTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._saved: Dict[str, Optional[str]] = {}
        self._home: Optional[Path] = None
        self._backend: Optional[Backend] = None
        self._take_down_fence: Optional[Callable[[], None]] = None
        self._ticker: Optional[threading.Thread] = None
        self._stopping = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> FakePrefect:
        """Start serving (and set the environment); returns itself.

        Raises:
            RuntimeError: already started.
        """
        if self._server is not None:
            raise RuntimeError("this FakePrefect is already started")
        self._home = Path(tempfile.mkdtemp(prefix="deploytrigger-fake-"))
        self._backend = Backend(self._home, self._clock)
        self._server = HTTPServer(self._backend)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="deploytrigger-fake-prefect",
            daemon=True,
        )
        self._thread.start()
        self._stopping.clear()
        self._ticker = threading.Thread(
            target=self._tick, args=(self._backend,), name="deploytrigger-fake-ticker", daemon=True
        )
        self._ticker.start()
        if self._set_environment:
            self._saved = {key: os.environ.get(key) for key in ENVIRONMENT}
            for key in ENVIRONMENT[1:]:
                os.environ.pop(key, None)
            os.environ["PREFECT_API_URL"] = self.api_url
            self._take_down_fence = fence([self.api_url[: -len(API_PREFIX)]], fix=_FENCE_FIX)
        return self

    def _tick(self, backend: Backend) -> None:
        """Apply due state changes as they fall due, so that their events go out on time."""
        while not self._stopping.wait(TICK):
            backend.advance_due()

    def stop(self) -> None:
        """Stop serving, restore the environment and delete the result files. Idempotent."""
        self._stopping.set()
        if self._ticker is not None:
            self._ticker.join(timeout=5)
            self._ticker = None
        server, thread, self._server, self._thread = self._server, self._thread, None, None
        take_down, self._take_down_fence = self._take_down_fence, None
        if take_down is not None:
            take_down()
        if server is not None:
            server.shutdown()
            server.server_close()
            server.close_connections()
        if thread is not None:
            thread.join(timeout=5)
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved = {}
        if self._home is not None:
            shutil.rmtree(self._home, ignore_errors=True)
            self._home = None

    def __enter__(self) -> FakePrefect:
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.api_url if self._server is not None else "stopped"
        return f"<FakePrefect {where}>"

    # -- where it is ---------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        """The fake's API URL, ``http://127.0.0.1:<port>/api``.

        Raises:
            RuntimeError: not started.
        """
        if self._server is None:
            raise RuntimeError("start the FakePrefect first (use it in a with block)")
        return f"http://127.0.0.1:{self._server.server_address[1]}{API_PREFIX}"

    @property
    def _store(self) -> Backend:
        if self._backend is None:
            raise RuntimeError("start the FakePrefect first (use it in a with block)")
        return self._backend

    # -- setting it up -------------------------------------------------------------------

    def add_deployment(
        self,
        name: str,
        *,
        parameters: Optional[Mapping[str, Any]] = None,
        tags: Optional[Iterable[str]] = None,
        parameter_schema: Optional[Mapping[str, Any]] = None,
        enforce_parameter_schema: bool = False,
        version: Optional[str] = None,
    ) -> Deployment:
        """Create a deployment (and its flow), or replace one of the same name.

        Its runs complete at once until :meth:`set_outcome` says otherwise.

        Args:
            name: ``"flow name/deployment name"``.
            parameters: the deployment's default parameters, merged under each run's.
            tags: the deployment's tags, merged with each run's.
            parameter_schema: the JSON schema of the flow's parameters, as Prefect
                writes ``parameter_openapi_schema`` (``{"type": "object",
                "properties": {...}, "required": [...]}``); ``{}`` when not given.
            enforce_parameter_schema: check each run's parameters against the
                schema and answer 409 when they fail, as the server does.
            version: the deployment's version.

        Returns:
            The deployment, as ``deploytrigger.Client().read_deployment`` would return it.

        Raises:
            ValueError: ``name`` is not of the form ``"flow/deployment"``.
            TypeError: an argument has the wrong type.
        """
        flow_name, deployment_name = _split_name(name)
        if parameters is not None and not isinstance(parameters, Mapping):
            raise TypeError(f"parameters must be a dict, not {type(parameters).__name__}")
        if isinstance(tags, str) or not all(isinstance(tag, str) for tag in tags or []):
            raise TypeError(f"tags must be a list of strings, not {tags!r}")
        if parameter_schema is not None and not isinstance(parameter_schema, Mapping):
            raise TypeError(
                f"parameter_schema must be a dict, not {type(parameter_schema).__name__}"
            )
        record = self._store.add_deployment(
            flow_name,
            deployment_name,
            parameters=json.loads(json.dumps(dict(parameters or {}))),
            tags=list(tags or []),
            parameter_schema=dict(parameter_schema) if parameter_schema is not None else {},
            enforce_parameter_schema=bool(enforce_parameter_schema),
            version=version,
        )
        from deploytrigger import Deployment

        return Deployment.from_json(record)

    def set_outcome(
        self,
        name: str,
        state: Any,
        *,
        after: float = 0.0,
        message: Optional[str] = None,
        result: Any = NO_RESULT,
    ) -> None:
        """Decide how each new run of a deployment ends (runs created before keep theirs).

        A run goes Scheduled -> Pending -> Submitting -> Running -> ``state``
        within ``after`` seconds of its scheduled time (Pending and Submitting
        at once, Running halfway). Each state comes when it is due, with its
        event on ``/api/events/out``, whether the run is read or not.

        Args:
            name: the deployment, ``"flow/deployment"`` (added before).
            state: ``"COMPLETED"``, ``"FAILED"``, ``"CRASHED"`` or ``"CANCELLED"``
                (or a ``deploytrigger.StateType``); ``"SCHEDULED"``, ``"PENDING"``
                or ``"RUNNING"`` leave the run there for good.
            after: seconds until that state.
            message: the final state's message.
            result: what ``deploytrigger.read_result`` returns for the run, kept
                as Prefect's JSON serializer persists it (JSON values plus
                datetimes, dates, UUIDs, decimals, paths, sets, bytes); an
                exception for a FAILED run names what it raised.

        Raises:
            KeyError: no such deployment.
            ValueError, TypeError: a bad state, ``after`` or ``result``.
        """
        flow_name, deployment_name = _split_name(name)
        self._store.set_outcome(
            flow_name, deployment_name, Outcome.build(state, after, message, result)
        )

    def add_log(
        self,
        flow_run_id: Any,
        message: str,
        *,
        level: int = 20,
        timestamp: Optional[str] = None,
        name: str = "prefect.flow_runs",
    ) -> None:
        """Add a log line to a flow run (``level`` as in ``logging``: 20 is INFO)."""
        body: Dict[str, Any] = {
            "name": name,
            "level": level,
            "message": message,
            "flow_run_id": str(flow_run_id),
        }
        if timestamp is not None:
            body["timestamp"] = timestamp
        self._store.add_log(body)

    # -- what happened -------------------------------------------------------------------

    @property
    def runs(self) -> List[FlowRun]:
        """Every flow run created so far, oldest first, in its state as of now."""
        from deploytrigger import FlowRun

        api_url = self.api_url
        return [
            FlowRun.from_json(record, api_url=api_url) for record in self._store.flow_run_records()
        ]

    @property
    def requests(self) -> List[RecordedRequest]:
        """Every request received so far, oldest first (method, path, json, query)."""
        return list(self._store.requests)

    @property
    def event_filters(self) -> List[Any]:
        """The filter of every subscription to ``/api/events/out`` so far, oldest first, as
        sent (the websocket is not in :attr:`requests`): one per socket that got that far."""
        return list(self._store.events.filters)

    def requests_to(self, method: str, path: str) -> List[RecordedRequest]:
        """The requests received with this method and path (e.g. ``"POST"``, ``"/flow_runs/"``)."""
        return [r for r in self._store.requests if r.method == method and r.path == path]


def fake_prefect(
    *, set_environment: bool = True, clock: Callable[[], float] = time.time
) -> FakePrefect:
    """A :class:`FakePrefect`, to use in a ``with`` block (which starts and stops it)."""
    return FakePrefect(set_environment=set_environment, clock=clock)
