"""The caller's trace: the traceparent taken from the current span, the label rules, our spans."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers.otel import traceparent_of

from opentelemetry import propagate, trace  # isort: skip  (after the skip of helpers.otel)
from opentelemetry.propagators.textmap import TextMapPropagator  # isort: skip
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # isort: skip
    InMemorySpanExporter,
)

from deploytrigger._helpers import tracing

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_no_traceparent_without_a_current_span(spans: InMemorySpanExporter) -> None:
    assert tracing.current_traceparent() is None


def test_traceparent_is_the_current_span_s(spans: InMemorySpanExporter) -> None:
    with trace.get_tracer("app").start_as_current_span("request") as span:
        assert tracing.current_traceparent() == traceparent_of(span)


def test_traceparent_comes_from_the_configured_propagator(
    spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Custom(TextMapPropagator):
        def inject(self, carrier, context=None, setter=None) -> None:  # type: ignore[no-untyped-def]
            carrier["traceparent"] = "from-the-app-s-propagator"

        def extract(self, carrier, context=None, getter=None):  # type: ignore[no-untyped-def]
            return context

        @property
        def fields(self):  # type: ignore[no-untyped-def]
            return {"traceparent"}

    monkeypatch.setattr(propagate, "_HTTP_TEXT_FORMAT", Custom())
    with trace.get_tracer("app").start_as_current_span("request"):
        assert tracing.current_traceparent() == "from-the-app-s-propagator"


def test_nothing_is_traced_when_the_app_has_not_imported_opentelemetry(
    spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trace.get_tracer("app").start_as_current_span("request"):
        monkeypatch.delitem(sys.modules, "opentelemetry")
        assert tracing.current_traceparent() is None
        with tracing.client_span(tracing.CREATE_SPAN, {"a": 1}) as ours:
            assert ours is None
    assert [span.name for span in spans.get_finished_spans()] == ["request"]


def test_a_parent_s_label_wins_over_the_caller_s_span() -> None:
    assert tracing.child_traceparent({tracing.TRACEPARENT_LABEL: TRACEPARENT}, "caller") == (
        TRACEPARENT
    )


def test_a_parent_without_the_label_gives_none_as_prefect_does() -> None:
    assert tracing.child_traceparent({"prefect.flow.id": "x"}, "caller") is None
    assert tracing.child_traceparent({tracing.TRACEPARENT_LABEL: ""}, "caller") is None


def test_without_known_parent_labels_the_caller_s_traceparent_is_used() -> None:
    assert tracing.child_traceparent(None, "caller") == "caller"
    assert tracing.child_traceparent(None, None) is None


def test_our_span_is_a_client_span_of_the_deploytrigger_tracer(
    spans: InMemorySpanExporter,
) -> None:
    app = trace.get_tracer("app")
    given = {"given": "yes", "absent": None}
    with app.start_as_current_span("request") as caller, tracing.client_span("x", given) as ours:
        tracing.set_attributes(ours, {"later": 3, "none": None})
    (recorded, _) = spans.get_finished_spans()
    assert recorded.name == "x"
    assert recorded.kind is trace.SpanKind.CLIENT
    assert recorded.instrumentation_scope is not None
    assert recorded.instrumentation_scope.name == "deploytrigger"
    assert dict(recorded.attributes or {}) == {"given": "yes", "later": 3}
    assert recorded.parent is not None
    assert recorded.parent.span_id == caller.get_span_context().span_id


def test_an_exception_leaving_our_span_is_recorded(spans: InMemorySpanExporter) -> None:
    with pytest.raises(ValueError), tracing.client_span("deploytrigger.x", {}):
        raise ValueError("boom")
    (recorded,) = spans.get_finished_spans()
    assert recorded.status.status_code is trace.StatusCode.ERROR
    assert [event.name for event in recorded.events] == ["exception"]


def test_the_module_never_imports_opentelemetry_itself() -> None:
    code = (
        "import sys\n"
        "from deploytrigger._helpers import tracing\n"
        "assert tracing.current_traceparent() is None\n"
        "with tracing.client_span(tracing.WAIT_SPAN, {'a': 1}) as span:\n"
        "    assert span is None\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
