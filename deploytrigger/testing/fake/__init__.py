"""A fake Prefect 3.x API for testing code that uses deploytrigger, without a Prefect server.

``with fake_prefect() as fake:`` serves the part of Prefect's REST API that
deploytrigger (and Prefect's own ``run_deployment``) use, on loopback, and
points ``PREFECT_API_URL`` at it. See :class:`FakePrefect` and the guide
``docs/guides/testing.rst``. Standard library only.

Modules:
    server: :class:`FakePrefect` and :func:`fake_prefect`: HTTP, the events websocket
        ``/api/events/out`` and the environment.
    events: the log of state-change events, event filters and live subscriptions.
    websocket: the server side of RFC 6455 (handshake and frames), standard library only.
    backend: the records and the table of routes, answering as a 3.8.8 server does.
    outcomes: how each run of a deployment ends, and its persisted result.
    records: the JSON shapes of the server's answers.
    schema: parameter schema checks and merges.
"""

from ._backend import RecordedRequest
from ._server import FakePrefect, fake_prefect

__all__ = ["FakePrefect", "RecordedRequest", "fake_prefect"]
