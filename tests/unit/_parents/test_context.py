"""The parent-run stack, its hand-over to threads, dynamic keys and automatic detection."""

from __future__ import annotations

import copy
import dataclasses
import sys
import threading
import types
import typing
import uuid
from concurrent.futures import ThreadPoolExecutor as PlainThreadPoolExecutor
from typing import Any, Dict, List, Optional, Tuple

import pytest
from helpers.parent_stubs import (  # noqa: F401 - the autouse fixture
    ADD_KEY,
    OTHER,
    PARENT,
    TASK_RUN,
    no_ambient_parent,
)

import deploytrigger
from deploytrigger import ParentRun, current_parent, parent_run, propagate
from deploytrigger._parents.context import FLOW_RUN_ID_ENV, DynamicKeys
from deploytrigger._parents.executor import ParentAwareThreadPoolExecutor

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
    pytest.importorskip(
        "prefect", reason="needs Prefect itself (harness/requirements/server.txt; on .venv)"
    )
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
    labels: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Install a stand-in for ``prefect.context`` with the given active contexts.

    The flow run has ``labels`` only when given (Prefect 2's model has none).
    """
    counters: Dict[str, Any] = {}
    flow_ctx = None
    if flow_run_id is not None:
        flow_run = types.SimpleNamespace(id=flow_run_id)
        if labels is not None:
            flow_run.labels = labels
        flow_ctx = types.SimpleNamespace(
            flow_run=flow_run,
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


def test_prefect_flow_run_context_carries_the_parent_s_labels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    labels = {"__OTEL_TRACEPARENT": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}
    fake_prefect_context(monkeypatch, PARENT, labels=labels)
    parent = current_parent()
    assert parent is not None and parent.labels == labels


def test_prefect_flow_run_without_labels_gives_unknown_labels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_prefect_context(monkeypatch, PARENT)  # a model without the field, as Prefect 2's
    parent = current_parent()
    assert parent == ParentRun(PARENT) and parent.labels is None


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


# -- ParentRun -----------------------------------------------------------------------------


def test_parent_run_is_a_frozen_dataclass_that_ignores_prefect_s_counters() -> None:
    counters: Dict[str, Any] = {"add-0": 1}
    parent = ParentRun(PARENT, TASK_RUN, prefect_keys=counters)
    names = [f.name for f in dataclasses.fields(ParentRun)]
    assert names == ["flow_run_id", "task_run_id", "dynamic_key", "prefect_keys", "labels"]
    assert names == list(typing.get_type_hints(ParentRun)) == list(dataclasses.asdict(parent))
    same = ParentRun(PARENT, TASK_RUN)
    assert parent == same and hash(parent) == hash(same)
    assert repr(parent) == (
        f"ParentRun(flow_run_id={PARENT!r}, task_run_id={TASK_RUN!r}, dynamic_key=None)"
    )
    assert dataclasses.replace(parent, dynamic_key="2").prefect_keys is counters
    with pytest.raises(dataclasses.FrozenInstanceError):
        parent.dynamic_key = "1"  # type: ignore[misc]


@pytest.mark.skipif(sys.version_info < (3, 13), reason="copy.replace is new in Python 3.13")
def test_copy_replace_makes_a_changed_copy_of_a_parent_run() -> None:
    parent = ParentRun(PARENT, TASK_RUN)
    assert copy.replace(parent, task_run_id=None) == ParentRun(PARENT)
