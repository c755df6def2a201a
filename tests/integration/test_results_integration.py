"""read_result against a real Prefect server: the files its flows really persist, read back.

The flows of ``examples/flows.py`` run in the server's flows process with its
own ``PREFECT_HOME``; their results land under that home (or in the storage
blocks created here), on this machine, where the test reads them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from helpers.result_samples import SAMPLE
from helpers.server_http import raw

import deploytrigger
from deploytrigger import (
    Client,
    FlowRun,
    FlowRunFailedError,
    PickleRefusedError,
    ResultNotPersistedError,
    ResultNotReadyError,
    ResultStorageError,
    StorageBlock,
)
from harness.local_server import LocalPrefect

pytestmark = pytest.mark.integration

WAIT = 180.0
RUNS = {
    "json": "json-result/json-result-dep",
    "compressed": "compressed-result/compressed-result-dep",
    "pickle": "pickle-result/pickle-result-dep",
    "not persisted": "echo/echo-dep",
    "fail": "fail/fail-dep",
    "json fail": "json-fail/json-fail-dep",
    "block": "block-result/block-result-dep",
    "remote": "remote-result/remote-result-dep",
}
"""The runs this module reads, each started once: what they show -> their deployment."""


def post(api_url: str, path: str, body: Dict[str, Any]) -> Dict[str, Any]:
    response = raw.post(f"{api_url}{path}", json=body, timeout=30)
    assert response.status_code in (200, 201), (path, response.status_code, response.text)
    created: Dict[str, Any] = response.json()
    return created


def block_document(api_url: str, block_type: Dict[str, Any], name: str, data: Any) -> None:
    """Create block document ``name`` of a block type with the type's (first) schema."""
    schemas = raw.post(
        f"{api_url}/block_schemas/filter",
        json={"block_schemas": {"block_type_id": {"any_": [block_type["id"]]}}},
        timeout=30,
    ).json()
    body = {
        "name": name,
        "block_type_id": block_type["id"],
        "block_schema_id": schemas[0]["id"],
        "data": data,
    }
    post(api_url, "/block_documents/", body)


@pytest.fixture(scope="module")
def storage(api_url: str) -> Iterator[Dict[str, Path]]:
    """The directories of the two storage blocks the flows name, created on the server.

    ``local-file-system/deploytrigger-results`` (a type the server knows) and
    ``fake-remote-storage/deploytrigger-remote``: a block type of our own,
    registered here, that the flows process knows from ``examples/flows.py``.
    """
    with tempfile.TemporaryDirectory(prefix="deploytrigger-results-") as root:
        local, bucket = Path(root, "local"), Path(root, "bucket")
        local_type = raw.get(f"{api_url}/block_types/slug/local-file-system", timeout=30).json()
        block_document(api_url, local_type, "deploytrigger-results", {"basepath": str(local)})
        remote_type = post(
            api_url, "/block_types/", {"name": "Fake Remote Storage", "slug": "fake-remote-storage"}
        )
        fields = {
            "title": "FakeRemoteStorage",
            "type": "object",
            "block_type_slug": "fake-remote-storage",
            "properties": {"bucket": {"title": "Bucket", "type": "string"}},
            "required": ["bucket"],
            "secret_fields": [],
            "block_schema_references": {},
        }
        schema = {"block_type_id": remote_type["id"], "fields": fields, "capabilities": []}
        post(api_url, "/block_schemas/", {**schema, "version": "1"})
        block_document(api_url, remote_type, "deploytrigger-remote", {"bucket": str(bucket)})
        yield {"local": local, "bucket": bucket}


@pytest.fixture(scope="module")
def client(api_url: str) -> Iterator[Client]:
    with Client(api_url, request_timeout=10) as shared:
        yield shared


@pytest.fixture(scope="module")
def finished(client: Client, storage: Dict[str, Path]) -> Dict[str, FlowRun]:
    """One final run of each deployment in ``RUNS``, all started at once."""
    handles = {what: client.submit(name, poll_interval=1) for what, name in RUNS.items()}
    _, not_done = client.wait_all(handles.values(), timeout=WAIT, poll_interval=1)
    assert not not_done, [handle.flow_run for handle in not_done]
    return {what: handle.flow_run for what, handle in handles.items()}


def test_a_json_result_comes_back_with_its_python_types(
    client: Client, finished: Dict[str, FlowRun], prefect: LocalPrefect
) -> None:
    run = finished["json"]
    assert client.read_result(run) == SAMPLE
    assert client.read_result(str(run.id)) == SAMPLE  # by id: the record read again
    data = run.state.raw["data"] if run.state else None
    assert data is not None and data["storage_block_id"] is None
    assert prefect.home is not None and Path(data["storage_key"]).parent == prefect.home / "storage"


