"""Every wait shows its progress where asked, from the polls it makes anyway (HTTP stubbed)."""

from __future__ import annotations

from typing import Any, Callable, Dict, List

import pytest
from helpers.fake_kernel import FakeKernel, kernel, no_ipython  # noqa: F401 - the fixtures
from helpers.fake_prefect import (  # noqa: F401 - the fixtures
    API,
    FakePrefect,
    FakeTime,
    client,
    fake,
    make_client,
    time,
)

import deploytrigger
from deploytrigger import Client, ConfigurationError, InvalidArgumentTypeError

Wait = Callable[..., Any]


def _run_deployment(client: Client, fake: FakePrefect, **progress: Any) -> Any:
    return client.run_deployment("add/add-dep", poll_interval=2, **progress)


def _module_run_deployment(client: Client, fake: FakePrefect, **progress: Any) -> Any:
    return deploytrigger.run_deployment("add/add-dep", client=client, poll_interval=2, **progress)


def _wait_for_flow_run(client: Client, fake: FakePrefect, **progress: Any) -> Any:
    return client.wait_for_flow_run(fake.add_run("RUNNING", "COMPLETED"), **progress)


def _handle_wait(client: Client, fake: FakePrefect, **progress: Any) -> Any:
    return client.submit("add/add-dep").wait(poll_interval=2, **progress)


def _handle_result(client: Client, fake: FakePrefect, **progress: Any) -> Any:
    return client.submit("add/add-dep").result(poll_interval=2, **progress)


def _wait_all(client: Client, fake: FakePrefect, **progress: Any) -> Any:
    return client.wait_all(fake.add_runs(3, "RUNNING", "COMPLETED"), poll_interval=2, **progress)


def _as_completed(client: Client, fake: FakePrefect, **progress: Any) -> Any:
    ids = fake.add_runs(3, "RUNNING", "COMPLETED")
    return list(client.as_completed(ids, poll_interval=2, **progress))


def _run_many(client: Client, fake: FakePrefect, **progress: Any) -> Any:
    return client.run_many(["add/add-dep"] * 3, poll_interval=2, **progress)


WAITS: Dict[str, Wait] = {
    "run_deployment": _run_deployment,
    "deploytrigger.run_deployment": _module_run_deployment,
    "wait_for_flow_run": _wait_for_flow_run,
    "handle.wait": _handle_wait,
    "handle.result": _handle_result,
    "wait_all": _wait_all,
    "as_completed": _as_completed,
    "run_many": _run_many,
}


SINGLE_WAITS = [name for name in WAITS if name not in ("wait_all", "as_completed", "run_many")]
RUN_LINES = [("starting", 0.5, 1), ("adding 32 and 10", 1.2, 2), ("done: 42", 1.8, 3)]
"""(message, seconds after the epoch, reads of the run before the server shows it)"""


@pytest.fixture(params=list(WAITS))
def wait(request: pytest.FixtureRequest) -> Wait:
    return WAITS[request.param]


def test_in_a_kernel_every_wait_shows_one_view_updated_until_the_runs_are_final(
    client: Client, fake: FakePrefect, kernel: FakeKernel, wait: Wait
) -> None:
    wait(client, fake)
    assert len(kernel.handles) == 1
    shown = kernel.handles[0].html()
    assert len(shown) >= 2  # displayed, then updated in place
    assert 'data-state="RUNNING"' in shown[0]
    assert 'data-state="COMPLETED"' in shown[-1] and 'data-state="RUNNING"' not in shown[-1]


def test_progress_false_shows_nothing_in_a_kernel(
    client: Client, fake: FakePrefect, kernel: FakeKernel, wait: Wait
) -> None:
    wait(client, fake, progress=False)
    assert kernel.handles == []


@pytest.mark.usefixtures("no_ipython")
def test_outside_a_kernel_a_wait_writes_nothing_unless_asked(
    client: Client, fake: FakePrefect, wait: Wait, capfd: pytest.CaptureFixture[str]
) -> None:
    wait(client, fake)
    assert capfd.readouterr() == ("", "")


