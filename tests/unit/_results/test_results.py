"""Reading a run's persisted return value: every decode path and every error (HTTP stubbed).

Result files are written to ``tmp_path`` in the exact forms Prefect 3.8.8
writes (checked against a real server in ``test_results_integration.py``);
the client sleeps on a fake clock, so the retries of a missing file never sleep.
"""

from __future__ import annotations

import base64
import io
import json
import lzma
import pickle
import uuid
import zlib
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
import responses
from helpers.fake_time import FakeTime
from helpers.result_samples import SAMPLE
from helpers.run_stubs import API, RUN, RUN_ID
from helpers.server_json import flow_run_json

import deploytrigger
from deploytrigger import (
    Client,
    FlowRun,
    FlowRunFailedError,
    FlowRunTimeoutError,
    InvalidArgumentTypeError,
    PickleRefusedError,
    ResultDecodeError,
    ResultError,
    ResultExpiredError,
    ResultNotPersistedError,
    ResultNotReadyError,
    ResultStorageError,
    StorageBlock,
    cli,
)
from deploytrigger._results.serializers import DecodeProblem, decode

JSON = {"type": "json", "jsonlib": "json", "dumps_kwargs": {}, "loads_kwargs": {}}
COMPRESSED_JSON = {"type": "compressed/json", "serializer": JSON, "compressionlib": "lzma"}
PICKLE = {"type": "pickle", "picklelib": "cloudpickle", "picklelib_version": None}
BLOCK_ID = uuid.UUID("0e218d56-75c2-4355-8fb7-9c108159ece3")
BLOCK_URL = f"{API}/block_documents/{BLOCK_ID}"

# What Prefect's JSON serializer wrote for examples/flows.py's sample_value(1) (a real file).
PREFECT_JSON = (
    b'{"x": 1, "when": {"__class__": "datetime.datetime", "data": "2026-11-23T18:30:00Z"}, '
    b'"day": {"__class__": "datetime.date", "data": "2026-11-23"}, '
    b'"took": {"__class__": "datetime.timedelta", "data": "PT1M30S"}, '
    b'"id": {"__class__": "uuid.UUID", "data": "12345678-1234-5678-1234-567812345678"}, '
    b'"price": {"__class__": "decimal.Decimal", "data": "9.99"}, '
    b'"where": {"__class__": "pathlib.PosixPath", "data": "/tmp/report.csv"}, '
    b'"tags": {"__class__": "builtins.set", "data": ["a", "b"]}, '
    b'"items": [1, "two", null, 3.5]}'
)


@pytest.fixture
def http() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime(1000.0)


@pytest.fixture
def client(fake_time: FakeTime) -> Iterator[Client]:
    with Client(API, sleep=fake_time.sleep, clock=fake_time.clock) as made:
        yield made


def record(
    key: str,
    serializer: Optional[Dict[str, Any]] = None,
    block_id: Optional[uuid.UUID] = None,
    expiration: Optional[str] = None,
) -> Dict[str, Any]:
    """``state.data`` as Prefect 3.8.8 sets it for a persisted result."""
    return {
        "storage_key": key,
        "expiration": expiration,
        "serializer": serializer or JSON,
        "prefect_version": "3.8.8",
        "storage_block_id": None if block_id is None else str(block_id),
    }


def serve_run(
    http: responses.RequestsMock,
    state_type: str = "COMPLETED",
    data: Optional[Dict[str, Any]] = None,
    message: Any = None,
) -> None:
    http.get(RUN, json=flow_run_json(state_type, message, state_data=data))


def stored(
    http: responses.RequestsMock,
    tmp_path: Path,
    content: bytes,
    serializer: Optional[Dict[str, Any]] = None,
    state_type: str = "COMPLETED",
    message: Optional[str] = None,
) -> Path:
    """A result file in ``tmp_path`` and the run that points at it; the file's path."""
    path = tmp_path / "storage" / uuid.uuid4().hex
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(content)
    serve_run(http, state_type, data=record(str(path), serializer), message=message)
    return path


def b64(content: bytes) -> bytes:
    return base64.encodebytes(content)


