"""The parent-run stack, its hand-over to threads, dynamic keys and the placeholder body."""

from __future__ import annotations

import json
import re
import sys
import threading
import types
import uuid
from concurrent.futures import ThreadPoolExecutor as PlainThreadPoolExecutor
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
import responses

import deploytrigger
from deploytrigger import Client, ParentRun, current_parent, parent_run, propagate
from deploytrigger._parents.context import (
    FLOW_RUN_ID_ENV,
    DynamicKeys,
    ParentAwareThreadPoolExecutor,
    pushed,
)
from deploytrigger._parents.linking import (
    CURRENT,
    TASK_KEY_PREFIX,
    dialect_for,
    placeholder_payload,
    slugify,
    task_key,
    task_runs_filter,
)

API = "http://prefect.test/api"
PARENT = uuid.UUID("11111111-1111-4111-8111-111111111111")
OTHER = uuid.UUID("22222222-2222-4222-8222-222222222222")
TASK_RUN = uuid.UUID("33333333-3333-4333-8333-333333333333")
DEPLOYMENT_ID = uuid.UUID("44444444-4444-4444-8444-444444444444")
FLOW_ID = uuid.UUID("55555555-5555-4555-8555-555555555555")
ADD_KEY = TASK_KEY_PREFIX + "add-add-dep"


