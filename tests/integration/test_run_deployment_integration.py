"""run_deployment against a real Prefect server, checked on the server's own run records."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any, Dict, Iterator

import pytest
from helpers.server_http import raw

import deploytrigger
from deploytrigger import Client, StateType

pytestmark = pytest.mark.integration

REQUEST_TIMEOUT = 10.0

FAR_FUTURE = dt.datetime(2099, 1, 1, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def client(api_url: str) -> Iterator[Client]:
    with Client(api_url, request_timeout=REQUEST_TIMEOUT) as shared:
        yield shared


def server_record(api_url: str, flow_run_id: Any) -> Dict[str, Any]:
    """The run as the server stores it, read without deploytrigger."""
    response = raw.get(f"{api_url}/flow_runs/{flow_run_id}", timeout=30)
    response.raise_for_status()
    record: Dict[str, Any] = response.json()
    return record


def count_runs(api_url: str, deployment_name: str) -> int:
    flow, name = deployment_name.split("/")
    deployment = raw.get(f"{api_url}/deployments/name/{flow}/{name}", timeout=30).json()
    response = raw.post(
        f"{api_url}/flow_runs/count",
        json={"deployments": {"id": {"any_": [deployment["id"]]}}},
        timeout=30,
    )
    response.raise_for_status()
    return int(response.json())


def cancel(api_url: str, flow_run_id: Any) -> None:
    raw.post(
        f"{api_url}/flow_runs/{flow_run_id}/set_state",
        json={"state": {"type": "CANCELLING", "name": "Cancelling"}, "force": True},
        timeout=30,
    )


def test_run_by_name_waits_for_completion_and_merges_parameters_and_tags(
    client: Client, api_url: str
) -> None:
    run = client.run_deployment(
        "add/add-dep", parameters={"x": 5}, tags=["from-test"], poll_interval=0.5, timeout=240
    )
    assert run.state is not None and run.state.type == "COMPLETED"
    assert run.state.is_final() and run.state.is_completed()
    record = server_record(api_url, run.id)
    assert record["state_type"] == "COMPLETED"
    # y comes from the deployment's own default parameters, merged by the server.
    assert record["parameters"] == {"x": 5, "y": 10}
    assert set(record["tags"]) == {"examples", "from-test"}
    assert run.parameters == record["parameters"]
    assert run.start_time is not None and run.end_time is not None
    assert run.end_time.tzinfo is not None


def test_run_by_uuid_and_by_uuid_string(client: Client, api_url: str) -> None:
    deployment = client.read_deployment_by_name("add/add-dep")
    for name in (deployment.id, str(deployment.id)):
        run = client.run_deployment(name, timeout=0)
        assert run.deployment_id == deployment.id
        assert server_record(api_url, run.id)["deployment_id"] == str(deployment.id)


def test_timeout_zero_returns_the_scheduled_run_at_once(client: Client, api_url: str) -> None:
    run = client.run_deployment("add/add-dep", scheduled_time=FAR_FUTURE, timeout=0)
    assert run.state is not None and run.state.type is StateType.SCHEDULED
    record = server_record(api_url, run.id)
    assert record["state_type"] == "SCHEDULED"
    assert record["expected_start_time"].startswith("2099-01-01T12:00:00")


def test_scheduled_time_aware_is_sent_in_utc_and_naive_is_taken_as_utc(
    client: Client, api_url: str
) -> None:
    paris_winter = dt.timezone(dt.timedelta(hours=1))
    aware = client.run_deployment(
        "add/add-dep",
        scheduled_time=dt.datetime(2099, 6, 1, 13, 30, tzinfo=paris_winter),
        timeout=0,
    )
    naive = client.run_deployment(
        "add/add-dep", scheduled_time=dt.datetime(2099, 6, 1, 12, 30), timeout=0
    )
    expected = dt.datetime(2099, 6, 1, 12, 30, tzinfo=dt.timezone.utc)
    for run in (aware, naive):
        stored = deploytrigger.models.parse_datetime(
            server_record(api_url, run.id)["expected_start_time"]
        )
        assert stored == expected
        assert run.expected_start_time == expected


def test_default_scheduled_time_is_now(client: Client, api_url: str) -> None:
    before = dt.datetime.now(dt.timezone.utc)
    run = client.run_deployment("add/add-dep", timeout=0)
    after = dt.datetime.now(dt.timezone.utc)
    assert run.expected_start_time is not None
    assert (
        before - dt.timedelta(seconds=5)
        <= run.expected_start_time
        <= after + dt.timedelta(seconds=5)
    )


def test_name_idempotency_key_and_job_variables_reach_the_run_record(
    client: Client, api_url: str
) -> None:
    key = f"test-{uuid.uuid4()}"
    run = client.run_deployment(
        "add/add-dep",
        flow_run_name="named-by-test",
        idempotency_key=key,
        job_variables={"env": {"GREETING": "hi"}},
        scheduled_time=FAR_FUTURE,
        timeout=0,
    )
    record = server_record(api_url, run.id)
    assert record["name"] == "named-by-test"
    assert record["idempotency_key"] == key
    assert record["job_variables"] == {"env": {"GREETING": "hi"}}
    again = client.run_deployment("add/add-dep", idempotency_key=key, timeout=0)
    assert again.id == run.id


def test_every_call_without_a_key_creates_its_own_run(client: Client, api_url: str) -> None:
    before = count_runs(api_url, "add/add-dep")
    runs = [
        client.run_deployment("add/add-dep", scheduled_time=FAR_FUTURE, timeout=0) for _ in range(3)
    ]
    assert len({run.id for run in runs}) == 3
    assert all(run.idempotency_key for run in runs)
    assert count_runs(api_url, "add/add-dep") == before + 3


def test_work_queue_name_reaches_the_run_record(
    client: Client, api_url: str, pooled_deployment: str
) -> None:
    run = client.run_deployment(pooled_deployment, work_queue_name="wq", timeout=0)
    assert server_record(api_url, run.id)["work_queue_name"] == "wq"
    assert run.work_queue_name == "wq"


def test_a_failing_flow_returns_its_failed_run(client: Client, api_url: str) -> None:
    run = client.run_deployment("fail/fail-dep", poll_interval=0.5, timeout=240)
    assert run.state is not None and run.state.type is StateType.FAILED
    assert run.state.is_failed() and run.state.is_final()
    assert "boom" in (run.state.message or "")
    assert server_record(api_url, run.id)["state_type"] == "FAILED"


def test_positive_timeout_returns_the_run_still_running_without_overshooting(
    client: Client, api_url: str
) -> None:
    started = time.monotonic()
    run = client.run_deployment(
        "sleepy/sleepy-dep", parameters={"seconds": 120}, timeout=3, poll_interval=1
    )
    elapsed = time.monotonic() - started
    try:
        assert run.state is not None and not run.state.is_final()
        assert server_record(api_url, run.id)["state_type"] in {"SCHEDULED", "PENDING", "RUNNING"}
        # The deadline (3 s) plus one request timeout bounds the wait; the two
        # requests before the deadline (read deployment, create) add at most that again.
        assert elapsed < 3 + 3 * REQUEST_TIMEOUT
    finally:
        cancel(api_url, run.id)


def test_poll_interval_zero_is_accepted(client: Client) -> None:
    run = client.run_deployment("add/add-dep", poll_interval=0, timeout=240)
    assert run.state is not None and run.state.is_completed()


def test_wait_for_flow_run_follows_a_run_to_its_final_state(client: Client) -> None:
    created = client.run_deployment("add/add-dep", parameters={"x": 1}, timeout=0)
    done = client.wait_for_flow_run(created.id, poll_interval=0.5, timeout=240)
    assert done.id == created.id and done.state is not None and done.state.is_completed()
    assert client.read_flow_run(str(created.id)).state == done.state


def test_logs_true_writes_the_runs_printed_line_on_stderr_before_returning(
    client: Client, capfd: pytest.CaptureFixture[str]
) -> None:
    run = client.run_deployment(
        "add/add-dep", parameters={"x": 32}, poll_interval=0.5, logs=True, progress=False
    )
    assert run.state is not None and run.state.type is StateType.COMPLETED
    out, err = capfd.readouterr()
    assert out == ""
    printed = [line for line in err.splitlines() if line.endswith(" INFO     sum is 42")]
    assert len(printed) == 1, err  # once, and before the wait returned
    assert [record.message for record in client.read_all_logs(run.id)].count("sum is 42") == 1


def test_negative_timeout_is_refused_before_any_run_is_created(
    client: Client, api_url: str
) -> None:
    before = count_runs(api_url, "add/add-dep")
    with pytest.raises(ValueError, match="cannot be negative"):
        client.run_deployment("add/add-dep", timeout=-1)
    with pytest.raises(ValueError, match="cannot be negative"):
        client.run_deployment("add/add-dep", poll_interval=-0.5)
    assert count_runs(api_url, "add/add-dep") == before


def test_unserialisable_parameter_is_refused_before_any_run_is_created(
    client: Client, api_url: str
) -> None:
    before = count_runs(api_url, "add/add-dep")
    with pytest.raises(deploytrigger.InvalidArgumentTypeError, match=r"parameters\['x'\]"):
        client.run_deployment("add/add-dep", parameters={"x": object()}, timeout=0)
    with pytest.raises(deploytrigger.InvalidArgumentError, match=r"parameters\['x'\].*nan"):
        client.run_deployment("add/add-dep", parameters={"x": float("nan")}, timeout=0)
    assert count_runs(api_url, "add/add-dep") == before


def test_unknown_deployment_error_names_the_deployment(client: Client) -> None:
    with pytest.raises(
        deploytrigger.DeploymentNotFoundError, match="'add/no-such-deployment'"
    ) as info:
        client.run_deployment("add/no-such-deployment", timeout=0)
    assert info.value.status_code == 404
    missing = uuid.UUID("00000000-0000-4000-8000-000000000000")
    with pytest.raises(deploytrigger.DeploymentNotFoundError, match=str(missing)):
        client.run_deployment(missing, timeout=0)


def test_malformed_name_is_a_value_error_showing_the_expected_form(client: Client) -> None:
    with pytest.raises(ValueError, match="flow name/deployment name"):
        client.run_deployment("just-a-name", timeout=0)


def test_parameter_rejected_by_the_schema_names_the_parameter(client: Client, api_url: str) -> None:
    before = count_runs(api_url, "add/add-dep")
    with pytest.raises(deploytrigger.ParameterRejectedError, match="'x'") as info:
        client.run_deployment("add/add-dep", parameters={"x": "not a number"}, timeout=0)
    assert info.value.parameter == "x"
    with pytest.raises(deploytrigger.ParameterRejectedError, match="'z'") as unknown:
        client.run_deployment("add/add-dep", parameters={"z": 1}, timeout=0)
    assert unknown.value.parameter == "z"
    assert count_runs(api_url, "add/add-dep") == before


def test_outside_a_parent_run_as_subflow_creates_a_top_level_run(
    client: Client, api_url: str
) -> None:
    run = client.run_deployment("add/add-dep", as_subflow=True, timeout=0)
    assert server_record(api_url, run.id)["parent_task_run_id"] is None


def test_module_level_run_deployment_reads_the_api_url_from_the_environment(
    api_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    monkeypatch.setenv("PREFECT_API_URL", api_url + "/")
    run = deploytrigger.run_deployment(
        "add/add-dep", parameters={"x": 2}, poll_interval=0.5, timeout=240
    )
    assert run.state is not None and run.state.is_completed()
    assert server_record(api_url, run.id)["parameters"] == {"x": 2, "y": 10}


def test_client_is_shared_safely_by_threads(client: Client, api_url: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    before = count_runs(api_url, "add/add-dep")
    with ThreadPoolExecutor(8) as pool:
        runs = list(
            pool.map(
                lambda i: client.run_deployment(
                    "add/add-dep", parameters={"x": i}, scheduled_time=FAR_FUTURE, timeout=0
                ),
                range(40),
            )
        )
    assert sorted(run.parameters["x"] for run in runs) == list(range(40))
    assert len({run.id for run in runs}) == 40
    assert count_runs(api_url, "add/add-dep") == before + 40


def test_deployment_deleted_and_recreated_under_the_same_name_still_triggers(
    client: Client, api_url: str
) -> None:
    def create_deployment() -> str:
        flow = raw.post(f"{api_url}/flows/", json={"name": "recreated"}, timeout=30).json()
        response = raw.post(
            f"{api_url}/deployments/",
            json={"name": "again", "flow_id": flow["id"], "parameters": {}},
            timeout=30,
        )
        response.raise_for_status()
        return str(response.json()["id"])

    first_id = create_deployment()
    first = client.run_deployment("recreated/again", scheduled_time=FAR_FUTURE, timeout=0)
    assert str(first.deployment_id) == first_id

    raw.delete(f"{api_url}/deployments/{first_id}", timeout=30).raise_for_status()
    second_id = create_deployment()
    assert second_id != first_id

    # The client cached the first id; the create answers 404 and it resolves the name again.
    second = client.run_deployment("recreated/again", scheduled_time=FAR_FUTURE, timeout=0)
    assert str(second.deployment_id) == second_id
    assert server_record(api_url, second.id)["deployment_id"] == second_id