# -- the serializers ----------------------------------------------------------------------------


def test_a_json_result_comes_back_with_prefects_marked_types_as_python_types(
    client: Client, http: responses.RequestsMock, tmp_path: Path, fake_time: FakeTime
) -> None:
    stored(http, tmp_path, PREFECT_JSON)
    value = client.read_result(RUN_ID)
    assert value == SAMPLE
    assert value["when"].tzinfo is not None and isinstance(value["where"], Path)
    assert fake_time.sleeps == []


def test_a_compressed_json_result_is_decompressed_then_decoded(
    client: Client, http: responses.RequestsMock, tmp_path: Path
) -> None:
    stored(http, tmp_path, b64(lzma.compress(PREFECT_JSON)), COMPRESSED_JSON)
    assert client.read_result(str(RUN_ID)) == SAMPLE


def test_compressed_json_names_its_compression_library(
    client: Client, http: responses.RequestsMock, tmp_path: Path
) -> None:
    serializer = {"type": "compressed/json", "serializer": "json", "compressionlib": "zlib"}
    stored(http, tmp_path, b64(zlib.compress(b"[1, 2]")), serializer)
    assert client.read_result(RUN_ID) == [1, 2]


def test_a_record_with_metadata_and_result_is_read_with_its_own_serializer(
    client: Client, http: responses.RequestsMock, tmp_path: Path
) -> None:
    wrapped = {
        "metadata": {"storage_key": "k", "serializer": COMPRESSED_JSON, "expiration": None},
        "result": b64(lzma.compress(b'{"ok": true}')).decode(),
    }
    stored(http, tmp_path, json.dumps(wrapped).encode(), JSON)
    assert client.read_result(RUN_ID) == {"ok": True}


def test_a_returned_dict_that_merely_looks_like_a_record_is_returned_as_is(
    client: Client, http: responses.RequestsMock, tmp_path: Path
) -> None:
    value = {"metadata": {"owner": "me"}, "result": 5}
    stored(http, tmp_path, json.dumps(value).encode())
    assert client.read_result(RUN_ID) == value


@pytest.mark.parametrize(
    ("marked", "expected"),
    [
        ({"__class__": "datetime.datetime", "data": "2026-11-23T18:30:00Z"},
         datetime(2026, 11, 23, 18, 30, tzinfo=timezone.utc)),
        ({"__class__": "datetime.datetime", "data": "2026-01-02T03:04:05+01:00"},
         datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=1)))),
        ({"__class__": "datetime.datetime", "data": "2026-01-02T03:04:05.000006"},
         datetime(2026, 1, 2, 3, 4, 5, 6)),  # naive stays naive
        ({"__class__": "datetime.date", "data": "2026-01-02"}, date(2026, 1, 2)),
        ({"__class__": "datetime.time", "data": "01:02:03"}, time(1, 2, 3)),
        ({"__class__": "datetime.time", "data": "01:02:03Z"}, time(1, 2, 3, tzinfo=timezone.utc)),
        ({"__class__": "datetime.timedelta", "data": "P1DT2H0.000005S"},
         timedelta(days=1, hours=2, microseconds=5)),
        ({"__class__": "datetime.timedelta", "data": "-PT23H59M55S"},
         timedelta(days=-1, seconds=5)),
        ({"__class__": "datetime.timedelta", "data": "P2W"}, timedelta(weeks=2)),
        ({"__class__": "datetime.timedelta", "data": "P1Y35DT1H1S"},
         timedelta(days=400, seconds=3601)),  # pydantic writes 365 days as a year
        ({"__class__": "datetime.timedelta", "data": "-P1Y2M"}, -timedelta(days=425)),
        ({"__class__": "datetime.timedelta", "data": 90.5}, timedelta(seconds=90.5)),
        ({"__class__": "uuid.UUID", "data": str(RUN_ID)}, RUN_ID),
        ({"__class__": "decimal.Decimal", "data": "1E+30"}, Decimal("1E+30")),
        ({"__class__": "pathlib.PosixPath", "data": "/a/b"}, Path("/a/b")),
        ({"__class__": "pathlib._local.PosixPath", "data": "/a/b"}, Path("/a/b")),  # 3.13
        ({"__class__": "pathlib.PurePosixPath", "data": "/a"}, PurePosixPath("/a")),
        ({"__class__": "pathlib.WindowsPath", "data": "C:\\x"}, PureWindowsPath("C:\\x")),
        ({"__class__": "builtins.set", "data": [[1, 2], 3]}, {(1, 2), 3}),
        ({"__class__": "builtins.frozenset", "data": [3]}, frozenset({3})),
        ({"__class__": "builtins.tuple", "data": [1, 2]}, (1, 2)),
        ({"__class__": "builtins.bytes", "data": "abc"}, b"abc"),
    ],
)  # fmt: skip
def test_each_marked_standard_library_type_is_rebuilt(
    marked: Dict[str, Any], expected: Any
) -> None:
    value = decode(json.dumps({"v": marked}).encode(), JSON)["v"]
    assert value == expected and type(value) is type(expected)


