"""The caller's OpenTelemetry trace: the label that carries it into a run, and our own spans.

Prefect's engine starts a flow run's span under the W3C ``traceparent`` found
in the run's ``__OTEL_TRACEPARENT`` label, so a run created with that label
appears in the trace it names. Everything here goes through
``opentelemetry-api`` and only when the application has imported it already
(``"opentelemetry" in sys.modules``): this module never imports it otherwise,
so a script that does not trace loads none of it. No SDK is configured here;
without one the API's spans record nothing.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Any, Dict, Iterator, Mapping, Optional

from .._version import __version__

logger = logging.getLogger("deploytrigger")

TRACEPARENT_LABEL = "__OTEL_TRACEPARENT"
"""The flow-run label Prefect reads a run's parent span from (and writes its own span to)."""

TRACER_NAME = "deploytrigger"
"""The instrumentation scope of our spans: the package's name, as OpenTelemetry asks."""

CREATE_SPAN = "deploytrigger.create_flow_run"
"""The span around a trigger: resolving the deployment, linking, creating the run."""

WAIT_SPAN = "deploytrigger.wait"
"""The span around a wait for one run."""


def _api() -> Any:
    """``opentelemetry.trace`` when the application has imported OpenTelemetry, else None."""
    if "opentelemetry" not in sys.modules:
        return None
    try:
        from opentelemetry import trace
    except ImportError:  # a namespace package without the API
        return None
    return trace


def current_traceparent() -> Optional[str]:
    """The W3C ``traceparent`` of the caller's current span, or None.

    None when OpenTelemetry is not imported or no valid span is current. The
    value comes from the application's configured propagator
    (``opentelemetry.propagate.inject``), as Prefect takes it; a propagator
    that writes no ``traceparent`` gives None.
    """
    trace = _api()
    if trace is None or not trace.get_current_span().get_span_context().is_valid:
        return None
    from opentelemetry import propagate

    carrier: Dict[str, str] = {}
    propagate.inject(carrier)
    value = carrier.get("traceparent")
    return value if isinstance(value, str) and value else None


def label_in(labels: Optional[Mapping[str, Any]]) -> Optional[str]:
    """The ``__OTEL_TRACEPARENT`` label in a run's ``labels``, or None."""
    value = labels.get(TRACEPARENT_LABEL) if labels else None
    return value if isinstance(value, str) and value else None


def child_traceparent(
    parent_labels: Optional[Mapping[str, Any]], caller: Optional[str]
) -> Optional[str]:
    """The ``traceparent`` a new run is labelled with, as Prefect's ``run_deployment`` chooses it.

    Args:
        parent_labels: the labels of the parent run the new run is created
            under, when it has one whose labels are known; None otherwise.
        caller: the caller's :func:`current_traceparent`.

    Returns:
        The parent's label under a parent (None when the parent has none),
        else ``caller``.
    """
    if parent_labels is not None:
        return label_in(parent_labels)
    return caller


@contextlib.contextmanager
def client_span(name: str, attributes: Mapping[str, Any]) -> Iterator[Optional[Any]]:
    """A CLIENT span of ours named ``name``, current for the block; None without OpenTelemetry.

    Attributes whose value is None are left out. An exception leaving the
    block is recorded on the span, which then ends with an error status.
    """
    trace = _api()
    if trace is None:
        yield None
        return
    tracer = trace.get_tracer(TRACER_NAME, __version__)
    given = {key: value for key, value in attributes.items() if value is not None}
    with tracer.start_as_current_span(name, kind=trace.SpanKind.CLIENT, attributes=given) as span:
        yield span


def set_attributes(span: Optional[Any], attributes: Mapping[str, Any]) -> None:
    """Add ``attributes`` (None values left out) to a span from :func:`client_span`."""
    if span is None:
        return
    for key, value in attributes.items():
        if value is not None:
            span.set_attribute(key, value)