@pytest.mark.usefixtures("no_ipython")
def test_progress_true_outside_a_kernel_writes_lines_on_stderr(
    client: Client, fake: FakePrefect, wait: Wait, capfd: pytest.CaptureFixture[str]
) -> None:
    wait(client, fake, progress=True)
    out, err = capfd.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert "Running" in lines[0] and "flow run" in lines[0]
    assert "Completed" in lines[-1] and "Running" not in lines[-1]


@pytest.mark.isolated_environment(api_url=API)
@pytest.mark.usefixtures("no_ipython")
def test_the_setting_on_shows_the_line_and_off_hides_the_view(
    fake: FakePrefect,
    time: FakeTime,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DEPLOYTRIGGER_PROGRESS", "on")
    with make_client(time) as client:
        assert client.settings.progress == "on"
        client.run_deployment("add/add-dep", poll_interval=2)
        assert "1 flow run  1 Completed" in capfd.readouterr().err
        client.run_deployment("add/add-dep", poll_interval=2, progress=False)
        assert capfd.readouterr().err == ""
    with make_client(time, progress="off") as client:
        client.run_deployment("add/add-dep", poll_interval=2)
        assert capfd.readouterr().err == ""


@pytest.mark.isolated_environment(api_url=API)
def test_an_unknown_progress_setting_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ConfigurationError, match="progress"):
        Client(API, progress="sometimes")  # type: ignore[typeddict-item]
    monkeypatch.setenv("DEPLOYTRIGGER_PROGRESS", "yes")
    with pytest.raises(ConfigurationError, match="DEPLOYTRIGGER_PROGRESS"):
        Client(API)


# A handle's wait is refused after its submit: see the handle's own test below.
NOT_A_BOOL = [
    *[(name, "progress", "`progress` must be True, False or None") for name in WAITS],
    *[(name, "logs", "`logs` must be True or False") for name in SINGLE_WAITS],
]
NOT_A_BOOL = [case for case in NOT_A_BOOL if not case[0].startswith("handle.")]


@pytest.mark.parametrize(("name", "keyword", "said"), NOT_A_BOOL)
def test_a_progress_or_logs_that_is_not_a_bool_is_refused_before_anything_is_sent(
    client: Client, fake: FakePrefect, name: str, keyword: str, said: str
) -> None:
    before = len(fake.mock.calls)
    with pytest.raises(InvalidArgumentTypeError, match=said):
        WAITS[name](client, fake, **{keyword: "yes"})
    sent = [call.request.url for call in fake.mock.calls[before:]]
    assert not any(
        part in url for url in sent for part in ("create_flow_run", "/flow_runs/", "/logs/")
    ), sent


def _requests_of_run_many(fake: FakePrefect, time: FakeTime, progress: bool) -> List[str]:
    fake.script_for_new_runs("SCHEDULED", "RUNNING", "RUNNING", "COMPLETED")
    before = len(fake.mock.calls)
    with make_client(time) as client:
        runs = client.run_many(["add/add-dep"] * 200, poll_interval=5, progress=progress)
    assert {run.state.type.value for run in runs} == {"COMPLETED"}
    return [f"{call.request.method} {call.request.path_url}" for call in fake.mock.calls[before:]]


def test_a_200_run_run_many_sends_the_same_requests_with_the_view_as_without(
    fake: FakePrefect, time: FakeTime, kernel: FakeKernel
) -> None:
    without = _requests_of_run_many(fake, time, progress=False)
    assert kernel.handles == []
    with_view = _requests_of_run_many(fake, time, progress=True)
    assert len(kernel.handles) == 1 and len(kernel.handles[0].shown) >= 3
    assert sorted(with_view) == sorted(without)
    # 1 deployment read, 200 creates, then 3 polls of one filter each (200 runs a page)
    assert len(without) == 1 + 200 + 3


def test_a_handle_refuses_a_progress_or_logs_that_is_not_a_bool_before_polling(
    client: Client, fake: FakePrefect
) -> None:
    handle = client.submit("add/add-dep")
    before = len(fake.mock.calls)
    with pytest.raises(InvalidArgumentTypeError, match="progress"):
        handle.wait(progress=1)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentTypeError, match="logs"):
        handle.result(logs=None)  # type: ignore[arg-type]
    assert len(fake.mock.calls) == before


