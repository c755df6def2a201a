"""Parent runs on the server: tracked parent runs, and linking a child run under its parent.

:class:`Parents` does the I/O around ``placeholders.py``'s pure bodies: it creates
the placeholder task run that makes a new run a subflow of the thread's
current parent (``context.current_parent``), and it tracks a block of code as
a Running flow run that becomes that parent.

The placeholder takes the shape of the server's version: before its first
placeholder a client asks ``GET /admin/version`` once and keeps the answer
(a server that does not answer it gets the newest shape). The same answer
tells whether the server takes a new run's trace label. Nothing is asked
when no run is linked and no label is sent, so a plain trigger stays one request.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple

from .._helpers import tracing
from .._helpers.arguments import PAGE_LIMIT, DeploymentRef
from .._http.errors import refine
from .._http.transport import Transport
from .._parents.context import DYNAMIC_KEYS, ParentRun, pushed
from ..exceptions import (
    APIError,
    BadRequestError,
    DeployTriggerError,
    FlowRunNotFoundError,
    InvalidArgumentError,
)
from ..models import Deployment, Flow, FlowRun, parse_uuid
from .deployments import Deployments
from .payloads import flow_run_payload

if TYPE_CHECKING:
    from .placeholders import Dialect

logger = logging.getLogger("deploytrigger")

MAX_KEY_ATTEMPTS = 32
"""How many dynamic keys one placeholder tries before it shares the task run that holds the
last one (what Prefect itself would do); other processes racing for the same keys lose
each round to one winner at most."""


@dataclass(frozen=True)
class Link:
    """Where a new run sits under its parent.

    Attributes:
        task_run_id: the placeholder task run, the new run's ``parent_task_run_id``.
        parent_labels: the parent flow run's labels as the server copied them
            into the placeholder (empty from a server without labels).
    """

    task_run_id: uuid.UUID
    parent_labels: Mapping[str, Any]


class Parents:
    """Links new runs to the current parent run, and tracks parent runs.

    Args:
        transport: sends the requests.
        deployments: names deployments given by id (for the placeholder's task key).
    """

    def __init__(self, transport: Transport, deployments: Deployments) -> None:
        self._transport = transport
        self._deployments = deployments
        self._dialect: Optional[Dialect] = None
        self._dialect_lock = threading.Lock()

    def dialect(self) -> Dialect:
        """The placeholder shape of this server's version, asked once (``GET /admin/version``).

        A server that answers with an error status (one without that endpoint)
        gets the newest shape; a server that cannot be reached raises, and the
        next placeholder asks again.
        """
        from .placeholders import CURRENT, dialect_for

        with self._dialect_lock:
            if self._dialect is None:
                try:
                    version = self._transport.request("GET", "/admin/version")
                except APIError as exc:
                    logger.debug("server version unknown (%s); placeholders as Prefect 3", exc)
                    self._dialect = CURRENT
                else:
                    self._dialect = dialect_for(version)
                    logger.debug("Prefect server version %s", self._dialect.version)
            return self._dialect

    def trace_labels(self, traceparent: Optional[str]) -> Dict[str, Any]:
        """The ``labels`` of a new run's body carrying ``traceparent``, if the server takes them.

        Empty without a ``traceparent``, and on a server older than 3.1.11,
        whose request schemas refuse ``labels`` (then the label is left out and
        the run is not part of the trace). Asks the server's version once per
        client, and only when there is a label to send.
        """
        if traceparent is None:
            return {}
        dialect = self.dialect()
        if not dialect.run_labels:
            logger.debug(
                "Prefect server %s takes no run labels: the new run is not labelled with %s",
                dialect.version,
                traceparent,
            )
            return {}
        return {"labels": {tracing.TRACEPARENT_LABEL: traceparent}}

    def link(
        self,
        parent: ParentRun,
        deployment: Deployment,
        ref: DeploymentRef,
        parameters: Mapping[str, Any],
    ) -> Link:
        """The placeholder task run linking a new run to ``parent`` (``current_parent()``).

        Created as the server version's ``run_deployment`` creates it (see
        ``placeholders.py``), with an id chosen here. ``POST /task_runs/`` returns
        the existing task run for a repeated (flow run, task_key, dynamic_key):
        our own after a retried request (same id), or another caller's, which
        means another process took that key. Then the counters are read again
        from the server and the next key is tried, so that every call gets its
        own placeholder. A parent with a fixed dynamic key (a task-run parent
        outside a flow run) shares the task run holding it, as Prefect does.
        The server gives a task run its flow run's labels, so the answer also
        carries the parent's labels (its trace label among them) at no extra
        request.

        Raises:
            FlowRunNotFoundError: the parent run does not exist.
        """
        from .placeholders import placeholder_payload, task_key  # only under a parent

        deployment_name = self._deployments.full_name(ref, deployment)
        dialect = self.dialect()
        key_name = task_key(deployment_name, dialect)
        for attempt in range(1, MAX_KEY_ATTEMPTS + 1):
            dynamic_key = DYNAMIC_KEYS.next_key(
                parent, key_name, lambda: self._task_run_keys(parent.flow_run_id)
            )
            wanted = uuid.uuid4()
            payload = placeholder_payload(
                deployment_name=deployment_name,
                deployment_version=deployment.version,
                parameter_names=parameters,
                parent=parent,
                dynamic_key=dynamic_key,
                task_run_id=wanted,
                dialect=dialect,
            )
            task_run_id, labels = self._create_placeholder(payload, parent)
            if task_run_id == wanted:
                break
            fixed = parent.dynamic_key is not None
            logger.debug(
                "dynamic key %s of %s in flow run %s is task run %s already%s",
                dynamic_key,
                key_name,
                parent.flow_run_id,
                task_run_id,
                "" if fixed or attempt == MAX_KEY_ATTEMPTS else "; trying the next key",
            )
            if fixed:
                break
            if parent.prefect_keys is None:
                DYNAMIC_KEYS.forget(parent.flow_run_id)  # read the keys in use again
        else:
            logger.warning(
                "no free dynamic key for %s in flow run %s after %d tries; sharing task run %s",
                key_name,
                parent.flow_run_id,
                MAX_KEY_ATTEMPTS,
                task_run_id,
            )
        logger.debug(
            "placeholder task run %s (dynamic key %s) in flow run %s for %s",
            task_run_id,
            dynamic_key,
            parent.flow_run_id,
            deployment_name,
        )
        return Link(task_run_id, labels)

    def _create_placeholder(
        self, payload: Dict[str, Any], parent: ParentRun
    ) -> Tuple[uuid.UUID, Mapping[str, Any]]:
        """``POST /task_runs/``; the id and the labels of the task run the server answered with."""
        try:
            data = self._transport.request("POST", "/task_runs/", body=payload)
        except BadRequestError as exc:
            if exc.status_code != 409:
                raise
            # The body's only reference is the parent flow run: a 409 means it is missing.
            raise refine(
                exc,
                FlowRunNotFoundError,
                f"cannot link to parent flow run {parent.flow_run_id}: it was not found",
                flow_run_id=str(parent.flow_run_id),
            ) from None
        if not isinstance(data, dict):
            return parse_uuid(None), {}
        labels = data.get("labels")
        return parse_uuid(data.get("id")), labels if isinstance(labels, dict) else {}

    def settle(self, placeholder_id: Optional[uuid.UUID], run: FlowRun) -> None:
        """Finish a placeholder that ``run``, returned for a reused idempotency key, made idle.

        When the server answered ``create_flow_run`` with an existing run linked
        elsewhere, the placeholder just created would stay Pending under the
        parent. It is named after that run and given a final state mirroring it
        (``linking.duplicate_state``). Failures are logged, never raised: the
        run itself was created fine.
        """
        if placeholder_id is None or run.parent_task_run_id == placeholder_id:
            return
        from .placeholders import duplicate_state

        path = f"/task_runs/{placeholder_id}"
        state = duplicate_state(run)
        try:
            self._transport.request("PATCH", path, body={"name": run.name})
            self._transport.request(
                "POST", f"{path}/set_state", body={"state": state, "force": True}
            )
        except DeployTriggerError:
            logger.warning(
                "could not finish placeholder task run %s of existing flow run %s",
                placeholder_id,
                run.id,
                exc_info=True,
            )
            return
        logger.info(
            "flow run %s (%s) already existed for its idempotency key; "
            "placeholder task run %s is %s",
            run.id,
            run.name,
            placeholder_id,
            state["name"],
        )

    def _task_run_keys(self, flow_run_id: uuid.UUID) -> List[Tuple[str, str]]:
        """``(task_key, dynamic_key)`` of every task run of a flow run, page by page."""
        from .placeholders import existing_keys, task_runs_filter

        keys: List[Tuple[str, str]] = []
        offset = 0
        while True:
            page = self._transport.request(
                "POST", "/task_runs/filter", body=task_runs_filter(str(flow_run_id), offset)
            )
            found = existing_keys(page)
            keys.extend(found)
            if len(found) < PAGE_LIMIT:
                return keys
            offset += len(found)

    @contextlib.contextmanager
    def track(
        self,
        flow_name: str,
        *,
        name: Optional[str] = None,
        parameters: Optional[Mapping[str, Any]] = None,
        tags: Optional[Iterable[str]] = None,
    ) -> Iterator[FlowRun]:
        """A Running flow run of ``flow_name``, this thread's parent for the block.

        See :meth:`Client.flow_run <deploytrigger.Client.flow_run>`.
        """
        if not isinstance(flow_name, str) or not flow_name.strip():
            raise InvalidArgumentError(f"flow_name must be a non-empty string, not {flow_name!r}")
        checked = flow_run_payload(parameters=parameters, flow_run_name=name, tags=tags)
        request = self._transport.request
        flow = Flow.from_json(request("POST", "/flows/", body={"name": flow_name}))
        body: Dict[str, Any] = {
            "flow_id": str(flow.id),
            "state": {"type": "RUNNING", "name": "Running"},
            "parameters": checked["parameters"],
            "tags": checked.get("tags", []),
            "idempotency_key": str(uuid.uuid4()),
        }
        if "name" in checked:
            body["name"] = checked["name"]
        body.update(self.trace_labels(tracing.current_traceparent()))
        run = FlowRun.from_json(
            request("POST", "/flow_runs/", body=body), api_url=self._transport.api_url
        )
        logger.info("tracking flow run %s (%s) of flow %s", run.id, run.name, flow_name)
        DYNAMIC_KEYS.mark_new(run.id)
        try:
            with pushed(ParentRun(run.id, labels=run.labels)):
                yield run
        except KeyboardInterrupt:
            self._finish(run, "CANCELLED", "Interrupted (KeyboardInterrupt)", quiet=True)
            raise
        except BaseException as exc:
            self._finish(run, "FAILED", f"{type(exc).__name__}: {exc}", quiet=True)
            raise
        else:
            self._finish(run, "COMPLETED", None, quiet=False)
        finally:
            DYNAMIC_KEYS.forget(run.id)

    def _finish(
        self, run: FlowRun, state_type: str, message: Optional[str], *, quiet: bool
    ) -> None:
        """Give a tracked run its final state; ``quiet``: log a failure instead of raising.

        ``quiet`` is for a block that already raised: its exception matters more.
        """
        state: Dict[str, Any] = {"type": state_type, "name": state_type.title()}
        if message is not None:
            state["message"] = message
        try:
            result = self._transport.request(
                "POST", f"/flow_runs/{run.id}/set_state", body={"state": state, "force": False}
            )
        except DeployTriggerError:
            if not quiet:
                raise
            logger.warning("could not mark flow run %s %s", run.id, state_type, exc_info=True)
            return
        status = result.get("status") if isinstance(result, dict) else None
        if status != "ACCEPT":
            logger.warning(
                "the server answered %s to marking flow run %s %s: %s",
                status,
                run.id,
                state_type,
                result.get("details") if isinstance(result, dict) else result,
            )
        else:
            logger.info("flow run %s (%s) is %s", run.id, run.name, state["name"])