@pytest.fixture(autouse=True)
def no_ambient_parent(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No PREFECT__FLOW_RUN_ID and no Prefect run context unless a test sets one."""
    monkeypatch.delenv(FLOW_RUN_ID_ENV, raising=False)
    monkeypatch.delitem(sys.modules, "prefect.context", raising=False)
    fresh = DynamicKeys()  # counters from other tests must not leak in
    monkeypatch.setattr(deploytrigger._parents.context, "DYNAMIC_KEYS", fresh)
    monkeypatch.setattr(deploytrigger._services.parents, "DYNAMIC_KEYS", fresh)
    yield


# -- the stack ---------------------------------------------------------------------------


def test_no_parent_by_default() -> None:
    assert current_parent() is None


def test_parent_run_pushes_and_pops() -> None:
    with parent_run(str(PARENT)) as parent:
        assert parent == ParentRun(PARENT)
        assert current_parent() is parent
    assert current_parent() is None


def test_nested_parent_runs_innermost_wins_and_outer_comes_back() -> None:
    with parent_run(PARENT):
        with parent_run(OTHER, task_run_id=TASK_RUN):
            assert current_parent() == ParentRun(OTHER, TASK_RUN)
        assert current_parent() == ParentRun(PARENT)
    assert current_parent() is None


def test_parent_is_popped_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError), parent_run(PARENT):
        raise RuntimeError("boom")
    assert current_parent() is None


def test_parent_run_rejects_a_malformed_id() -> None:
    with pytest.raises(deploytrigger.InvalidArgumentError), parent_run("not-a-uuid"):
        pass
    with pytest.raises(deploytrigger.InvalidArgumentTypeError), parent_run(42):  # type: ignore[arg-type]
        pass


def test_parent_set_in_one_thread_is_invisible_in_another() -> None:
    seen: List[Optional[ParentRun]] = []
    entered, checked = threading.Event(), threading.Event()

    def other_thread() -> None:
        entered.wait(5)
        seen.append(current_parent())
        checked.set()

    thread = threading.Thread(target=other_thread)
    thread.start()
    with parent_run(PARENT):
        entered.set()
        checked.wait(5)
    thread.join(5)
    assert seen == [None]


def test_plain_thread_pool_workers_start_without_the_parent() -> None:
    with parent_run(PARENT), PlainThreadPoolExecutor(2) as pool:
        assert pool.submit(current_parent).result() is None


# -- propagate and the executor ------------------------------------------------------------


def test_propagate_runs_under_the_parent_captured_when_wrapped() -> None:
    with parent_run(PARENT):
        wrapped = propagate(current_parent)
    with parent_run(OTHER):
        assert wrapped() == ParentRun(PARENT)  # captured at wrap time, not at call time
        assert current_parent() == ParentRun(OTHER)  # and popped afterwards
    with PlainThreadPoolExecutor(1) as pool:
        assert pool.submit(wrapped).result() == ParentRun(PARENT)
        assert pool.submit(current_parent).result() is None  # the worker is left clean


def test_propagate_without_a_parent_runs_unchanged() -> None:
    wrapped = propagate(lambda x: (x, current_parent()))
    assert wrapped(3) == (3, None)


def test_propagate_keeps_the_function_name() -> None:
    def named() -> None:
        """Doc."""

    assert propagate(named).__name__ == "named"
    assert propagate(named).__doc__ == "Doc."


def test_executor_submit_and_map_hand_the_parent_to_16_workers() -> None:
    barrier = threading.Barrier(16)

    def observe(_: int) -> Tuple[str, Optional[ParentRun]]:
        barrier.wait(5)  # all 16 workers busy at once: really 16 threads
        return threading.current_thread().name, current_parent()

    with deploytrigger.ParentAwareThreadPoolExecutor(max_workers=16) as pool:
        with parent_run(PARENT):
            mapped = list(pool.map(observe, range(16)))
        with parent_run(OTHER):
            submitted = [pool.submit(observe, i) for i in range(16)]
        unparented = pool.submit(current_parent)
    assert len({name for name, _ in mapped}) == 16
    assert {parent for _, parent in mapped} == {ParentRun(PARENT)}
    assert {f.result()[1] for f in submitted} == {ParentRun(OTHER)}
    assert unparented.result() is None


def test_thread_pool_executor_is_exported_as_the_parent_aware_one() -> None:
    assert deploytrigger.ParentAwareThreadPoolExecutor is ParentAwareThreadPoolExecutor


# -- dynamic keys ------------------------------------------------------------------------


def test_dynamic_keys_count_per_parent_and_task_key() -> None:
    keys = DynamicKeys()
    keys.mark_new(PARENT)
    keys.mark_new(OTHER)
    parent, other = ParentRun(PARENT), ParentRun(OTHER)

    def no_query() -> List[Any]:
        raise AssertionError("a new parent needs no query")

    assert [keys.next_key(parent, "a", no_query) for _ in range(3)] == ["0", "1", "2"]
    assert keys.next_key(parent, "b", no_query) == "0"
    assert keys.next_key(other, "a", no_query) == "0"


def test_dynamic_keys_are_unique_under_32_threads() -> None:
    keys = DynamicKeys()
    parent = ParentRun(PARENT)
    queries: List[int] = []
    barrier = threading.Barrier(32)

    def used() -> List[Any]:
        queries.append(1)
        return [(ADD_KEY, "4"), (ADD_KEY, "x-uuid"), ("other", "90")]

    def take(_: int) -> List[str]:
        barrier.wait(5)
        return [keys.next_key(parent, ADD_KEY, used) for _ in range(100)]

    with PlainThreadPoolExecutor(32) as pool:
        taken = [key for batch in pool.map(take, range(32)) for key in batch]
    assert len(taken) == len(set(taken)) == 3200
    assert sorted(int(k) for k in taken) == list(range(5, 3205))  # after the server's "4"
    assert queries == [1]  # one query per parent, however many threads race for it


def test_dynamic_keys_of_a_task_run_parent_outside_a_flow_are_its_own() -> None:
    parent = ParentRun(PARENT, TASK_RUN, dynamic_key="7")
    assert DynamicKeys().next_key(parent, ADD_KEY, list) == "7"


def test_dynamic_keys_forget_reads_the_server_again() -> None:
    keys = DynamicKeys()
    keys.mark_new(PARENT)
    assert keys.next_key(ParentRun(PARENT), ADD_KEY, list) == "0"
    keys.forget(PARENT)
    assert keys.next_key(ParentRun(PARENT), ADD_KEY, lambda: [(ADD_KEY, "0")]) == "1"


def test_dynamic_keys_share_prefect_counters_with_prefect_itself() -> None:
    pytest.importorskip("prefect", reason="needs the server extra (Prefect, Python >= 3.9)")
    from prefect._internal.engine import dynamic_key_for_task_run

    counters: Dict[str, Any] = {}
    context = types.SimpleNamespace(
        detached=False, flow_run=object(), task_run_dynamic_keys=counters
    )
    task = types.SimpleNamespace(task_key=ADD_KEY)
    parent = ParentRun(PARENT, prefect_keys=counters)
    keys = DynamicKeys()
    taken = [str(dynamic_key_for_task_run(context, task))]  # type: ignore[arg-type]
    taken += [keys.next_key(parent, ADD_KEY, list) for _ in range(2)]
    taken.append(str(dynamic_key_for_task_run(context, task)))  # type: ignore[arg-type]
    taken.append(keys.next_key(parent, "fresh-key", list))
    assert taken == ["0", "1", "2", "3", "0"]
    assert counters == {ADD_KEY: 3, "fresh-key": 0}


# -- automatic detection -------------------------------------------------------------------


def test_flow_run_id_from_the_environment_is_the_parent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FLOW_RUN_ID_ENV, str(PARENT))
    assert current_parent() == ParentRun(PARENT)
    with PlainThreadPoolExecutor(1) as pool:  # the environment is the whole process's
        assert pool.submit(current_parent).result() == ParentRun(PARENT)


def test_explicit_parent_beats_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FLOW_RUN_ID_ENV, str(PARENT))
    with parent_run(OTHER):
        assert current_parent() == ParentRun(OTHER)


def test_malformed_environment_flow_run_id_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FLOW_RUN_ID_ENV, "garbage")
    assert current_parent() is None


def fake_prefect_context(
    monkeypatch: pytest.MonkeyPatch,
    flow_run_id: Optional[uuid.UUID],
    task_run: Optional[Tuple[uuid.UUID, Optional[uuid.UUID], str]] = None,
    detached: bool = False,
) -> Dict[str, Any]:
    """Install a stand-in for ``prefect.context`` with the given active contexts."""
    counters: Dict[str, Any] = {}
    flow_ctx = None
    if flow_run_id is not None:
        flow_ctx = types.SimpleNamespace(
            flow_run=types.SimpleNamespace(id=flow_run_id),
            detached=detached,
            task_run_dynamic_keys=counters,
        )
    task_ctx = None
    if task_run is not None:
        task_id, in_flow_run, dynamic_key = task_run
        task_ctx = types.SimpleNamespace(
            task_run=types.SimpleNamespace(
                id=task_id, flow_run_id=in_flow_run, dynamic_key=dynamic_key
            )
        )
    module = types.ModuleType("prefect.context")
    module.FlowRunContext = types.SimpleNamespace(get=lambda: flow_ctx)  # type: ignore[attr-defined]
    module.TaskRunContext = types.SimpleNamespace(get=lambda: task_ctx)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "prefect.context", module)
    return counters


def test_prefect_flow_run_context_is_the_parent_with_its_counters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(FLOW_RUN_ID_ENV, str(OTHER))  # Prefect's context wins over the env
    counters = fake_prefect_context(monkeypatch, PARENT)
    parent = current_parent()
    assert parent == ParentRun(PARENT)
    assert parent is not None and parent.prefect_keys is counters


def test_prefect_task_run_in_the_flow_run_is_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_prefect_context(monkeypatch, PARENT, (TASK_RUN, PARENT, "3"))
    assert current_parent() == ParentRun(PARENT, TASK_RUN)  # keys still from the flow's counters


def test_prefect_task_run_of_another_flow_run_is_not_the_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_prefect_context(monkeypatch, PARENT, (TASK_RUN, OTHER, "3"))
    assert current_parent() == ParentRun(PARENT)


def test_prefect_task_run_without_a_flow_context_gives_its_own_dynamic_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_prefect_context(monkeypatch, None, (TASK_RUN, PARENT, "3"))
    assert current_parent() == ParentRun(PARENT, TASK_RUN, "3")


def test_detached_prefect_context_counts_from_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_prefect_context(monkeypatch, PARENT, detached=True)
    parent = current_parent()
    assert parent == ParentRun(PARENT) and parent.prefect_keys is None


def test_propagate_hands_a_detected_prefect_parent_to_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counters = fake_prefect_context(monkeypatch, PARENT)
    with deploytrigger.ParentAwareThreadPoolExecutor(2) as pool:
        future = pool.submit(current_parent)
    monkeypatch.delitem(sys.modules, "prefect.context")
    parent = future.result()
    assert parent == ParentRun(PARENT) and parent.prefect_keys is counters


# -- the placeholder body ------------------------------------------------------------------


def test_placeholder_payload_for_a_flow_run_parent() -> None:
    body = placeholder_payload(
        deployment_name="add/add-dep",
        deployment_version="1.0",
        parameter_names=["x", "y"],
        parent=ParentRun(PARENT),
        dynamic_key="5",
        task_run_id=TASK_RUN,
    )
    assert body == {
        "id": str(TASK_RUN),
        "name": "add/add-dep",
        "flow_run_id": str(PARENT),
        "task_key": "prefect.deployments.flow_runs.run_deployment.add-add-dep",
        "dynamic_key": "5",
        "cache_key": None,
        "cache_expiration": None,
        "task_version": "1.0",
        "empirical_policy": {
            "max_retries": 0,
            "retries": 0,
            "retry_delay": 0,
            "retry_delay_seconds": 0.0,
            "retry_jitter_factor": None,
        },
        "tags": [],
        "state": {"type": "PENDING", "name": "Pending"},
        "task_inputs": {"x": [], "y": []},
    }


def test_placeholder_payload_names_a_task_run_parent_in_parents() -> None:
    body = placeholder_payload(
        deployment_name="add/add-dep",
        deployment_version=None,
        parameter_names=[],
        parent=ParentRun(PARENT, TASK_RUN),
        dynamic_key="0",
        task_run_id=OTHER,
    )
    assert body["task_inputs"] == {"__parents__": [{"input_type": "task_run", "id": str(TASK_RUN)}]}
    assert body["task_version"] is None


def test_task_runs_filter_selects_one_flow_runs_task_runs() -> None:
    assert task_runs_filter(str(PARENT), 400) == {
        "task_runs": {"flow_run_id": {"any_": [str(PARENT)]}},
        "sort": "ID_DESC",
        "limit": 200,
        "offset": 400,
    }


SLUG_NAMES = [
    "add/add-dep",
    "My Flow/Prod Deployment",
    "etl_flow/daily_run",
    "UPPER/CASE",
    "  weird--name__/ ..x.. ",
    "it's/o'clock",
    "1,000/2,5",
    "x/y!@#$%^&*()",
    "tab\tname/new\nline",
    "a&amp;b/c&#39;d",
    "caf&eacute;/&#x41;&#66;",
    "Café/Crème brûlée",
    "naïve/résumé",
    "Ünïcödé/dép",
    "ÆØÅ/straße",
    "ŁódŹ/Œuvre",
    "€uro/£ound",
    "A–B/C—D",  # noqa: RUF001
    "ﬁle/½",
    "x²/℃",
]


@pytest.mark.parametrize("name", SLUG_NAMES)
def test_slugify_matches_prefects_slugify(name: str) -> None:
    pytest.importorskip("prefect", reason="needs the server extra (Prefect, Python >= 3.9)")
    from prefect.utilities.slugify import slugify as prefect_slugify

    assert slugify(name) == prefect_slugify(name)


def test_task_key_uses_prefects_slugify_for_other_scripts_when_loaded() -> None:
    pytest.importorskip("prefect", reason="needs the server extra (Prefect, Python >= 3.9)")
    from prefect.utilities.slugify import slugify as prefect_slugify

    assert task_key("Привет/мир") == TASK_KEY_PREFIX + prefect_slugify("Привет/мир")
    assert task_key("add/add-dep") == ADD_KEY


# -- the client: linking and tracked runs ----------------------------------------------------


def deployment_json(version: Optional[str] = "1.0") -> Dict[str, Any]:
    return {
        "id": str(DEPLOYMENT_ID),
        "name": "add-dep",
        "flow_id": str(FLOW_ID),
        "version": version,
    }


def flow_run_json(run_id: uuid.UUID, **extra: Any) -> Dict[str, Any]:
    return {
        "id": str(run_id),
        "name": "run",
        "flow_id": str(FLOW_ID),
        "state": {"type": "SCHEDULED", "name": "Scheduled"},
        **extra,
    }


@pytest.fixture
def api() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(f"{API}/deployments/name/add/add-dep", json=deployment_json())
        mock.get(f"{API}/deployments/{DEPLOYMENT_ID}", json=deployment_json())
        mock.get(f"{API}/flows/{FLOW_ID}", json={"id": str(FLOW_ID), "name": "add"})
        mock.get(f"{API}/admin/version", json="3.8.8")
        yield mock


@pytest.fixture
def client() -> Iterator[Client]:
    with Client(API, sleep=lambda _: None) as shared:
        yield shared


def sent(mock: responses.RequestsMock, method: str, path: str) -> List[Dict[str, Any]]:
    return [
        json.loads(call.request.body or b"null")
        for call in mock.calls
        if call.request.method == method and call.request.url == API + path
    ]


def echo_task_run(request: Any) -> Tuple[int, Dict[str, str], str]:
    """``POST /task_runs/`` creating the task run it was sent (201, its own id)."""
    return 201, {}, json.dumps({"id": json.loads(request.body)["id"]})


def stub_links(mock: responses.RequestsMock, child: uuid.UUID) -> None:
    """Placeholders are created as sent; runs are created linked to the placeholder sent."""
    mock.add_callback(responses.POST, f"{API}/task_runs/", callback=echo_task_run)

    def create(request: Any) -> Tuple[int, Dict[str, str], str]:
        parent_task_run_id = json.loads(request.body).get("parent_task_run_id")
        return 201, {}, json.dumps(flow_run_json(child, parent_task_run_id=parent_task_run_id))

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
        json=flow_run_json(run_id, state={"type": "RUNNING", "name": "Running"}),
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
            OTHER,
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
