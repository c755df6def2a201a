"""The fake keeps the labels a run is created with and copies a flow run's into its task runs."""

from __future__ import annotations

import uuid
from typing import Any, Dict, Iterator

import pytest
import requests

import deploytrigger
from deploytrigger.testing import FakePrefect, fake_prefect

LABEL = "__OTEL_TRACEPARENT"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def fake() -> Iterator[FakePrefect]:
    with fake_prefect() as started:
        yield started


def create_run(fake: FakePrefect, deployment_id: Any, labels: Dict[str, str]) -> Dict[str, Any]:
    """``create_flow_run`` with ``labels``, as a client sends it; the run the fake answers."""
    response = requests.post(
        f"{fake.api_url}/deployments/{deployment_id}/create_flow_run",
        json={"labels": labels},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    run: Dict[str, Any] = response.json()
    return run


def test_a_run_keeps_the_labels_it_was_created_with_over_the_server_s(fake: FakePrefect) -> None:
    deployment = fake.add_deployment("etl/nightly")
    labels = create_run(fake, deployment.id, {LABEL: TRACEPARENT, "prefect.flow.id": "mine"})[
        "labels"
    ]
    assert labels == {
        LABEL: TRACEPARENT,
        "prefect.flow.id": "mine",
        "prefect.deployment.id": str(deployment.id),
    }


def test_a_task_run_carries_its_flow_run_s_labels(fake: FakePrefect) -> None:
    deployment = fake.add_deployment("etl/nightly")
    parent = create_run(fake, deployment.id, {LABEL: TRACEPARENT})
    body = {"flow_run_id": parent["id"], "task_key": "k", "dynamic_key": "0", "labels": {"a": "b"}}
    task_run = requests.post(f"{fake.api_url}/task_runs/", json=body, timeout=10).json()
    assert task_run["labels"] == {
        LABEL: TRACEPARENT,
        "prefect.flow.id": parent["flow_id"],
        "prefect.deployment.id": str(deployment.id),
        "prefect.flow-run.id": parent["id"],
        "a": "b",
    }


def test_a_child_linked_under_a_labelled_parent_inherits_its_trace_label(
    fake: FakePrefect,
) -> None:
    deployment = fake.add_deployment("etl/nightly")
    parent = create_run(fake, deployment.id, {LABEL: TRACEPARENT})
    with deploytrigger.parent_run(uuid.UUID(parent["id"])):
        child = deploytrigger.run_deployment("etl/nightly", timeout=0)
    assert child.parent_task_run_id is not None
    assert child.labels[LABEL] == TRACEPARENT
