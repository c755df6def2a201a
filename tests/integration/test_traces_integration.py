"""A run joins the caller's OpenTelemetry trace, on a real Prefect server, next to Prefect's own.

The labels are read back from the server's own records. Children that would
otherwise start are scheduled far in the future: only the label matters.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest
from helpers.otel import trace_id_in, traceparent_of
from helpers.server_http import raw

from opentelemetry import trace  # isort: skip  (after the skip of helpers.otel)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # isort: skip
    InMemorySpanExporter,
)

from deploytrigger import Client, parent_run
from deploytrigger._parents.context import FLOW_RUN_ID_ENV

pytestmark = pytest.mark.integration

LABEL = "__OTEL_TRACEPARENT"
FAR_FUTURE = dt.datetime(2099, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
ROOT = Path(__file__).resolve().parents[2]
WAIT = 180.0


@pytest.fixture(scope="module")
def client(api_url: str) -> Iterator[Client]:
    with Client(api_url, request_timeout=30, max_retries=10) as shared:
        yield shared


def labels_of(api_url: str, flow_run_id: Any) -> Dict[str, Any]:
    """The run's labels as the server stores them."""
    response = raw.get(f"{api_url}/flow_runs/{flow_run_id}", timeout=30)
    response.raise_for_status()
    labels: Dict[str, Any] = response.json()["labels"]
    return labels


def test_run_s_label_carries_the_caller_s_trace(
    client: Client, api_url: str, spans: InMemorySpanExporter
) -> None:
    with trace.get_tracer("app").start_as_current_span("request") as caller:
        run = client.run_deployment("add/add-dep", scheduled_time=FAR_FUTURE, timeout=0)
    label = labels_of(api_url, run.id)[LABEL]
    assert label == traceparent_of(caller)
    assert trace_id_in(label) == caller.get_span_context().trace_id


def test_no_label_without_a_current_span(
    client: Client, api_url: str, spans: InMemorySpanExporter
) -> None:
    run = client.run_deployment("add/add-dep", scheduled_time=FAR_FUTURE, timeout=0)
    assert LABEL not in labels_of(api_url, run.id)


def test_child_of_a_tracked_parent_inherits_the_parent_s_label(
    client: Client, api_url: str, spans: InMemorySpanExporter
) -> None:
    app = trace.get_tracer("app")
    outer = app.start_span("request")
    inner = app.start_as_current_span("inner")  # entered inside the tracked run's block
    with trace.use_span(outer, end_on_exit=True), client.flow_run("traced-parent") as parent, inner:
        child = client.run_deployment("add/add-dep", scheduled_time=FAR_FUTURE, timeout=0)
    assert labels_of(api_url, parent.id)[LABEL] == traceparent_of(outer)
    assert labels_of(api_url, child.id)[LABEL] == traceparent_of(outer)  # the parent's, not inner's
    assert child.parent_task_run_id is not None


def test_child_of_a_parent_known_only_by_id_inherits_its_label_at_no_extra_request(
    client: Client, api_url: str, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    earlier = trace.get_tracer("app").start_span("earlier")
    with trace.use_span(earlier, end_on_exit=True), client.flow_run("traced-parent") as parent:
        pass
    monkeypatch.setenv(FLOW_RUN_ID_ENV, str(parent.id))  # as a worker's flow process has it
    with trace.get_tracer("app").start_as_current_span("now"):
        child = client.run_deployment("add/add-dep", scheduled_time=FAR_FUTURE, timeout=0)
        with parent_run(parent.id):
            explicit = client.run_deployment("add/add-dep", scheduled_time=FAR_FUTURE, timeout=0)
    assert labels_of(api_url, child.id)[LABEL] == traceparent_of(earlier)
    assert labels_of(api_url, explicit.id)[LABEL] == traceparent_of(earlier)


def test_trigger_and_wait_are_spans_in_the_caller_s_trace(
    client: Client, spans: InMemorySpanExporter
) -> None:
    with trace.get_tracer("app").start_as_current_span("request") as caller:
        run = client.run_deployment(
            "add/add-dep", parameters={"x": 1, "y": 2}, timeout=WAIT, poll_interval=1
        )
    assert run.state is not None and run.state.is_completed(), run.state
    by_name = {span.name: span for span in spans.get_finished_spans()}
    create, wait = by_name["deploytrigger.create_flow_run"], by_name["deploytrigger.wait"]
    for ours in (create, wait):
        assert ours.context is not None
        assert ours.context.trace_id == caller.get_span_context().trace_id
        assert ours.parent is not None and ours.parent.span_id == caller.get_span_context().span_id
        assert (ours.attributes or {})["prefect.flow_run.id"] == str(run.id)
    assert (create.attributes or {})["prefect.deployment.name"] == "add/add-dep"
    assert (wait.attributes or {})["prefect.flow_run.state"] == "COMPLETED"


# Prefect's own run_deployment in a fresh interpreter (importing Prefect here would load its
# settings into the test process), ours beside it, both inside one span of an SDK tracer.
SIDE_BY_SIDE = textwrap.dedent(
    """
    import datetime as dt, json
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    trace.set_tracer_provider(TracerProvider())
    from prefect.deployments import run_deployment as prefect_run_deployment
    import deploytrigger
    later = dt.datetime(2099, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
    with trace.get_tracer("app").start_as_current_span("request") as span:
        context = span.get_span_context()
        ours = deploytrigger.run_deployment("add/add-dep", scheduled_time=later, timeout=0)
        theirs = prefect_run_deployment("add/add-dep", scheduled_time=later, timeout=0)
    report = {"trace_id": context.trace_id, "ours": str(ours.id), "theirs": str(theirs.id)}
    print(json.dumps(report))
    """
)


def test_label_is_the_one_prefect_s_own_run_deployment_writes_for_the_same_span(
    api_url: str, tmp_path: Path
) -> None:
    pytest.importorskip("prefect", reason="compares with Prefect's own run_deployment")
    pytest.importorskip(
        "opentelemetry.instrumentation.utils",
        reason="Prefect labels a run only when opentelemetry-instrumentation is installed",
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env.update(
        PREFECT_API_URL=api_url,
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    done = subprocess.run(
        [sys.executable, "-c", SIDE_BY_SIDE],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    ours = labels_of(api_url, uuid.UUID(report["ours"]))[LABEL]
    theirs = labels_of(api_url, uuid.UUID(report["theirs"]))[LABEL]
    print(f"\n{LABEL} of deploytrigger's run: {ours}\n{LABEL} of Prefect's run:       {theirs}")
    assert ours == theirs
    assert trace_id_in(ours) == report["trace_id"]
