"""A new run joins the caller's trace: its ``__OTEL_TRACEPARENT`` label, and our own spans."""

from __future__ import annotations

import json
import sys
import types
import uuid
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
import responses
from helpers.otel import traceparent_of
from helpers.parent_stubs import (  # noqa: F401 - the autouse fixture
    API,
    DEPLOYMENT_ID,
    FLOW_ID,
    OTHER,
    PARENT,
    no_ambient_parent,
    sent,
)
from helpers.server_json import deployment_json, flow_run_json

from opentelemetry import trace  # isort: skip  (after the skip of helpers.otel)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # isort: skip
    InMemorySpanExporter,
)

import deploytrigger
from deploytrigger import Client, parent_run

LABEL = "__OTEL_TRACEPARENT"
PARENT_TRACEPARENT = "00-11111111111111111111111111111111-2222222222222222-01"
CREATE = f"/deployments/{DEPLOYMENT_ID}/create_flow_run"


@pytest.fixture
def api() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        deployment = deployment_json(shape="bare", deployment_id=DEPLOYMENT_ID, flow_id=FLOW_ID)
        mock.get(f"{API}/deployments/name/add/add-dep", json=deployment)
        mock.get(f"{API}/admin/version", json="3.8.8")
        mock.add_callback(responses.POST, f"{API}{CREATE}", callback=created)
        yield mock


@pytest.fixture
def client() -> Iterator[Client]:
    with Client(API, sleep=lambda _: None) as shared:
        yield shared


def created(request: Any) -> Tuple[int, Dict[str, str], str]:
    """``create_flow_run`` answering a run with the labels it was sent."""
    body = json.loads(request.body)
    run = flow_run_json(
        shape="bare",
        run_id=OTHER,
        flow_id=FLOW_ID,
        deployment_id=DEPLOYMENT_ID,
        parent_task_run_id=body.get("parent_task_run_id"),
        labels=body.get("labels", {}),
    )
    run["deployment_id"] = str(DEPLOYMENT_ID)  # "bare" leaves it out
    return 201, {}, json.dumps(run)


def placeholder_with_labels(labels: Dict[str, Any]) -> Any:
    """``POST /task_runs/`` answering the task run sent, with its flow run's ``labels``."""

    def answer(request: Any) -> Tuple[int, Dict[str, str], str]:
        task_run_id = json.loads(request.body)["id"]
        return 201, {}, json.dumps({"id": task_run_id, "labels": labels})

    return answer


def paths(mock: responses.RequestsMock) -> List[str]:
    return [f"{call.request.method} {call.request.url[len(API) :]}" for call in mock.calls]


def created_labels(mock: responses.RequestsMock) -> Optional[Dict[str, Any]]:
    (body,) = sent(mock, "POST", CREATE)
    labels: Optional[Dict[str, Any]] = body.get("labels")
    return labels


# -- the label ---------------------------------------------------------------------------------


def test_run_is_labelled_with_the_caller_s_span(
    api: responses.RequestsMock, client: Client, spans: InMemorySpanExporter
) -> None:
    with trace.get_tracer("app").start_as_current_span("request") as caller:
        run = client.run_deployment("add/add-dep", timeout=0)
    assert created_labels(api) == {LABEL: traceparent_of(caller)}
    assert run.labels == {LABEL: traceparent_of(caller)}


def test_no_label_and_no_version_asked_without_a_current_span(
    api: responses.RequestsMock, client: Client, spans: InMemorySpanExporter
) -> None:
    client.run_deployment("add/add-dep", timeout=0)
    assert created_labels(api) is None
    assert paths(api) == ["GET /deployments/name/add/add-dep", f"POST {CREATE}"]


