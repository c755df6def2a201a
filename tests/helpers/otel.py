"""An OpenTelemetry SDK that keeps the finished spans in memory, for the tracing tests.

The SDK's tracer provider is process-wide and set once: :func:`span_exporter`
installs it on first use, and the ``spans`` fixture (``tests/conftest.py``) clears
what it recorded around each test.
"""

from __future__ import annotations

import threading
from typing import Optional

import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs opentelemetry-sdk (the unit extra)")

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

_lock = threading.Lock()
_exporter: Optional[InMemorySpanExporter] = None


def span_exporter() -> InMemorySpanExporter:
    """The process's in-memory exporter, behind an SDK tracer provider installed once."""
    global _exporter
    with _lock:
        if _exporter is None:
            provider = trace.get_tracer_provider()
            if not isinstance(provider, TracerProvider):
                provider = TracerProvider()
                trace.set_tracer_provider(provider)
            _exporter = InMemorySpanExporter()
            provider.add_span_processor(SimpleSpanProcessor(_exporter))
        return _exporter


def traceparent_of(span: trace.Span) -> str:
    """The W3C ``traceparent`` of ``span``, written out by hand from its context."""
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def trace_id_in(traceparent: str) -> int:
    """The trace id of a W3C ``traceparent``."""
    return int(traceparent.split("-")[1], 16)
