"""The ``fake_prefect`` pytest fixture: a fake Prefect API for each test that asks for it.

pytest loads this module through the ``pytest11`` entry point that installing
deploytrigger registers; nothing else imports it, so pytest stays out of
deploytrigger's runtime requirements. A test names the fixture::

    def test_nightly(fake_prefect):
        fake_prefect.add_deployment("etl/nightly")
        run = deploytrigger.run_deployment("etl/nightly", timeout=10)
        assert run.state.is_completed()

Disable it with ``-p no:deploytrigger``.
"""

from __future__ import annotations

from typing import Iterator

import pytest

from deploytrigger.testing.fake import FakePrefect

__all__ = ["fake_prefect"]


@pytest.fixture(name="fake_prefect")
def fake_prefect() -> Iterator[FakePrefect]:
    """A started :class:`~deploytrigger.testing.fake.FakePrefect`, stopped after the test.

    ``PREFECT_API_URL`` points at it during the test, so the module-level
    functions and ``Client()`` use it; the environment is restored afterwards.
    """
    with FakePrefect() as fake:
        yield fake
