"""``run --watch`` shows every state the run passed through, read from its state history
(``GET /flow_run_states/``), among its log lines in time order: a state entered and left
between two polls is shown too, and the final state still comes last (issue 21)."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any, Dict, Iterator, List, Tuple

import pytest
import responses
from helpers.run_stubs import API, BY_NAME, CREATE, LOGS, RUN, RUN_ID, log_json
from helpers.server_json import deployment_json, flow_run_json, state_json

from deploytrigger import cli
from deploytrigger.cli import _following

pytestmark = pytest.mark.isolated_environment(api_url=API)

STATES = f"{API}/flow_run_states/"


def at(second: float) -> str:
    return f"2026-11-23T20:00:{second:06.3f}Z"


def entered(state_type: str, second: float, name: str = "") -> Dict[str, Any]:
    """A state of the history, with its own id (the run's ``state`` shares it)."""
    return state_json(
        state_type,
        id=str(uuid.UUID(int=int(second * 1000) + 1)),
        name=name or state_type.title(),
        timestamp=at(second),
    )


SCHEDULED = entered("SCHEDULED", 0)
PENDING = entered("PENDING", 1)
RUNNING = entered("RUNNING", 2)
COMPLETED = entered("COMPLETED", 4)


def run_in(state: Dict[str, Any]) -> Dict[str, Any]:
    data = flow_run_json(state["type"])
    data["state"] = dict(state)
    return data


def answers(items: List[Any]) -> Any:
    """A callback answering each item in turn, the last one for good."""
    queue = list(items)

    def answer(request: Any) -> Tuple[int, Dict[str, str], str]:
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        return 200, {}, json.dumps(item)

    return answer


@pytest.fixture
def http(monkeypatch: pytest.MonkeyPatch) -> Iterator[responses.RequestsMock]:
    monkeypatch.setattr(_following, "DRAIN_QUIET", 0.2)
    monkeypatch.setattr(_following, "DRAIN_EVERY", 0.02)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(BY_NAME, json=deployment_json())
        mock.post(CREATE, status=201, json=run_in(SCHEDULED))
        yield mock


def watch() -> Tuple[int, List[str]]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(
        ["run", "add/add-dep", "--watch", "--poll-interval", "0"], stdout=out, stderr=err
    )
    return code, out.getvalue().splitlines()


def shown(lines: List[str]) -> List[str]:
    """Each line without its time: ``STATE Running``, ``INFO sum is 13``; the summary left out."""
    return [" ".join(line.split()[2:]) for line in lines if line[:4].isdigit()]


def test_states_between_two_polls_are_shown_in_order_among_the_lines(
    http: responses.RequestsMock,
) -> None:
    http.add_callback(responses.GET, RUN, callback=answers([run_in(SCHEDULED), run_in(COMPLETED)]))
    http.get(STATES, json=[SCHEDULED, PENDING, RUNNING, COMPLETED])
    logs = [
        [],
        [log_json(1, at(1.5), "starting"), log_json(2, at(3), "sum is 13")],
        [log_json(3, at(5), "Finished in state Completed()")],  # drained, stamped after the state
        [],
    ]
    http.add_callback(responses.POST, LOGS, callback=answers(logs))

    code, lines = watch()

    assert code == 0
    assert shown(lines) == [
        "STATE Scheduled",
        "STATE Pending",
        "INFO starting",
        "STATE Running",
        "INFO sum is 13",
        "STATE Completed",  # at its time: the line drained after it is stamped later
        "INFO Finished in state Completed()",
    ]
    assert "COMPLETED" in lines[len(shown(lines))]  # then the summary
    (history,) = [c for c in http.calls if c.request.url.startswith(STATES)]
    assert history.request.url == f"{STATES}?flow_run_id={RUN_ID}"


def test_each_state_is_shown_once_and_none_before_the_poll_that_sees_it(
    http: responses.RequestsMock,
) -> None:
    # The history is read after the poll that saw Running: it has Completed already.
    http.add_callback(
        responses.GET,
        RUN,
        callback=answers([run_in(SCHEDULED), run_in(RUNNING), run_in(RUNNING), run_in(COMPLETED)]),
    )
    submitting = entered("PENDING", 1.5, "Submitting")
    http.get(STATES, json=[SCHEDULED, PENDING, submitting, RUNNING, COMPLETED])
    logs = [[], [], [log_json(1, at(3), "sum is 13")], [], [log_json(2, at(4.5), "Finished")], []]
    http.add_callback(responses.POST, LOGS, callback=answers(logs))

    code, lines = watch()

    assert code == 0
    assert shown(lines) == [
        "STATE Scheduled",
        "STATE Pending",
        "STATE Submitting",
        "STATE Running",
        "INFO sum is 13",
        "STATE Completed",  # entered at 4 s, before the line stamped 4.5 s
        "INFO Finished",
    ]
    # Read when a poll showed a new state (Running, then Completed), not at every poll.
    assert len([c for c in http.calls if c.request.url.startswith(STATES)]) == 2


def test_a_server_without_the_history_shows_the_polled_states(
    http: responses.RequestsMock,
) -> None:
    http.add_callback(responses.GET, RUN, callback=answers([run_in(RUNNING), run_in(COMPLETED)]))
    http.get(STATES, status=404, json={"detail": "Not Found"})
    http.add_callback(responses.POST, LOGS, callback=answers([[]]))

    code, lines = watch()

    assert code == 0
    assert shown(lines) == ["STATE Scheduled", "STATE Running", "STATE Completed"]
