"""A flow run's short repr, its Prefect UI link, its HTML table and raise_for_state; durations said
as a person says them."""

from __future__ import annotations

import pytest
from helpers.run_stubs import RUN_ID
from helpers.server_json import flow_run_json

from deploytrigger import FlowRun
from deploytrigger._helpers import display
from deploytrigger._helpers.urls import ui_base_url, ui_url
from deploytrigger.exceptions import DeployTriggerError, FlowRunFailedError


def run_of(state_type: str = "COMPLETED", message: str = "", **kwargs: object) -> FlowRun:
    return FlowRun.from_json(flow_run_json(state_type, message or None), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "api_url, expected",
    [
        ("http://127.0.0.1:4200/api", "http://127.0.0.1:4200"),
        ("https://prefect.example.com/api/", "https://prefect.example.com"),
        ("https://example.com/prefect/api", "https://example.com/prefect"),
        ("http://user:secret@host:4200/api", "http://host:4200"),
        (
            "https://api.prefect.cloud/api/accounts/A1/workspaces/W2",
            "https://app.prefect.cloud/account/A1/workspace/W2",
        ),
        ("http://host:4200/not-an-api", None),
        ("", None),
        (None, None),
    ],
)
def test_ui_base_url_is_derived_from_self_hosted_and_cloud_api_urls(
    api_url: object, expected: object
) -> None:
    assert ui_base_url(api_url) == expected  # type: ignore[arg-type]


def test_ui_url_points_at_the_flow_run_page() -> None:
    assert ui_url("http://h:1/api", RUN_ID) == f"http://h:1/runs/flow-run/{RUN_ID}"
    cloud = "https://api.prefect.cloud/api/accounts/A/workspaces/W"
    assert run_of(api_url=cloud).ui_url == (
        f"https://app.prefect.cloud/account/A/workspace/W/runs/flow-run/{RUN_ID}"
    )


def test_a_run_parsed_without_an_api_url_has_no_ui_url() -> None:
    assert run_of().ui_url is None


def test_credentials_in_the_api_url_are_not_kept_on_the_run() -> None:
    run = run_of(api_url="http://user:s3cret@host:4200/api")
    assert run.api_url == "http://host:4200/api"
    assert "s3cret" not in repr(run) and "s3cret" not in run._repr_html_()


def test_repr_is_short_and_names_id_name_state_and_times() -> None:
    data = flow_run_json(
        "COMPLETED", start_time="2026-11-23T20:00:01Z", end_time="2026-11-23T20:00:03Z"
    )
    text = repr(FlowRun.from_json(data, api_url="http://h:1/api"))
    assert text == (
        f"FlowRun(id='{RUN_ID}', name='mottled-crab', state=COMPLETED, "
        "start_time='2026-11-23T20:00:01+00:00', end_time='2026-11-23T20:00:03+00:00')"
    )
    assert len(repr(run_of("SCHEDULED"))) < 150


def test_repr_html_is_a_table_with_the_state_colour_times_parameters_and_link() -> None:
    data = flow_run_json("FAILED", "boom", start_time="2026-11-23T20:00:01Z")
    page = FlowRun.from_json(data, api_url="http://h:1/api")._repr_html_()
    assert page.startswith("<table") and page.endswith("</table>")
    assert 'data-state="FAILED"' in page and "#fb4e4e" in page and ">Failed<" in page
    assert "boom" in page and "2026-11-23T20:00:01+00:00" in page
    assert "&quot;x&quot;: 5" in page
    assert f'href="http://h:1/runs/flow-run/{RUN_ID}"' in page


def test_repr_html_escapes_everything_from_the_server() -> None:
    data = flow_run_json("FAILED", "<img src=x onerror=alert(1)>")
    data["name"] = "<script>alert(1)</script>"
    data["parameters"] = {"<em>": "</td><script>"}
    data["tags"] = ["<i>tag</i>"]
    page = FlowRun.from_json(data)._repr_html_()
    for raw in ("<script>", "<img", "<em>", "</td><script>", "<i>"):
        assert raw not in page
    assert "&lt;script&gt;" in page


@pytest.mark.parametrize("state_type", ["FAILED", "CRASHED", "CANCELLED"])
def test_raise_for_state_raises_for_a_run_that_ended_badly(state_type: str) -> None:
    run = run_of(state_type, "it broke")
    with pytest.raises(FlowRunFailedError) as caught:
        run.raise_for_state()
    assert isinstance(caught.value, DeployTriggerError)
    assert caught.value.flow_run is run and caught.value.state == run.state
    assert state_type in str(caught.value) and "it broke" in str(caught.value)


@pytest.mark.parametrize("state_type", ["COMPLETED", "RUNNING", "SCHEDULED", "CANCELLING"])
def test_raise_for_state_returns_the_run_when_completed_or_not_final(state_type: str) -> None:
    run = run_of(state_type)
    assert run.raise_for_state() is run


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (0.2, "about 1 s"),
        (3.4, "about 3 s"),
        (42, "about 40 s"),
        (90, "about 90 s"),
        (120, "about 2 min"),
        (207.888, "about 3 min"),
        (300, "about 5 min"),
        (5400, "about 1.5 h"),
    ],
)
def test_about_rounds_a_duration_as_a_person_says_it(seconds: float, said: str) -> None:
    assert display.about(seconds) == said


def test_the_runs_summary_counts_final_states_first_then_the_others() -> None:
    runs = [run_of(state) for state in ["SCHEDULED", "RUNNING", "FAILED", "COMPLETED", "RUNNING"]]
    assert display.runs_summary(runs, 3725) == (
        "5 flow runs  1 Completed, 1 Failed, 2 Running, 1 Scheduled  1:02:05"
    )
    assert display.runs_summary(runs[:1], 5) == "1 flow run  1 Scheduled  00:05"


class _Stream:
    def __init__(self, answer: object) -> None:
        self.answer = answer

    def isatty(self) -> bool:
        if isinstance(self.answer, Exception):
            raise self.answer
        return bool(self.answer)


@pytest.mark.parametrize(
    "stream, expected",
    [(_Stream(True), True), (_Stream(False), False), (_Stream(ValueError("closed")), False)],
)
def test_is_terminal_is_false_for_a_closed_stream_or_one_without_isatty(
    stream: object, expected: bool
) -> None:
    assert display.is_terminal(stream) is expected
    assert display.is_terminal(object()) is False