def test_an_interrupted_wait_shows_where_each_run_was_and_cancels_nothing(
    fake: FakePrefect, kernel: FakeKernel
) -> None:
    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    with Client(API, sleep=interrupt, clock=FakeTime().clock) as client:
        ids = fake.add_runs(2, "RUNNING", "COMPLETED")
        with pytest.raises(KeyboardInterrupt):
            client.wait_all(ids)
    last = kernel.handles[0].html()[-1]
    assert "interrupted; the runs go on" in last and last.count('data-state="RUNNING"') == 2
    assert fake.set_state_bodies == []


@pytest.mark.parametrize("name", SINGLE_WAITS)
@pytest.mark.usefixtures("no_ipython")
def test_logs_true_writes_the_runs_lines_on_stderr_once_each_in_order_as_they_come(
    client: Client, fake: FakePrefect, name: str, capfd: pytest.CaptureFixture[str]
) -> None:
    fake.new_run_logs = RUN_LINES
    run = WAITS[name](client, fake, logs=True)
    assert run.state.type.value == "COMPLETED"
    out, err = capfd.readouterr()
    assert out == ""
    messages = [line.split(" INFO     ")[1] for line in err.splitlines()]
    assert messages == [message for message, _, _ in RUN_LINES]


def test_logs_true_in_a_kernel_prints_the_lines_to_the_cell_beside_the_view(
    client: Client, fake: FakePrefect, kernel: FakeKernel, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.new_run_logs = RUN_LINES
    _run_deployment(client, fake, logs=True)
    out, err = capsys.readouterr()
    assert [line.split(" INFO     ")[1] for line in out.splitlines()] == [
        "starting",
        "adding 32 and 10",
        "done: 42",
    ]
    assert err == ""
    assert len(kernel.handles) == 1
    assert 'data-state="COMPLETED"' in kernel.handles[0].html()[-1]


@pytest.mark.usefixtures("no_ipython")
def test_logs_true_with_progress_true_puts_the_lines_above_the_progress_line(
    client: Client, fake: FakePrefect, capfd: pytest.CaptureFixture[str]
) -> None:
    fake.new_run_logs = RUN_LINES
    _run_deployment(client, fake, logs=True, progress=True)
    lines = capfd.readouterr().err.splitlines()  # stderr is no terminal here: plain lines
    assert "1 Scheduled" in lines[0] and "1 Completed" in lines[-1]
    assert next(line for line in lines if " INFO " in line).endswith("starting")


@pytest.mark.usefixtures("no_ipython")
def test_logs_true_with_a_timeout_returns_the_run_as_last_read_and_its_lines_so_far(
    client: Client, fake: FakePrefect, capfd: pytest.CaptureFixture[str]
) -> None:
    fake.script_for_new_runs("SCHEDULED", "RUNNING")
    fake.new_run_logs = RUN_LINES[:1]
    run = client.run_deployment("add/add-dep", timeout=10, poll_interval=2, logs=True)
    assert run.state.type.value == "RUNNING"
    assert capfd.readouterr().err.endswith(" INFO     starting\n")


@pytest.mark.usefixtures("no_ipython")
def test_a_handle_seen_final_returns_at_once_even_with_logs(
    client: Client, fake: FakePrefect, capfd: pytest.CaptureFixture[str]
) -> None:
    handle = client.submit("add/add-dep")
    handle.wait(poll_interval=2)
    before = len(fake.mock.calls)
    assert handle.wait(logs=True) is handle.flow_run
    assert len(fake.mock.calls) == before and capfd.readouterr().err == ""


@pytest.mark.parametrize("cancel", [False, True])
def test_an_interrupted_logs_wait_shows_where_the_run_was_and_cancels_only_when_asked(
    fake: FakePrefect, kernel: FakeKernel, cancel: bool
) -> None:
    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    fake.new_run_logs = RUN_LINES
    client = Client(API, sleep=interrupt, clock=FakeTime().clock)
    with client, pytest.raises(KeyboardInterrupt):
        client.run_deployment("add/add-dep", logs=True, cancel_on_interrupt=cancel)
    last = kernel.handles[0].html()[-1]
    said = "interrupted; the run was asked to cancel" if cancel else "interrupted; the runs go on"
    assert said in last and 'data-state="RUNNING"' in last
    assert len(fake.set_state_bodies) == (1 if cancel else 0)
