"""What users import to test their own code that triggers deployments.

Nothing here is imported by ``import deploytrigger``.

Modules:
    fake: :func:`~deploytrigger.testing.fake_prefect`, a fake Prefect API on
        loopback (standard library and ``requests`` only) for testing code that
        triggers deployments, without a Prefect server.
    pytest_plugin: the ``fake_prefect`` pytest fixture (registered through the
        ``pytest11`` entry point; only pytest imports it).

The project's own tooling (real local servers, proxies, PostgreSQL) is not
here: it lives in the repository's ``harness/`` folder and is not installed.
"""

from .fake import FakePrefect, fake_prefect

__all__ = ["FakePrefect", "fake_prefect"]