def test_a_compressed_json_result_comes_back_the_same(
    client: Client, finished: Dict[str, FlowRun]
) -> None:
    assert client.read_result(finished["compressed"]) == SAMPLE


def test_a_pickled_result_is_refused_then_loaded_when_allowed(
    client: Client, finished: Dict[str, FlowRun]
) -> None:
    run = finished["pickle"]
    with pytest.raises(PickleRefusedError, match="allow_pickle=True"):
        client.read_result(run)
    expected = {"x": 1, "when": datetime(2026, 11, 23, tzinfo=timezone.utc)}
    assert client.read_result(run, allow_pickle=True) == expected


def test_a_flow_that_does_not_persist_has_no_result(
    client: Client, finished: Dict[str, FlowRun]
) -> None:
    with pytest.raises(ResultNotPersistedError, match="persist_result=True"):
        client.read_result(finished["not persisted"])


def test_a_failed_run_raises_with_the_exception_text(
    client: Client, finished: Dict[str, FlowRun]
) -> None:
    run = finished["fail"]  # persisted with pickle, as Prefect does for every failure
    with pytest.raises(FlowRunFailedError, match="RuntimeError: boom") as caught:
        client.read_result(run)
    assert caught.value.exception_type is None and caught.value.flow_run_id == run.id
    with pytest.raises(FlowRunFailedError) as caught:
        client.read_result(run, allow_pickle=True)
    assert caught.value.exception_type == "builtins.RuntimeError"


def test_a_failed_run_persisted_as_json_names_its_exception_type(
    client: Client, finished: Dict[str, FlowRun]
) -> None:
    with pytest.raises(FlowRunFailedError, match="bad input") as caught:
        client.read_result(finished["json fail"])
    assert caught.value.exception_type == "builtins.ValueError"


def test_a_local_file_system_block_is_read_from_its_basepath(
    client: Client, finished: Dict[str, FlowRun], storage: Dict[str, Path]
) -> None:
    run = finished["block"]
    assert client.read_result(run) == [1, 2]
    data = run.state.raw["data"] if run.state else None
    assert data is not None and data["storage_block_id"] is not None
    assert (storage["local"] / data["storage_key"]).is_file()


def test_a_remote_block_is_read_through_result_reader(
    api_url: str, client: Client, finished: Dict[str, FlowRun]
) -> None:
    run = finished["remote"]
    with pytest.raises(ResultStorageError, match="fake-remote-storage/deploytrigger-remote"):
        client.read_result(run)
    seen: List[StorageBlock] = []

    def read_bucket(block: StorageBlock, key: str) -> bytes:
        """What a user's S3 reader would do, with a directory for a bucket."""
        seen.append(block)
        return (Path(block.data["bucket"]) / key).read_bytes()

    with Client(api_url, result_reader=read_bucket) as reading:
        assert reading.read_result(run.id) == {"x": 1}
    assert [str(block) for block in seen] == ["fake-remote-storage/deploytrigger-remote"]


def test_a_handle_waits_then_reads_and_re_attaches_from_its_string(
    client: Client, storage: Dict[str, Path]
) -> None:
    handle = client.submit(RUNS["block"], parameters={"x": 21}, poll_interval=1)
    assert handle.read_result(timeout=WAIT) == [21, 42]
    again = client.handle(str(handle))
    assert again.id == handle.id and again.read_result(timeout=0) == [21, 42]


def test_a_run_not_final_has_no_result_yet(client: Client) -> None:
    run = client.run_deployment("sleepy/sleepy-dep", parameters={"seconds": 60}, timeout=0)
    try:
        with pytest.raises(ResultNotReadyError, match="not final"):
            client.read_result(run.id)
    finally:
        client.cancel_flow_run(run.id)


def test_the_module_level_function_and_the_command_line_read_it_too(
    api_url: str, client: Client, finished: Dict[str, FlowRun]
) -> None:
    run = finished["block"]
    assert deploytrigger.read_result(run.id, client=client) == [1, 2]
    done = subprocess.run(
        [sys.executable, "-m", "deploytrigger", "result", str(run.id), "--api-url", api_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, json.loads(done.stdout)) == (0, [1, 2]), done.stderr
    failed = subprocess.run(
        [sys.executable, "-m", "deploytrigger", "result", str(finished["fail"].id)],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(without_prefect_settings(), PREFECT_API_URL=api_url),
    )
    assert failed.returncode == 1 and "RuntimeError: boom" in failed.stderr


def without_prefect_settings() -> Dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}


def test_an_unknown_run_is_not_found(client: Client) -> None:
    with pytest.raises(deploytrigger.FlowRunNotFoundError):
        client.read_result(uuid.uuid4())
