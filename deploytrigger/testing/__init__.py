"""Tooling to run real Prefect servers and proxies for tests, demos and benchmarks.

Nothing here is imported by ``import deploytrigger``. The fake Prefect API is
exported here (``from deploytrigger.testing import fake_prefect``); import the
other modules themselves, e.g.
``from harness.local_server import LocalPrefect``.

Modules:
    fake: :func:`~deploytrigger.testing.fake.fake_prefect`, a fake Prefect API
        on loopback (standard library only) for testing code that triggers
        deployments, without a Prefect server.
    pytest_plugin: the ``fake_prefect`` pytest fixture (registered through the
        ``pytest11`` entry point; only pytest imports it).
    processes: child processes in their own process group, stopped by pid.
    local_server: :class:`~harness.local_server.LocalPrefect`, a
        throwaway Prefect server on loopback, optionally serving a flows script.
    proxy: :class:`~harness.proxy.Proxy`, a loopback reverse proxy
        that records and counts requests and injects seeded faults.
    balancer: :class:`~harness.balancer.Balancer`, a round-robin
        proxy over several API servers that routes around dead ones.
    postgres: a throwaway PostgreSQL cluster for a Prefect server.
    prod_stack: :class:`~harness.prod_stack.ProdStack`, PostgreSQL,
        a Prefect server, a process work pool with deployments, and workers.

Only ``requests`` and the standard library are imported. Starting a server
needs Prefect for this interpreter (the ``server`` extra); the production stack
also needs PostgreSQL's ``initdb`` and ``pg_ctl``.
"""

from .fake import FakePrefect, fake_prefect

__all__ = ["FakePrefect", "fake_prefect"]