def test_no_label_when_the_app_has_not_imported_opentelemetry(
    api: responses.RequestsMock,
    client: Client,
    spans: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with trace.get_tracer("app").start_as_current_span("request"):
        monkeypatch.delitem(sys.modules, "opentelemetry")
        client.run_deployment("add/add-dep", timeout=0)
    assert created_labels(api) is None


@pytest.mark.parametrize(
    ("version", "labelled"),
    [("2.20.25", False), ("3.0.0", False), ("3.1.10", False), ("3.1.11", True), ("3.9.0", True)],
)
def test_label_is_sent_only_to_servers_that_take_it(
    api: responses.RequestsMock,
    client: Client,
    spans: InMemorySpanExporter,
    version: str,
    labelled: bool,
) -> None:
    api.replace(responses.GET, f"{API}/admin/version", json=version)
    with trace.get_tracer("app").start_as_current_span("request"):
        client.run_deployment("add/add-dep", timeout=0)
        client.run_deployment("add/add-dep", timeout=0)
    bodies = sent(api, "POST", CREATE)
    assert ["labels" in body for body in bodies] == [labelled, labelled]
    assert paths(api).count("GET /admin/version") == 1  # asked once per client


def test_a_run_created_from_a_deployment_by_id_carries_the_caller_s_span(
    api: responses.RequestsMock, client: Client, spans: InMemorySpanExporter
) -> None:
    with trace.get_tracer("app").start_as_current_span("request") as caller, parent_run(PARENT):
        client.create_flow_run_from_deployment(DEPLOYMENT_ID)
    assert created_labels(api) == {LABEL: traceparent_of(caller)}  # it links no parent


def test_child_under_a_parent_inherits_the_parent_s_label(
    api: responses.RequestsMock, client: Client, spans: InMemorySpanExporter
) -> None:
    api.add_callback(
        responses.POST,
        f"{API}/task_runs/",
        callback=placeholder_with_labels({LABEL: PARENT_TRACEPARENT, "prefect.flow.id": "f"}),
    )
    deploytrigger._services.parents.DYNAMIC_KEYS.mark_new(PARENT)
    with trace.get_tracer("app").start_as_current_span("request"), parent_run(PARENT):
        client.run_deployment("add/add-dep", timeout=0)
    assert created_labels(api) == {LABEL: PARENT_TRACEPARENT}
    assert not any(path.startswith("GET /flow_runs/") for path in paths(api))  # no extra read


def test_child_of_a_parent_without_the_label_gets_none_as_in_prefect(
    api: responses.RequestsMock, client: Client, spans: InMemorySpanExporter
) -> None:
    api.add_callback(
        responses.POST, f"{API}/task_runs/", callback=placeholder_with_labels({"a": "b"})
    )
    deploytrigger._services.parents.DYNAMIC_KEYS.mark_new(PARENT)
    with trace.get_tracer("app").start_as_current_span("request"), parent_run(PARENT):
        client.run_deployment("add/add-dep", timeout=0)
    assert created_labels(api) is None


def test_unlinked_run_under_a_parent_known_by_id_sends_nothing_more_and_takes_the_span(
    api: responses.RequestsMock, client: Client, spans: InMemorySpanExporter
) -> None:
    with trace.get_tracer("app").start_as_current_span("request") as caller, parent_run(PARENT):
        client.run_deployment("add/add-dep", timeout=0, as_subflow=False)
    assert created_labels(api) == {LABEL: traceparent_of(caller)}
    assert paths(api) == [
        "GET /deployments/name/add/add-dep",
        "GET /admin/version",
        f"POST {CREATE}",
    ]


def test_unlinked_run_in_a_prefect_run_context_takes_the_run_s_label(
    api: responses.RequestsMock,
    client: Client,
    spans: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    flow_run = types.SimpleNamespace(id=PARENT, labels={LABEL: PARENT_TRACEPARENT})
    flow_ctx = types.SimpleNamespace(flow_run=flow_run, task_run_dynamic_keys={})
    module = types.ModuleType("prefect.context")
    module.FlowRunContext = types.SimpleNamespace(get=lambda: flow_ctx)  # type: ignore[attr-defined]
    module.TaskRunContext = types.SimpleNamespace(get=lambda: None)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "prefect.context", module)
    with trace.get_tracer("app").start_as_current_span("request"):
        client.run_deployment("add/add-dep", timeout=0, as_subflow=False)
    assert created_labels(api) == {LABEL: PARENT_TRACEPARENT}


def test_tracked_run_carries_the_caller_s_span_and_hands_it_to_its_children(
    api: responses.RequestsMock, client: Client, spans: InMemorySpanExporter
) -> None:
    api.post(f"{API}/flows/", json={"id": str(FLOW_ID), "name": "job"})

    def tracked(request: Any) -> Tuple[int, Dict[str, str], str]:
        labels = json.loads(request.body).get("labels", {})
        run = flow_run_json("RUNNING", shape="bare", run_id=PARENT, labels=labels)
        return 201, {}, json.dumps(run)

    api.add_callback(responses.POST, f"{API}/flow_runs/", callback=tracked)
    api.post(f"{API}/flow_runs/{PARENT}/set_state", json={"status": "ACCEPT"})
    app = trace.get_tracer("app")
    with app.start_as_current_span("request") as caller, client.flow_run("job"):
        client.run_deployment("add/add-dep", timeout=0, as_subflow=False)
    (body,) = sent(api, "POST", "/flow_runs/")
    assert body["labels"] == {LABEL: traceparent_of(caller)}
    assert created_labels(api) == {LABEL: traceparent_of(caller)}  # the tracked run's label


# -- our spans ---------------------------------------------------------------------------------


def test_trigger_and_wait_are_client_spans_under_the_caller_s(
    api: responses.RequestsMock, client: Client, spans: InMemorySpanExporter
) -> None:
    done = flow_run_json("COMPLETED", shape="bare", run_id=OTHER)
    done["deployment_id"] = str(DEPLOYMENT_ID)
    api.get(f"{API}/flow_runs/{OTHER}", json=done)
    with trace.get_tracer("app").start_as_current_span("request") as caller:
        client.run_deployment("add/add-dep", timeout=30, poll_interval=0)
    create, wait, request = spans.get_finished_spans()
    assert (create.name, wait.name, request.name) == (
        "deploytrigger.create_flow_run",
        "deploytrigger.wait",
        "request",
    )
    for ours in (create, wait):
        assert ours.kind is trace.SpanKind.CLIENT
        assert ours.parent is not None
        assert ours.parent.span_id == caller.get_span_context().span_id
    assert dict(create.attributes or {}) == {
        "prefect.deployment.name": "add/add-dep",
        "prefect.deployment.id": str(DEPLOYMENT_ID),
        "prefect.flow_run.id": str(OTHER),
        "prefect.flow_run.name": "run",
        "prefect.flow_run.state": "SCHEDULED",
    }
    assert dict(wait.attributes or {}) == {
        "prefect.deployment.id": str(DEPLOYMENT_ID),
        "prefect.flow_run.id": str(OTHER),
        "prefect.flow_run.name": "run",
        "prefect.flow_run.state": "COMPLETED",
    }


def test_a_failed_trigger_ends_our_span_with_the_error(
    api: responses.RequestsMock, client: Client, spans: InMemorySpanExporter
) -> None:
    api.get(f"{API}/deployments/name/add/gone", status=404, json={"detail": "Deployment not found"})
    with pytest.raises(deploytrigger.DeploymentNotFoundError):
        client.run_deployment("add/gone", timeout=0)
    (create,) = spans.get_finished_spans()
    assert create.status.status_code is trace.StatusCode.ERROR
    assert dict(create.attributes or {}) == {"prefect.deployment.name": "add/gone"}
    assert create.events[0].attributes is not None
    assert create.events[0].attributes["exception.type"].endswith("DeploymentNotFoundError")


def test_a_run_given_by_id_names_no_deployment_in_the_span(
    api: responses.RequestsMock, client: Client, spans: InMemorySpanExporter
) -> None:
    deployment = deployment_json(shape="bare", deployment_id=DEPLOYMENT_ID, flow_id=FLOW_ID)
    api.get(f"{API}/deployments/{DEPLOYMENT_ID}", json=deployment)
    client.run_deployment(str(DEPLOYMENT_ID), timeout=0)
    (create,) = spans.get_finished_spans()
    assert "prefect.deployment.name" not in dict(create.attributes or {})
    assert dict(create.attributes or {})["prefect.deployment.id"] == str(DEPLOYMENT_ID)


def test_no_span_is_current_after_the_call(
    api: responses.RequestsMock, client: Client, spans: InMemorySpanExporter
) -> None:
    client.run_deployment("add/add-dep", timeout=0)
    assert not trace.get_current_span().get_span_context().is_valid
    assert uuid.UUID(spans.get_finished_spans()[0].attributes["prefect.flow_run.id"]) == OTHER  # type: ignore[index]