def test_a_marked_class_outside_the_standard_library_stays_as_prefect_wrote_it() -> None:
    marked = {"__class__": "__main__.Color", "data": "red"}
    assert decode(json.dumps([marked]).encode(), JSON) == [marked]


def test_a_builtin_exception_is_rebuilt_and_any_other_stays_a_dict() -> None:
    builtin, other = decode(
        b'[{"__exc_type__": "builtins.ValueError", "message": "bad"},'
        b' {"__exc_type__": "mylib.Oops", "message": "no"}]',
        JSON,
    )
    assert type(builtin) is ValueError and str(builtin) == "bad"
    assert other == {"__exc_type__": "mylib.Oops", "message": "no"}


@pytest.mark.parametrize(
    "content",
    [
        b'{"__class__": "datetime.timedelta", "data": "P"}',
        b'{"__class__": "uuid.UUID", "data": "not-a-uuid"}',
        b'{"__class__": "datetime.date", "data": 5}',
        b"{not json",
    ],
)
def test_malformed_json_or_a_malformed_marked_value_is_a_decode_problem(content: bytes) -> None:
    with pytest.raises(DecodeProblem):
        decode(content, JSON)


def test_the_json_serializer_as_prefect_itself_writes_it_round_trips() -> None:
    serializers = pytest.importorskip("prefect.serializers")
    value = {
        "aware": datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
        "naive": datetime(2026, 1, 2, 3, 4, 5, 6),
        "day": date(2026, 1, 2),
        "at": time(1, 2, 3),
        "took": timedelta(days=-1, seconds=5, microseconds=7),
        "id": RUN_ID,
        "price": Decimal("1.10"),
        "where": Path("/tmp/x"),
        "set": {1, 2},
        "frozen": frozenset({"a"}),
        "raw": b"abc",
        "list": [1, None, "x"],
    }
    for serializer in (serializers.JSONSerializer(), serializers.CompressedJSONSerializer()):
        blob = serializer.dumps(value)
        assert decode(blob, serializer.model_dump()) == value


# -- pickles ---------------------------------------------------------------------------------


def test_a_pickled_result_is_refused_without_reading_it_and_says_why_and_how(
    client: Client, http: responses.RequestsMock, tmp_path: Path, fake_time: FakeTime
) -> None:
    path = stored(http, tmp_path, b64(pickle.dumps({"x": 1})), PICKLE)
    path.unlink()  # nothing is read: refused from the record alone
    with pytest.raises(PickleRefusedError) as caught:
        client.read_result(RUN_ID)
    message = str(caught.value)
    assert str(RUN_ID) in message and "unpickling runs" in message
    assert "allow_pickle=True" in message and 'result_serializer="json"' in message
    assert caught.value.serializer == "pickle" and fake_time.sleeps == []


@pytest.mark.parametrize("compressed", [False, True])
def test_allow_pickle_loads_it_with_the_standard_library(
    client: Client, http: responses.RequestsMock, tmp_path: Path, compressed: bool
) -> None:
    value = {"x": 1, "when": datetime(2026, 1, 1, tzinfo=timezone.utc)}
    if compressed:
        content = b64(lzma.compress(b64(pickle.dumps(value))))
        serializer = {"type": "compressed/pickle", "serializer": PICKLE, "compressionlib": "lzma"}
    else:
        content, serializer = b64(pickle.dumps(value)), PICKLE
    stored(http, tmp_path, content, serializer)
    assert client.read_result(RUN_ID, allow_pickle=True) == value


