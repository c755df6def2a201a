"""The Client links runs to their parent (placeholders, taken keys, dialects) and tracks runs."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any, Dict, Iterator, Optional, Tuple

import pytest
import responses
from helpers.parent_stubs import (  # noqa: F401 - the autouse fixture
    ADD_KEY,
    API,
    DEPLOYMENT_ID,
    FLOW_ID,
    OTHER,
    PARENT,
    TASK_RUN,
    no_ambient_parent,
    sent,
)
from helpers.server_json import deployment_json, flow_run_json

import deploytrigger
from deploytrigger import Client, ParentRun, current_parent, parent_run
from deploytrigger._parents.context import (
    pushed,
)
from deploytrigger._services.placeholders import (
    CURRENT,
    dialect_for,
)

# -- the client: linking and tracked runs ----------------------------------------------------


@pytest.fixture
def api() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        deployment = deployment_json(shape="bare", deployment_id=DEPLOYMENT_ID, flow_id=FLOW_ID)
        mock.get(f"{API}/deployments/name/add/add-dep", json=deployment)
        mock.get(f"{API}/deployments/{DEPLOYMENT_ID}", json=deployment)
        mock.get(f"{API}/flows/{FLOW_ID}", json={"id": str(FLOW_ID), "name": "add"})
        mock.get(f"{API}/admin/version", json="3.8.8")
        yield mock


@pytest.fixture
def client() -> Iterator[Client]:
    with Client(API, sleep=lambda _: None) as shared:
        yield shared


def echo_task_run(request: Any) -> Tuple[int, Dict[str, str], str]:
    """``POST /task_runs/`` creating the task run it was sent (201, its own id)."""
    return 201, {}, json.dumps({"id": json.loads(request.body)["id"]})


def stub_links(mock: responses.RequestsMock, child: uuid.UUID) -> None:
    """Placeholders are created as sent; runs are created linked to the placeholder sent."""
    mock.add_callback(responses.POST, f"{API}/task_runs/", callback=echo_task_run)

    def create(request: Any) -> Tuple[int, Dict[str, str], str]:
        parent_task_run_id = json.loads(request.body).get("parent_task_run_id")
        run = flow_run_json(
            shape="bare", run_id=child, flow_id=FLOW_ID, parent_task_run_id=parent_task_run_id
        )
        return 201, {}, json.dumps(run)

    mock.add_callback(
        responses.POST, f"{API}/deployments/{DEPLOYMENT_ID}/create_flow_run", callback=create
    )


def test_run_without_a_parent_creates_no_placeholder(
    api: responses.RequestsMock, client: Client
) -> None:
    stub_links(api, OTHER)
    client.run_deployment("add/add-dep", timeout=0)
    assert sent(api, "POST", "/task_runs/") == []
    assert (
        "parent_task_run_id"
        not in sent(api, "POST", f"/deployments/{DEPLOYMENT_ID}/create_flow_run")[0]
    )


def test_run_under_a_parent_links_through_a_placeholder(
    api: responses.RequestsMock, client: Client
) -> None:
    stub_links(api, OTHER)
    api.post(
        f"{API}/task_runs/filter",
        json=[{"task_key": ADD_KEY, "dynamic_key": "6"}, {"task_key": ADD_KEY, "dynamic_key": "2"}],
    )
    with parent_run(PARENT):
        run = client.run_deployment("add/add-dep", parameters={"x": 1}, timeout=0)
    (placeholder,) = sent(api, "POST", "/task_runs/")
    assert run.parent_task_run_id == uuid.UUID(placeholder["id"])
    assert placeholder["name"] == "add/add-dep"
    assert placeholder["task_key"] == ADD_KEY
    assert placeholder["dynamic_key"] == "7"  # after the parent's existing keys
    assert placeholder["task_inputs"] == {"x": []}
    assert placeholder["flow_run_id"] == str(PARENT)
    (create,) = sent(api, "POST", f"/deployments/{DEPLOYMENT_ID}/create_flow_run")
    assert create["parent_task_run_id"] == placeholder["id"]
    assert sent(api, "POST", "/task_runs/filter")[0]["task_runs"] == {
        "flow_run_id": {"any_": [str(PARENT)]}
    }


def test_existing_keys_are_read_page_by_page(api: responses.RequestsMock, client: Client) -> None:
    stub_links(api, OTHER)
    page = [{"task_key": ADD_KEY, "dynamic_key": str(i)} for i in range(200)]
    api.post(f"{API}/task_runs/filter", json=page)
    api.post(f"{API}/task_runs/filter", json=[{"task_key": ADD_KEY, "dynamic_key": "200"}])
    with parent_run(OTHER):
        client.run_deployment("add/add-dep", timeout=0)
        client.run_deployment("add/add-dep", timeout=0)
    assert [body["offset"] for body in sent(api, "POST", "/task_runs/filter")] == [0, 200]
    assert [body["dynamic_key"] for body in sent(api, "POST", "/task_runs/")] == ["201", "202"]


def test_run_by_id_reads_the_flow_for_the_task_key(
    api: responses.RequestsMock, client: Client
) -> None:
    stub_links(api, OTHER)
    deploytrigger._services.parents.DYNAMIC_KEYS.mark_new(PARENT)
    with parent_run(PARENT, task_run_id=OTHER):
        client.run_deployment(DEPLOYMENT_ID, timeout=0)
    (placeholder,) = sent(api, "POST", "/task_runs/")
    assert placeholder["name"] == "add/add-dep"
    assert placeholder["task_key"] == ADD_KEY
    assert placeholder["dynamic_key"] == "0"
    assert placeholder["task_inputs"] == {
        "__parents__": [{"input_type": "task_run", "id": str(OTHER)}]
    }


def test_as_subflow_false_ignores_the_parent(api: responses.RequestsMock, client: Client) -> None:
    stub_links(api, OTHER)
    with parent_run(PARENT):
        client.run_deployment("add/add-dep", timeout=0, as_subflow=False)
    assert sent(api, "POST", "/task_runs/") == []


def stub_tracked(mock: responses.RequestsMock, run_id: uuid.UUID) -> None:
    mock.post(f"{API}/flows/", json={"id": str(FLOW_ID), "name": "cron"})
    mock.post(
        f"{API}/flow_runs/",
        json=flow_run_json(
            shape="bare",
            run_id=run_id,
            flow_id=FLOW_ID,
            state={"type": "RUNNING", "name": "Running"},
        ),
        status=201,
    )
    mock.post(f"{API}/flow_runs/{run_id}/set_state", json={"status": "ACCEPT"}, status=201)


def final_state(mock: responses.RequestsMock, run_id: uuid.UUID) -> Dict[str, Any]:
    (body,) = sent(mock, "POST", f"/flow_runs/{run_id}/set_state")
    state: Dict[str, Any] = body["state"]
    return state


def test_flow_run_tracks_a_running_run_and_completes_it(
    api: responses.RequestsMock, client: Client
) -> None:
    stub_tracked(api, PARENT)
    with client.flow_run("cron", name="nightly", parameters={"day": 1}, tags=["t"]) as run:
        assert current_parent() == ParentRun(PARENT)
        assert run.id == PARENT
    assert current_parent() is None
    assert sent(api, "POST", "/flows/") == [{"name": "cron"}]
    (create,) = sent(api, "POST", "/flow_runs/")
    assert create["flow_id"] == str(FLOW_ID)
    assert create["state"]["type"] == "RUNNING"
    assert (create["name"], create["parameters"], create["tags"]) == ("nightly", {"day": 1}, ["t"])
    assert final_state(api, PARENT)["type"] == "COMPLETED"


def test_flow_run_children_count_from_zero_without_a_query(
    api: responses.RequestsMock, client: Client
) -> None:
    stub_tracked(api, PARENT)
    stub_links(api, OTHER)
    with client.flow_run("cron"):
        client.run_deployment("add/add-dep", timeout=0)
    assert sent(api, "POST", "/task_runs/filter") == []
    assert sent(api, "POST", "/task_runs/")[0]["dynamic_key"] == "0"


def test_flow_run_fails_with_the_exception_message_and_reraises(
    api: responses.RequestsMock, client: Client
) -> None:
    stub_tracked(api, PARENT)
    with pytest.raises(ValueError, match="bad input"), client.flow_run("cron"):
        raise ValueError("bad input")
    state = final_state(api, PARENT)
    assert state["type"] == "FAILED" and "bad input" in state["message"]
    assert current_parent() is None


def test_flow_run_is_cancelled_on_keyboard_interrupt(
    api: responses.RequestsMock, client: Client
) -> None:
    stub_tracked(api, PARENT)
    with pytest.raises(KeyboardInterrupt), client.flow_run("cron"):
        raise KeyboardInterrupt
    assert final_state(api, PARENT)["type"] == "CANCELLED"


def test_flow_run_keeps_the_block_error_when_marking_it_fails(
    api: responses.RequestsMock, client: Client
) -> None:
    stub_tracked(api, PARENT)
    api.replace(responses.POST, f"{API}/flow_runs/{PARENT}/set_state", status=500, json={})
    with pytest.raises(ValueError, match="original"), client.flow_run("cron"):
        raise ValueError("original")


def test_flow_run_rejects_an_empty_flow_name(client: Client) -> None:
    with pytest.raises(deploytrigger.InvalidArgumentError), client.flow_run(" "):
        pass


def test_missing_parent_flow_run_is_reported_as_not_found(
    api: responses.RequestsMock, client: Client
) -> None:
    api.post(f"{API}/task_runs/filter", json=[])
    api.post(f"{API}/task_runs/", status=409, json={"detail": "Data integrity conflict."})
    with parent_run(PARENT), pytest.raises(deploytrigger.FlowRunNotFoundError) as caught:
        client.run_deployment("add/add-dep", timeout=0)
    assert caught.value.flow_run_id == str(PARENT)
    assert sent(api, "POST", f"/deployments/{DEPLOYMENT_ID}/create_flow_run") == []


# -- server versions, taken keys and reused idempotency keys ---------------------------------


@pytest.mark.parametrize(
    ("version", "prefix", "parents_input"),
    [
        ("2.20.25", "prefect.deployments.deployments.run_deployment.", False),
        ("3.0.0", "prefect.deployments.flow_runs.run_deployment.", False),
        ("3.5.9", "prefect.deployments.flow_runs.run_deployment.", False),
        ("3.6.0", "prefect.deployments.flow_runs.run_deployment.", True),
        ("3.8.8", "prefect.deployments.flow_runs.run_deployment.", True),
        ("4.0.0.dev1+g123", "prefect.deployments.flow_runs.run_deployment.", True),
    ],
)
def test_dialect_follows_the_server_version(version: str, prefix: str, parents_input: bool) -> None:
    dialect = dialect_for(version)
    assert (dialect.version, dialect.task_key_prefix, dialect.parents_input) == (
        version,
        prefix,
        parents_input,
    )


@pytest.mark.parametrize("version", [None, "", "unknown", 3, {"version": "2.20.25"}])
def test_dialect_of_an_unreadable_version_is_the_newest(version: Any) -> None:
    assert dialect_for(version) is CURRENT


def test_placeholder_on_prefect_2_has_its_task_key_and_no_parents_input(
    api: responses.RequestsMock, client: Client
) -> None:
    api.replace(responses.GET, f"{API}/admin/version", json="2.20.25")
    stub_links(api, OTHER)
    deploytrigger._services.parents.DYNAMIC_KEYS.mark_new(PARENT)
    with parent_run(PARENT, task_run_id=TASK_RUN):
        client.run_deployment("add/add-dep", parameters={"x": 1}, timeout=0)
    (placeholder,) = sent(api, "POST", "/task_runs/")
    assert placeholder["task_key"] == "prefect.deployments.deployments.run_deployment.add-add-dep"
    assert placeholder["task_inputs"] == {"x": []}
    assert "labels" not in placeholder


def test_server_version_is_asked_once_and_only_when_linking(
    api: responses.RequestsMock, client: Client
) -> None:
    stub_links(api, OTHER)
    client.run_deployment("add/add-dep", timeout=0)
    assert [call.request.url for call in api.calls if "admin" in call.request.url] == []
    deploytrigger._services.parents.DYNAMIC_KEYS.mark_new(PARENT)
    with parent_run(PARENT):
        client.run_deployment("add/add-dep", timeout=0)
        client.run_deployment("add/add-dep", timeout=0)
    assert len([call for call in api.calls if call.request.url == f"{API}/admin/version"]) == 1


def test_a_server_without_a_version_endpoint_gets_the_newest_shape(
    api: responses.RequestsMock, client: Client
) -> None:
    api.replace(responses.GET, f"{API}/admin/version", status=404, json={"detail": "Not Found"})
    stub_links(api, OTHER)
    deploytrigger._services.parents.DYNAMIC_KEYS.mark_new(PARENT)
    with parent_run(PARENT, task_run_id=TASK_RUN):
        client.run_deployment("add/add-dep", timeout=0)
    (placeholder,) = sent(api, "POST", "/task_runs/")
    assert placeholder["task_key"] == ADD_KEY
    assert "__parents__" in placeholder["task_inputs"]


def test_a_key_taken_by_another_process_moves_to_the_next_one(
    api: responses.RequestsMock, client: Client
) -> None:
    stub_links(api, OTHER)
    taken = uuid.UUID("66666666-6666-4666-8666-666666666666")
    answers = [json.dumps({"id": str(taken)})]  # the first key is someone else's task run

    def create_task_run(request: Any) -> Tuple[int, Dict[str, str], str]:
        if answers:
            return 200, {}, answers.pop()
        return echo_task_run(request)

    api.remove(responses.POST, f"{API}/task_runs/")  # drop the echo
    api.add_callback(responses.POST, f"{API}/task_runs/", callback=create_task_run)
    api.post(f"{API}/task_runs/filter", json=[{"task_key": ADD_KEY, "dynamic_key": "0"}])
    api.post(
        f"{API}/task_runs/filter",
        json=[{"task_key": ADD_KEY, "dynamic_key": "0"}, {"task_key": ADD_KEY, "dynamic_key": "1"}],
    )
    with parent_run(PARENT):
        run = client.run_deployment("add/add-dep", timeout=0)
    first, second = sent(api, "POST", "/task_runs/")
    assert (first["dynamic_key"], second["dynamic_key"]) == ("1", "2")
    assert run.parent_task_run_id == uuid.UUID(second["id"]) != taken
    assert len(sent(api, "POST", "/task_runs/filter")) == 2  # the keys were read again


def test_a_fixed_dynamic_key_shares_the_task_run_holding_it(
    api: responses.RequestsMock, client: Client
) -> None:
    stub_links(api, OTHER)
    api.remove(responses.POST, f"{API}/task_runs/")
    api.post(f"{API}/task_runs/", json={"id": str(TASK_RUN)}, status=200)
    with pushed(ParentRun(PARENT, None, dynamic_key="4")):
        run = client.run_deployment("add/add-dep", timeout=0)
    assert [body["dynamic_key"] for body in sent(api, "POST", "/task_runs/")] == ["4"]
    assert run.parent_task_run_id == TASK_RUN


def stub_existing_run(
    mock: responses.RequestsMock, state: Dict[str, Any], linked_to: Optional[uuid.UUID]
) -> None:
    """``create_flow_run`` answers with a run created before (reused idempotency key)."""
    mock.add_callback(responses.POST, f"{API}/task_runs/", callback=echo_task_run)
    mock.add(responses.PATCH, re.compile(f"{API}/task_runs/[^/]+$"), status=204)
    mock.add(
        responses.POST,
        re.compile(f"{API}/task_runs/[^/]+/set_state$"),
        json={"status": "ACCEPT"},
        status=201,
    )
    mock.post(
        f"{API}/deployments/{DEPLOYMENT_ID}/create_flow_run",
        json=flow_run_json(
            shape="bare",
            run_id=OTHER,
            flow_id=FLOW_ID,
            name="earlier-run",
            state=state,
            parent_task_run_id=None if linked_to is None else str(linked_to),
        ),
        status=200,
    )


def test_a_reused_idempotency_key_finishes_the_idle_placeholder_as_the_run_ended(
    api: responses.RequestsMock, client: Client
) -> None:
    stub_existing_run(api, {"type": "FAILED", "name": "Failed", "message": "boom"}, TASK_RUN)
    deploytrigger._services.parents.DYNAMIC_KEYS.mark_new(PARENT)
    with parent_run(PARENT):
        run = client.run_deployment("add/add-dep", idempotency_key="once", timeout=0)
    assert run.id == OTHER
    (placeholder,) = sent(api, "POST", "/task_runs/")
    path = f"/task_runs/{placeholder['id']}"
    assert sent(api, "PATCH", path) == [{"name": "earlier-run"}]
    assert sent(api, "POST", f"{path}/set_state") == [
        {
            "state": {
                "type": "FAILED",
                "name": "Failed",
                "message": "boom",
                "state_details": {"child_flow_run_id": str(OTHER)},
            },
            "force": True,
        }
    ]


def test_a_reused_idempotency_key_of_an_unfinished_run_completes_the_placeholder(
    api: responses.RequestsMock, client: Client
) -> None:
    stub_existing_run(api, {"type": "RUNNING", "name": "Running"}, None)
    deploytrigger._services.parents.DYNAMIC_KEYS.mark_new(PARENT)
    with parent_run(PARENT):
        client.run_deployment("add/add-dep", idempotency_key="once", timeout=0)
    (placeholder,) = sent(api, "POST", "/task_runs/")
    (body,) = sent(api, "POST", f"/task_runs/{placeholder['id']}/set_state")
    assert body["state"]["type"] == "COMPLETED" and body["state"]["name"] == "Duplicate"
    assert "earlier-run" in body["state"]["message"]
    assert body["state"]["state_details"] == {"child_flow_run_id": str(OTHER)}


def test_a_new_run_leaves_its_placeholder_to_the_server(
    api: responses.RequestsMock, client: Client
) -> None:
    stub_links(api, OTHER)
    deploytrigger._services.parents.DYNAMIC_KEYS.mark_new(PARENT)
    with parent_run(PARENT):
        client.run_deployment("add/add-dep", idempotency_key="once", timeout=0)
    assert [call.request.method for call in api.calls if "/task_runs/" in call.request.url] == [
        "POST"
    ]
