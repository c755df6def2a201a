"""Parent runs on the server: tracked parent runs, and linking a child run under its parent.

:class:`Parents` does the I/O around ``linking.py``'s pure bodies: it creates
the placeholder task run that makes a new run a subflow of the thread's
current parent (``context.current_parent``), and it tracks a block of code as
a Running flow run that becomes that parent.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple

from .context import DYNAMIC_KEYS, ParentRun, current_parent, pushed
from .deployments import Deployments
from .exceptions import (
    BadRequestError,
    DeployTriggerError,
    FlowRunNotFoundError,
    InvalidArgumentError,
)
from .linking import existing_keys, placeholder_payload, task_key, task_runs_filter
from .models import Deployment, Flow, FlowRun, parse_uuid
from .payloads import PAGE_LIMIT, DeploymentRef, flow_run_payload
from .transport import Transport, refine

__all__ = ["Parents"]

logger = logging.getLogger("deploytrigger")


class Parents:
    """Links new runs to the current parent run, and tracks parent runs.

    Args:
        transport: sends the requests.
        deployments: names deployments given by id (for the placeholder's task key).
    """

    def __init__(self, transport: Transport, deployments: Deployments) -> None:
        self._transport = transport
        self._deployments = deployments

    def link(
        self, deployment: Deployment, ref: DeploymentRef, parameters: Mapping[str, Any]
    ) -> Optional[uuid.UUID]:
        """The placeholder task run linking a new run to the current parent run, if any.

        Created as Prefect's ``run_deployment`` creates it (see ``linking.py``).
        ``POST /task_runs/`` returns the existing task run for a repeated
        (flow run, task_key, dynamic_key), so retrying it is safe.

        Raises:
            FlowRunNotFoundError: the parent run does not exist.
        """
        parent = current_parent()
        if parent is None:
            return None
        deployment_name = self._deployments.full_name(ref, deployment)
        dynamic_key = DYNAMIC_KEYS.next_key(
            parent, task_key(deployment_name), lambda: self._task_run_keys(parent.flow_run_id)
        )
        payload = placeholder_payload(
            deployment_name=deployment_name,
            deployment_version=deployment.version,
            parameter_names=parameters,
            parent=parent,
            dynamic_key=dynamic_key,
        )
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
            ) from exc
        task_run_id = parse_uuid(data.get("id") if isinstance(data, dict) else None)
        logger.debug(
            "placeholder task run %s (dynamic key %s) in flow run %s for %s",
            task_run_id,
            dynamic_key,
            parent.flow_run_id,
            deployment_name,
        )
        return task_run_id

    def _task_run_keys(self, flow_run_id: uuid.UUID) -> List[Tuple[str, str]]:
        """``(task_key, dynamic_key)`` of every task run of a flow run, page by page."""
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
        run = FlowRun.from_json(
            request("POST", "/flow_runs/", body=body), api_url=self._transport.api_url
        )
        logger.info("tracking flow run %s (%s) of flow %s", run.id, run.name, flow_name)
        DYNAMIC_KEYS.mark_new(run.id)
        try:
            with pushed(ParentRun(run.id)):
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