def test_a_pickle_inside_a_json_looking_record_is_refused_too(
    client: Client, http: responses.RequestsMock, tmp_path: Path
) -> None:
    wrapped = {"metadata": {"serializer": PICKLE}, "result": b64(pickle.dumps(1)).decode()}
    stored(http, tmp_path, json.dumps(wrapped).encode(), JSON)
    with pytest.raises(PickleRefusedError):
        client.read_result(RUN_ID)
    assert client.read_result(RUN_ID, allow_pickle=True) == 1


def test_a_pickle_that_needs_cloudpickle_says_so(
    client: Client, http: responses.RequestsMock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(__import__("sys").modules, "cloudpickle", None)  # not installed
    stored(http, tmp_path, b64(b"ccloudpickle\n_make_skeleton_class\n."), PICKLE)
    with pytest.raises(ResultDecodeError, match=r"cloudpickle.*pip install cloudpickle"):
        client.read_result(RUN_ID, allow_pickle=True)


def test_a_pickle_of_the_flows_own_classes_says_which_module_is_missing(
    client: Client, http: responses.RequestsMock, tmp_path: Path
) -> None:
    stored(http, tmp_path, b64(b"cmy_flow_code_xyz\nThing\n."), PICKLE)
    with pytest.raises(ResultDecodeError, match=r"'my_flow_code_xyz'.*not importable"):
        client.read_result(RUN_ID, allow_pickle=True)


def test_allow_pickle_must_be_a_bool(client: Client, http: responses.RequestsMock) -> None:
    serve_run(http, data=record("/nowhere"))
    with pytest.raises(InvalidArgumentTypeError):
        client.read_result(RUN_ID, allow_pickle="yes")  # type: ignore[arg-type]


# -- where the file is -------------------------------------------------------------------------


def block_json(slug: str, data: Dict[str, Any], name: str = "results") -> Dict[str, Any]:
    """``GET /block_documents/{id}`` as the server answers it (the parts used)."""
    return {
        "id": str(BLOCK_ID),
        "name": name,
        "data": data,
        "block_type_name": slug.replace("-", " ").title(),
        "block_type": {"id": str(uuid.uuid4()), "slug": slug, "name": slug},
        "block_schema": {"fields": {"block_type_slug": slug}},
    }


def test_a_local_file_system_block_is_its_basepath_plus_the_key(
    client: Client, http: responses.RequestsMock, tmp_path: Path
) -> None:
    (tmp_path / "00fba15e").write_bytes(b"[1, 2]")
    http.get(BLOCK_URL, json=block_json("local-file-system", {"basepath": str(tmp_path)}))
    serve_run(http, data=record("00fba15e", block_id=BLOCK_ID))
    assert client.read_result(RUN_ID) == [1, 2]


def test_a_block_with_a_relative_basepath_cannot_be_resolved_here(
    client: Client, http: responses.RequestsMock
) -> None:
    http.get(BLOCK_URL, json=block_json("local-file-system", {"basepath": None}))
    serve_run(http, data=record("00fba15e", block_id=BLOCK_ID))
    with pytest.raises(ResultStorageError, match="working directory of the process"):
        client.read_result(RUN_ID)


def test_a_remote_block_is_read_through_the_clients_result_reader(
    http: responses.RequestsMock, fake_time: FakeTime
) -> None:
    calls: List[Tuple[StorageBlock, str]] = []

    def reader(block: StorageBlock, key: str) -> bytes:
        calls.append((block, key))
        return b'{"x": 1}'

    http.get(BLOCK_URL, json=block_json("s3-bucket", {"bucket_name": "results"}, "prod"))
    serve_run(http, data=record("cf33195b", block_id=BLOCK_ID))
    with Client(API, sleep=fake_time.sleep, result_reader=reader) as client:
        assert client.read_result(RUN_ID) == {"x": 1}
    [(block, key)] = calls
    assert key == "cf33195b" and str(block) == "s3-bucket/prod" and block.id == BLOCK_ID
    assert block.block_type_slug == "s3-bucket" and block.data == {"bucket_name": "results"}


def test_a_remote_block_without_a_reader_says_how_to_plug_one_in(
    client: Client, http: responses.RequestsMock
) -> None:
    http.get(BLOCK_URL, json=block_json("s3-bucket", {"bucket_name": "results"}, "prod"))
    serve_run(http, data=record("cf33195b", block_id=BLOCK_ID))
    with pytest.raises(ResultStorageError, match="result_reader") as caught:
        client.read_result(RUN_ID)
    assert "s3-bucket/prod" in caught.value.location and "cf33195b" in caught.value.location


def test_a_failing_reader_is_retried_then_reported(
    http: responses.RequestsMock, fake_time: FakeTime
) -> None:
    def reader(block: StorageBlock, key: str) -> bytes:
        raise PermissionError("access denied")

    http.get(BLOCK_URL, json=block_json("gcs-bucket", {"bucket": "b"}))
    serve_run(http, data=record("k", block_id=BLOCK_ID))
    client = Client(API, sleep=fake_time.sleep, result_reader=reader)
    with client, pytest.raises(ResultStorageError, match="access denied") as caught:
        client.read_result(RUN_ID)
    assert isinstance(caught.value.__cause__, PermissionError)
    assert fake_time.sleeps == [0.25] * 9


def test_a_reader_that_returns_text_is_a_type_error(
    http: responses.RequestsMock, fake_time: FakeTime
) -> None:
    http.get(BLOCK_URL, json=block_json("gcs-bucket", {"bucket": "b"}))
    serve_run(http, data=record("k", block_id=BLOCK_ID))

    def reader(block: StorageBlock, key: str) -> Any:
        return "1"

    client = Client(API, sleep=fake_time.sleep, result_reader=reader)
    with client, pytest.raises(InvalidArgumentTypeError, match="must return bytes"):
        client.read_result(RUN_ID)


def test_a_deleted_block_is_a_storage_error(client: Client, http: responses.RequestsMock) -> None:
    http.get(BLOCK_URL, status=404, json={"detail": "Block document not found"})
    serve_run(http, data=record("k", block_id=BLOCK_ID))
    with pytest.raises(ResultStorageError, match="no longer has"):
        client.read_result(RUN_ID)


def test_a_missing_file_is_read_ten_times_a_quarter_second_apart_then_named(
    client: Client, http: responses.RequestsMock, tmp_path: Path, fake_time: FakeTime
) -> None:
    missing = tmp_path / "gone"
    serve_run(http, data=record(str(missing)))
    with pytest.raises(ResultStorageError) as caught:
        client.read_result(RUN_ID)
    assert fake_time.sleeps == [0.25] * 9  # ten reads
    assert caught.value.location == str(missing) and caught.value.flow_run_id == RUN_ID
    message = str(caught.value)
    assert str(missing) in message and "$PREFECT_HOME/storage" in message
    assert "machine that ran the flow" in message and str(RUN_ID) in message


def test_a_file_that_lands_late_is_read_once_it_is_there(
    http: responses.RequestsMock, tmp_path: Path
) -> None:
    late = tmp_path / "late"
    sleeps: List[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 1:
            late.write_bytes(b"")  # created, not written yet: read again
        else:
            late.write_bytes(b'"done"')

    serve_run(http, data=record(str(late)))
    with Client(API, sleep=sleep) as client:
        assert client.read_result(RUN_ID) == "done"
    assert sleeps == [0.25, 0.25]


def test_a_relative_storage_key_without_a_block_cannot_be_resolved(
    client: Client, http: responses.RequestsMock
) -> None:
    serve_run(http, data=record("relative/key"))
    with pytest.raises(ResultStorageError, match="relative to the working directory"):
        client.read_result(RUN_ID)


# -- the run's state -------------------------------------------------------------------------------


def test_an_expired_result_is_refused(client: Client, http: responses.RequestsMock) -> None:
    serve_run(http, data=record("/x", expiration="2020-01-01T00:00:00Z"))
    with pytest.raises(ResultExpiredError, match="expired at 2020-01-01") as caught:
        client.read_result(RUN_ID)
    assert caught.value.expiration == datetime(2020, 1, 1, tzinfo=timezone.utc)


def test_a_result_expiring_later_is_read(
    client: Client, http: responses.RequestsMock, tmp_path: Path
) -> None:
    (tmp_path / "r").write_bytes(b"7")
    serve_run(http, data=record(str(tmp_path / "r"), expiration="2999-01-01T00:00:00Z"))
    assert client.read_result(RUN_ID) == 7


def test_a_run_that_did_not_persist_says_to_set_persist_result(
    client: Client, http: responses.RequestsMock
) -> None:
    serve_run(http, data=None)
    with pytest.raises(ResultNotPersistedError, match=r"persist_result=True") as caught:
        client.read_result(RUN_ID)
    assert str(RUN_ID) in str(caught.value) and caught.value.flow_run.id == RUN_ID


def test_a_run_not_final_has_no_result_yet(client: Client, http: responses.RequestsMock) -> None:
    serve_run(http, "RUNNING")
    with pytest.raises(ResultNotReadyError, match="Running, not final") as caught:
        client.read_result(RUN_ID)
    assert isinstance(caught.value, ResultError) and caught.value.state.type == "RUNNING"


def test_a_run_given_not_final_is_read_again_before_giving_up(
    client: Client, http: responses.RequestsMock, tmp_path: Path
) -> None:
    stale = FlowRun.from_json(flow_run_json("RUNNING", state_data=None))
    (tmp_path / "r").write_bytes(b'"fresh"')
    serve_run(http, data=record(str(tmp_path / "r")))
    assert client.read_result(stale) == "fresh"


def test_a_final_run_given_is_not_read_again(
    client: Client, http: responses.RequestsMock, tmp_path: Path
) -> None:
    (tmp_path / "r").write_bytes(b"1")
    run = FlowRun.from_json(flow_run_json("COMPLETED", state_data=record(str(tmp_path / "r"))))
    assert client.read_result(run) == 1
    assert len(http.calls) == 0


def test_a_failed_run_raises_with_its_message_and_no_type_when_pickled(
    client: Client, http: responses.RequestsMock, tmp_path: Path
) -> None:
    message = "Flow run encountered an exception: RuntimeError: boom"
    stored(http, tmp_path, b64(pickle.dumps(RuntimeError("boom"))), PICKLE, "FAILED", message)
    with pytest.raises(FlowRunFailedError) as caught:
        client.read_result(RUN_ID)
    assert message in str(caught.value) and str(RUN_ID) in str(caught.value)
    assert caught.value.exception_type is None and caught.value.state.message == message


def test_a_failed_run_persisted_as_json_names_the_exception_type(
    client: Client, http: responses.RequestsMock, tmp_path: Path
) -> None:
    content = b'{"__exc_type__": "builtins.ValueError", "message": "bad input"}'
    stored(http, tmp_path, content, JSON, "FAILED", "Flow run encountered an exception: ...")
    with pytest.raises(FlowRunFailedError, match=r"raised builtins\.ValueError") as caught:
        client.read_result(RUN_ID)
    assert caught.value.exception_type == "builtins.ValueError"


def test_a_failed_run_with_allow_pickle_names_the_pickled_exception_type(
    client: Client, http: responses.RequestsMock, tmp_path: Path
) -> None:
    stored(http, tmp_path, b64(pickle.dumps(RuntimeError("boom"))), PICKLE, "FAILED")
    with pytest.raises(FlowRunFailedError) as caught:
        client.read_result(RUN_ID, allow_pickle=True)
    assert caught.value.exception_type == "builtins.RuntimeError"


@pytest.mark.parametrize("state_type", ["CRASHED", "CANCELLED"])
def test_crashed_and_cancelled_runs_have_no_result(
    client: Client, http: responses.RequestsMock, fake_time: FakeTime, state_type: str
) -> None:
    serve_run(http, state_type, data=None, message="it stopped")
    with pytest.raises(FlowRunFailedError, match=f"ended {state_type}: it stopped"):
        client.read_result(RUN_ID)
    assert fake_time.sleeps == []


def test_a_failed_runs_missing_exception_file_is_read_once_only(
    client: Client, http: responses.RequestsMock, tmp_path: Path, fake_time: FakeTime
) -> None:
    serve_run(http, "FAILED", data=record(str(tmp_path / "gone")), message="boom")
    with pytest.raises(FlowRunFailedError) as caught:
        client.read_result(RUN_ID)
    assert caught.value.exception_type is None and fake_time.sleeps == []


def test_a_failed_run_with_an_unreadable_record_still_raises_that_it_failed(
    client: Client, http: responses.RequestsMock
) -> None:
    serve_run(http, "FAILED", data={"storage_key": None}, message="boom")
    with pytest.raises(FlowRunFailedError, match="boom") as caught:
        client.read_result(RUN_ID)
    assert caught.value.exception_type is None


@pytest.mark.parametrize(
    ("data", "serializer"),
    [
        ({"storage_key": None, "serializer": JSON}, "json"),
        ({"storage_key": "/x"}, "unknown"),
        ({"storage_key": "/x", "serializer": ["json"]}, "unknown"),
    ],
)
def test_a_record_without_key_or_serializer_is_a_decode_error(
    client: Client, http: responses.RequestsMock, data: Dict[str, Any], serializer: str
) -> None:
    serve_run(http, data=data)
    with pytest.raises(ResultDecodeError, match="does not read") as caught:
        client.read_result(RUN_ID)
    assert caught.value.serializer == serializer


def test_an_unknown_serializer_is_a_decode_error_that_suggests_json(
    client: Client, http: responses.RequestsMock, tmp_path: Path
) -> None:
    stored(http, tmp_path, b"...", {"type": "my-yaml"})
    with pytest.raises(ResultDecodeError, match=r"'my-yaml'.*result_serializer=\"json\""):
        client.read_result(RUN_ID)


def test_corrupt_bytes_are_a_decode_error_that_is_also_a_value_error(
    client: Client, http: responses.RequestsMock, tmp_path: Path
) -> None:
    stored(http, tmp_path, b"{not json")
    with pytest.raises(ValueError, match="not valid JSON") as caught:
        client.read_result(RUN_ID)
    assert isinstance(caught.value, ResultDecodeError) and caught.value.serializer == "json"


# -- handles, the module-level function, the command line ----------------------------------------


FILTER = f"{API}/flow_runs/filter"


def test_handle_read_result_waits_for_the_run_then_reads_it(
    client: Client, http: responses.RequestsMock, tmp_path: Path, fake_time: FakeTime
) -> None:
    (tmp_path / "r").write_bytes(b'{"sum": 3}')
    http.post(FILTER, json=[flow_run_json("RUNNING", state_data=None)])
    http.post(FILTER, json=[flow_run_json("COMPLETED", state_data=record(str(tmp_path / "r")))])
    handle = client.handle(
        FlowRun.from_json(flow_run_json("SCHEDULED", state_data=None)), poll_interval=2
    )
    assert handle.read_result() == {"sum": 3}
    assert fake_time.sleeps == [2]


def test_handle_read_result_raises_a_timeout_when_the_run_is_not_final_in_time(
    client: Client, http: responses.RequestsMock
) -> None:
    http.post(FILTER, json=[flow_run_json("RUNNING", state_data=None)])
    handle = client.handle(FlowRun.from_json(flow_run_json("SCHEDULED", state_data=None)))
    with pytest.raises(FlowRunTimeoutError):
        handle.read_result(timeout=0)


def test_a_handle_is_its_run_id_as_a_string_and_re_attaches_from_it(
    client: Client, http: responses.RequestsMock
) -> None:
    serve_run(http, "RUNNING")
    handle = client.handle(str(RUN_ID))
    assert str(handle) == str(RUN_ID)
    again = client.handle(str(handle))
    assert again.id == handle.id == RUN_ID


def test_read_result_accepts_a_handle(
    client: Client, http: responses.RequestsMock, tmp_path: Path
) -> None:
    (tmp_path / "r").write_bytes(b"5")
    handle = client.handle(
        FlowRun.from_json(flow_run_json("COMPLETED", state_data=record(str(tmp_path / "r"))))
    )
    assert client.read_result(handle) == 5


@pytest.mark.isolated_environment(api_url=API)
def test_the_module_level_read_result_opens_a_client_from_the_environment(
    http: responses.RequestsMock, tmp_path: Path
) -> None:
    stored(http, tmp_path, b"[true]")
    assert deploytrigger.read_result(RUN_ID) == [True]
    with Client(API) as client:
        assert deploytrigger.read_result(str(RUN_ID), client=client) == [True]
    with pytest.raises(InvalidArgumentTypeError):
        deploytrigger.read_result(RUN_ID, client="nope")  # type: ignore[arg-type]


def run_cli(*argv: str) -> Tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.isolated_environment(api_url=API)
def test_cli_result_prints_the_value_as_json(http: responses.RequestsMock, tmp_path: Path) -> None:
    stored(http, tmp_path, PREFECT_JSON)
    code, out, err = run_cli("result", str(RUN_ID))
    assert (code, err) == (0, "")
    assert json.loads(out) == {
        "x": 1,
        "when": "2026-11-23T18:30:00+00:00",
        "day": "2026-11-23",
        "took": 90.0,
        "id": "12345678-1234-5678-1234-567812345678",
        "price": "9.99",
        "where": "/tmp/report.csv",
        "tags": ["a", "b"],
        "items": [1, "two", None, 3.5],
    }


@pytest.mark.isolated_environment(api_url=API)
def test_cli_result_loads_pickles_only_when_allowed(
    http: responses.RequestsMock, tmp_path: Path
) -> None:
    stored(http, tmp_path, b64(pickle.dumps({"x": (1, 2)})), PICKLE)
    code, out, err = run_cli("result", str(RUN_ID))
    assert code == 5 and out == ""
    assert "pass --allow-pickle if you trust its storage" in err and "allow_pickle" not in err
    assert run_cli("result", str(RUN_ID), "--allow-pickle")[:2] == (0, '{"x": [1, 2]}\n')


@pytest.mark.isolated_environment(api_url=API)
def test_cli_result_of_an_unknown_serializer_names_the_option_not_the_keyword(
    http: responses.RequestsMock, tmp_path: Path
) -> None:
    stored(http, tmp_path, b"...", {"type": "msgpack"})
    code, out, err = run_cli("result", str(RUN_ID))
    assert code == 5 and out == ""
    assert "(and pickle with --allow-pickle)" in err and "allow_pickle" not in err


@pytest.mark.isolated_environment(api_url=API)
@pytest.mark.parametrize(
    ("state_type", "data", "code"),
    [("FAILED", None, 1), ("CANCELLED", None, 4), ("RUNNING", None, 3), ("COMPLETED", None, 5)],
)
def test_cli_result_exit_codes_follow_the_run(
    http: responses.RequestsMock, state_type: str, data: Any, code: int
) -> None:
    serve_run(http, state_type, data=data, message="boom")
    exit_code, out, err = run_cli("result", str(RUN_ID), "--json")
    assert exit_code == code and json.loads(out)["exit_code"] == code
    assert err.startswith("deploytrigger: error: ") and str(RUN_ID) in err


@pytest.mark.isolated_environment(api_url=API)
def test_cli_result_wait_polls_until_final(http: responses.RequestsMock, tmp_path: Path) -> None:
    (tmp_path / "r").write_bytes(b'"ok"')
    serve_run(http, "RUNNING")
    http.post(FILTER, json=[flow_run_json("COMPLETED", state_data=record(str(tmp_path / "r")))])
    code, out, _ = run_cli("result", str(RUN_ID), "--wait", "--poll-interval", "0")
    assert (code, out) == (0, '"ok"\n')


@pytest.mark.isolated_environment(api_url=API)
def test_cli_result_timeout_needs_wait() -> None:
    code, _, err = run_cli("result", str(RUN_ID), "--timeout", "5")
    assert code == 2 and "--timeout needs --wait" in err
