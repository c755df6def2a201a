"""Example Prefect flows that the demo and the integration tests serve.

``make server`` serves them on a throwaway local server; or run
``python -m examples.flows`` with Prefect installed and ``PREFECT_API_URL``
pointing at a server. Each flow becomes one
deployment, named ``<flow>/<deployment>`` as listed in ``DEPLOYMENTS``.
``add/add-dep`` carries the deployment default ``y=10``: a run given only ``x``
shows that the server merges run parameters over deployment defaults.

The ``*-result`` flows persist their return value in each of the ways
``deploytrigger.read_result`` reads, and ``json-fail`` its exception (see
``tests/test_results_integration.py``), and so does ``add`` (JSON, for the
demo to print its sum); ``echo`` persists nothing. Two of them
name a storage block that must exist when they run (``RESULT_BLOCK`` and
``REMOTE_BLOCK``; the tests create them).
"""

import time
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Dict, List, Optional

from prefect import flow, serve
from prefect.deployments import run_deployment as prefect_run_deployment
from prefect.filesystems import WritableFileSystem


@flow(name="add", log_prints=True, result_serializer="json")
def add(x: int = 1, y: int = 2) -> int:
    """Add two numbers and print the sum."""
    total = x + y
    print(f"sum is {total}")
    return total


@flow(name="fail")
def fail(message: str = "boom") -> None:
    """Always fail with ``message``."""
    raise RuntimeError(message)


@flow(name="sleepy", log_prints=True)
def sleepy(seconds: float = 30.0) -> float:
    """Sleep for ``seconds`` and return them."""
    time.sleep(seconds)
    print(f"slept {seconds}s")
    return seconds


@flow(name="echo", log_prints=True)
def echo(value: Optional[dict] = None, items: Optional[list] = None) -> dict:
    """Return what it was given."""
    print(f"echo {value!r} {items!r}")
    return {"value": value, "items": items}


def sample_value(x: int) -> Dict[str, Any]:
    """A return value with the types Prefect's JSON serializer marks (datetime, UUID, set...)."""
    return {
        "x": x,
        "when": datetime(2026, 11, 23, 18, 30, tzinfo=timezone.utc),
        "day": date(2026, 11, 23),
        "took": timedelta(minutes=1, seconds=30),
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "price": Decimal("9.99"),
        "where": Path("/tmp/report.csv"),
        "tags": {"a", "b"},
        "items": [1, "two", None, 3.5],
    }


@flow(name="json-result", result_serializer="json")
def json_result(x: int = 1) -> Dict[str, Any]:
    """Persist the sample value as JSON in the default storage ($PREFECT_HOME/storage)."""
    return sample_value(x)


@flow(name="compressed-result", result_serializer="compressed/json")
def compressed_result(x: int = 1) -> Dict[str, Any]:
    """Persist the sample value as compressed JSON."""
    return sample_value(x)


@flow(name="pickle-result", persist_result=True)
def pickle_result(x: int = 1) -> Dict[str, Any]:
    """Persist with Prefect's default serializer: (cloud)pickle."""
    return {"x": x, "when": datetime(2026, 11, 23, tzinfo=timezone.utc)}


@flow(name="json-fail", result_serializer="json")
def json_fail(message: str = "bad input") -> None:
    """Fail; the exception is persisted as JSON (type and message)."""
    raise ValueError(message)


RESULT_BLOCK = "local-file-system/deploytrigger-results"
"""A ``LocalFileSystem`` block that ``block-result`` persists in (created by the tests)."""


@flow(name="block-result", result_storage=RESULT_BLOCK, result_serializer="json")
def block_result(x: int = 1) -> List[int]:
    """Persist ``[x, x * 2]`` as JSON in the ``RESULT_BLOCK`` storage block."""
    return [x, x * 2]


class FakeRemoteStorage(WritableFileSystem):
    """A storage block type of our own, standing in for S3/GCS/Azure in the tests.

    It writes to a local directory, ``bucket``; the tests read it back through
    ``Client(result_reader=...)`` as users would read a real bucket with their SDK.
    """

    _block_type_name = "Fake Remote Storage"
    _block_type_slug = "fake-remote-storage"

    bucket: str

    async def read_path(self, path: str) -> bytes:
        return (Path(self.bucket) / path).read_bytes()

    async def write_path(self, path: str, content: bytes) -> str:
        target = Path(self.bucket) / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        return str(target)


REMOTE_BLOCK = "fake-remote-storage/deploytrigger-remote"
"""A ``FakeRemoteStorage`` block that ``remote-result`` persists in (created by the tests)."""


@flow(name="remote-result", result_storage=REMOTE_BLOCK, result_serializer="json")
def remote_result(x: int = 1) -> Dict[str, int]:
    """Persist ``{"x": x}`` as JSON in the ``REMOTE_BLOCK`` storage block."""
    return {"x": x}


DEPLOYMENTS = {
    "add": add.to_deployment(
        name="add-dep", tags=["examples"], version="1.0", parameters={"y": 10}
    ),
    "fail": fail.to_deployment(name="fail-dep"),
    "sleepy": sleepy.to_deployment(name="sleepy-dep"),
    "echo": echo.to_deployment(name="echo-dep", enforce_parameter_schema=True),
    "json-result": json_result.to_deployment(name="json-result-dep"),
    "compressed-result": compressed_result.to_deployment(name="compressed-result-dep"),
    "pickle-result": pickle_result.to_deployment(name="pickle-result-dep"),
    "json-fail": json_fail.to_deployment(name="json-fail-dep"),
    "block-result": block_result.to_deployment(name="block-result-dep"),
    "remote-result": remote_result.to_deployment(name="remote-result-dep"),
}


@flow(name="parent", log_prints=True)
def parent(children: int = 4, with_prefect: bool = True) -> Dict[str, List[str]]:
    """Trigger ``add/add-dep`` ``children`` times from a deploytrigger thread pool.

    Every child is linked under this run as a subflow; with ``with_prefect``,
    Prefect's own ``run_deployment`` triggers one more child before and one
    after, and the placeholders of all of them still get distinct dynamic keys.
    """
    import deploytrigger  # only this flow needs it: the others run in any Prefect install

    before = prefect_run_deployment("add/add-dep", timeout=0) if with_prefect else None
    with deploytrigger.ParentAwareThreadPoolExecutor(max_workers=8) as pool:
        ours = list(
            pool.map(
                lambda i: (
                    deploytrigger.run_deployment("add/add-dep", parameters={"x": i}, timeout=0).id
                ),
                range(children),
            )
        )
    after = prefect_run_deployment("add/add-dep", timeout=0) if with_prefect else None
    print(f"triggered {len(ours)} children")
    return {
        "deploytrigger": [str(run_id) for run_id in ours],
        "prefect": [str(run.id) for run in (before, after) if run is not None],
    }


DEPLOYMENTS["parent"] = parent.to_deployment(name="parent-dep")


if __name__ == "__main__":
    # No pausing of the deployments on shutdown: it asks the server, and with the server
    # gone first it retries for good, so that SIGTERM and SIGINT seemed ignored.
    serve(*DEPLOYMENTS.values(), limit=50, pause_on_shutdown=False)
