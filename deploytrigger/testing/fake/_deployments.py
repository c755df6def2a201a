"""The fake's flows and deployments: setting them up, and their endpoints.

A part of the backend (``Backend``, ``backend.py``), which holds
the records and the lock; each endpoint answers under that lock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional

from . import _bodies as bodies
from . import _records as records
from ._bodies import Answer
from ._outcomes import Outcome
from ._records import new_id


@dataclass
class Deployment:
    record: Dict[str, Any]
    flow_name: str
    outcome: Outcome = field(default_factory=Outcome)


class DeploymentEndpoints:
    """Flows and deployments, by name and by id (the backend's records)."""

    _lock: threading.RLock
    _clock: Callable[[], float]
    flows: Dict[str, Dict[str, Any]]
    deployments: Dict[str, Deployment]

    def add_deployment(
        self,
        flow_name: str,
        name: str,
        *,
        parameters: Mapping[str, Any],
        tags: List[str],
        parameter_schema: Optional[Mapping[str, Any]],
        enforce_parameter_schema: bool,
        version: Optional[str],
    ) -> Dict[str, Any]:
        """Create (or replace) a deployment, and its flow if new; return its JSON."""
        with self._lock:
            flow = self._flow_named(flow_name)
            existing = self._deployment_named(flow_name, name)
            record = records.deployment_json(
                deployment_id=existing.record["id"] if existing else new_id(),
                flow_id=flow["id"],
                name=name,
                created=self._clock(),
                parameters=parameters,
                tags=tags,
                parameter_schema=parameter_schema,
                enforce_parameter_schema=enforce_parameter_schema,
                version=version,
            )
            outcome = existing.outcome if existing else Outcome()
            self.deployments[record["id"]] = Deployment(record, flow_name, outcome)
            return dict(record)

    def set_outcome(self, flow_name: str, name: str, outcome: Outcome) -> None:
        """Give a deployment's future runs ``outcome``.

        Raises:
            KeyError: no such deployment.
        """
        with self._lock:
            deployment = self._deployment_named(flow_name, name)
            if deployment is None:
                raise KeyError(f"{flow_name}/{name}")
            deployment.outcome = outcome

    def _flow_named(self, name: str) -> Dict[str, Any]:
        for flow in self.flows.values():
            if flow["name"] == name:
                return flow
        flow = records.flow_json(new_id(), name, self._clock())
        self.flows[flow["id"]] = flow
        return flow

    def _deployment_named(self, flow_name: str, name: str) -> Optional[Deployment]:
        for deployment in self.deployments.values():
            if deployment.flow_name == flow_name and deployment.record["name"] == name:
                return deployment
        return None

    def _create_flow(self, *, body: Any, **_: Any) -> Answer:
        name = bodies.field(body, "name", str)
        known = any(flow["name"] == name for flow in self.flows.values())
        return (200 if known else 201), self._flow_named(name)

    def _read_flow(self, flow_id: str, **_: Any) -> Answer:
        flow = self.flows.get(bodies.canonical(flow_id))
        return (200, flow) if flow else (404, records.not_found("Flow not found"))

    def _filter_flows(self, *, body: Any, **_: Any) -> Answer:
        limit, offset = bodies.page(body)
        ids = bodies.any_of(body, "flows", "id", uuids=True)
        found = [
            flow
            for flow in sorted(self.flows.values(), key=lambda flow: flow["name"])
            if ids is None or flow["id"] in ids
        ]
        return 200, found[offset : offset + limit]

    def _read_deployment(self, deployment_id: str, **_: Any) -> Answer:
        deployment = self.deployments.get(bodies.canonical(deployment_id))
        if deployment is None:
            return 404, records.not_found("Deployment not found")
        return 200, deployment.record

    def _read_deployment_by_name(self, flow_name: str, name: str, **_: Any) -> Answer:
        deployment = self._deployment_named(flow_name, name)
        if deployment is None:
            return 404, records.not_found("Deployment not found")
        return 200, deployment.record

    def _filter_deployments(self, *, body: Any, **_: Any) -> Answer:
        limit, offset = bodies.page(body)
        names = bodies.any_of(body, "flows", "name")
        found = [
            d.record
            for d in sorted(self.deployments.values(), key=lambda d: d.record["name"])
            if names is None or d.flow_name in names
        ]
        return 200, found[offset : offset + limit]
