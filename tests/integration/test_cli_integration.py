"""The real ``deploytrigger`` entry point, as a subprocess, against a real Prefect server.

Each exit code is produced by a real run; ``--watch`` must show the flow's own
printed line between its state lines; errors must be one line. The example
notebook is executed headlessly and must render the run's state as HTML.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Tuple

import pytest
from helpers.cli_process import PROCESS_TIMEOUT, cli_environment, deploytrigger

pytestmark = pytest.mark.integration

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, str]:
    return cli_environment(tmp_path_factory.mktemp("prefect-home"))


def one_error_line(result: subprocess.CompletedProcess[str], starts: str) -> None:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"deploytrigger: error: {starts}"), result.stderr
    assert "Traceback" not in result.stderr


def test_completed_run_exits_0_and_json_is_one_object(
    api_url: str, cli_env: Dict[str, str]
) -> None:
    result = deploytrigger(
        cli_env, api_url, "run", "add/add-dep", "-p", "x=5", "--json", "--poll-interval", "0.5"
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["state"] == "COMPLETED" and data["exit_code"] == 0
    assert data["parameters"] == {"x": 5, "y": 10}
    assert data["ui_url"] == api_url[: -len("/api")] + f"/runs/flow-run/{data['id']}"


def test_watch_streams_states_and_the_flows_own_log_line_in_order(
    api_url: str, cli_env: Dict[str, str]
) -> None:
    result = deploytrigger(
        cli_env, api_url, "run", "add/add-dep", "-p", "x=3", "--watch", "--poll-interval", "0.5"
    )
    assert result.returncode == 0, result.stderr
    lines: List[str] = result.stdout.splitlines()
    states = [i for i, line in enumerate(lines) if " STATE " in line]
    printed = [i for i, line in enumerate(lines) if line.endswith("INFO     sum is 13")]
    assert printed, result.stdout
    assert states and states[0] < printed[0], result.stdout
    completed = [i for i in states if lines[i].endswith("STATE    Completed")]
    assert completed and printed[0] < completed[-1], result.stdout
    assert "COMPLETED" in lines[-2] or "COMPLETED" in lines[-1]


def test_watch_shows_every_state_even_one_shorter_than_the_poll_interval(
    api_url: str, cli_env: Dict[str, str]
) -> None:
    # Running lasts a fraction of a second: a 5 s poll rarely sees it; the history has it.
    result = deploytrigger(
        cli_env, api_url, "run", "add/add-dep", "-p", "x=3", "--watch", "--poll-interval", "5"
    )
    assert result.returncode == 0, result.stderr
    lines: List[str] = result.stdout.splitlines()
    states = [line.split("STATE", 1)[1].strip() for line in lines if " STATE " in line]
    assert states == ["Scheduled", "Pending", "Submitting", "Running", "Completed"], result.stdout
    running = next(i for i, line in enumerate(lines) if line.endswith("STATE    Running"))
    printed = next(i for i, line in enumerate(lines) if line.endswith("INFO     sum is 13"))
    assert running < printed, result.stdout


def test_failed_run_exits_1(api_url: str, cli_env: Dict[str, str]) -> None:
    result = deploytrigger(cli_env, api_url, "run", "fail/fail-dep", "--poll-interval", "0.5")
    assert result.returncode == 1, result.stderr
    assert "FAILED" in result.stdout and "boom" in result.stdout


def test_timeout_exits_3_then_cancel_command_makes_it_cancelled_exit_4(
    api_url: str, cli_env: Dict[str, str]
) -> None:
    result = deploytrigger(
        cli_env, api_url, "run", "sleepy/sleepy-dep", "-p", "seconds=60",
        "--timeout", "2", "--poll-interval", "0.5", "--json",
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    run_id = json.loads(result.stdout)["id"]
    cancel = deploytrigger(cli_env, api_url, "cancel", run_id)
    assert cancel.returncode == 0, cancel.stderr
    deadline = time.monotonic() + 60
    status = deploytrigger(cli_env, api_url, "status", run_id, "--json")
    while json.loads(status.stdout)["state"] != "CANCELLED" and time.monotonic() < deadline:
        time.sleep(1)
        status = deploytrigger(cli_env, api_url, "status", run_id, "--json")
    assert status.returncode == 4, status.stdout


def test_cancel_on_timeout_exits_4(api_url: str, cli_env: Dict[str, str]) -> None:
    result = deploytrigger(
        cli_env, api_url, "run", "sleepy/sleepy-dep", "-p", "seconds=60",
        "--timeout", "2", "--poll-interval", "0.5", "--cancel-on-timeout", "--json",
    )  # fmt: skip
    assert result.returncode == 4, result.stderr
    assert json.loads(result.stdout)["state"] in ("CANCELLING", "CANCELLED")


@pytest.mark.parametrize(
    "argv, code, starts",
    [
        (["run", "nope/nope-dep"], 5, "deployment 'nope/nope-dep' was not found"),
        (["run", "add/add-dep", "-p", "x"], 2, "--param expects key=value"),
        (["run", "add/add-dep", "--start-at", "not-a-date"], 2, "--start-at expects"),
        (["run", "add/add-dep", "--start-in", "soonish"], 2, "--start-in expects"),
    ],
)
def test_bad_input_gives_one_error_line_and_its_exit_code(
    api_url: str, cli_env: Dict[str, str], argv: List[str], code: int, starts: str
) -> None:
    result = deploytrigger(cli_env, api_url, *argv)
    assert result.returncode == code, result.stderr
    one_error_line(result, starts)
    assert result.stdout == ""


def test_deployments_lists_what_can_be_run_with_default_parameters(
    api_url: str, cli_env: Dict[str, str]
) -> None:
    result = deploytrigger(cli_env, api_url, "deployments")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert {"add/add-dep", "fail/fail-dep", "sleepy/sleepy-dep", "echo/echo-dep"} <= set(rows)
    assert rows["add/add-dep"].endswith('{"y": 10}')
    only_add = deploytrigger(cli_env, api_url, "deployments", "--flow", "add", "--json")
    names = [d["name"] for d in json.loads(only_add.stdout)["deployments"]]
    assert names == ["add/add-dep"]


def test_logs_of_a_finished_run_show_its_printed_line(
    api_url: str, cli_env: Dict[str, str]
) -> None:
    run = deploytrigger(
        cli_env, api_url, "run", "add/add-dep", "-p", "x=7", "--json", "--poll-interval", "0.5"
    )
    run_id = json.loads(run.stdout)["id"]
    deadline = time.monotonic() + 30
    while True:  # the flow's log lines reach the server in batches, after the state
        logs = deploytrigger(cli_env, api_url, "logs", run_id)
        if "sum is 17" in logs.stdout or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert logs.returncode == 0
    assert any(line.endswith("INFO     sum is 17") for line in logs.stdout.splitlines())
    followed = deploytrigger(cli_env, api_url, "logs", run_id, "--follow", "--poll-interval", "0.5")
    assert followed.stdout == logs.stdout


class ExecutedNotebook(NamedTuple):
    """The example notebook after a real kernel ran it, and the updates of its displays."""

    notebook: Any
    updates: List[Tuple[int, str]]  # (cell index, the HTML of an update_display_data message)


@pytest.fixture(scope="module")
def executed_notebook(
    api_url: str, cli_env: Dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> ExecutedNotebook:
    """``examples/notebook.ipynb`` run by nbclient in a real kernel against the real server."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(EXAMPLES_DIR / "notebook.ipynb", as_version=4)
    updates: List[Tuple[int, str]] = []

    class Recording(nbclient.NotebookClient):  # type: ignore[misc]
        def process_message(self, msg: Dict[str, Any], cell: Any, cell_index: int) -> Any:
            if msg["msg_type"] == "update_display_data":
                updates.append((cell_index, msg["content"]["data"].get("text/html", "")))
            return super().process_message(msg, cell, cell_index)

    saved = dict(os.environ)
    os.environ.update(cli_env)
    os.environ["PREFECT_API_URL"] = api_url
    # The kernel imports this checkout's deploytrigger, whichever one the venv points at.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(EXAMPLES_DIR.parent), *filter(None, [saved.get("PYTHONPATH")])]
    )
    try:
        Recording(
            notebook, timeout=PROCESS_TIMEOUT, kernel_name="python3",
            resources={"metadata": {"path": str(tmp_path_factory.mktemp("notebook"))}},
        ).execute()  # fmt: skip
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return ExecutedNotebook(notebook, updates)


def html_outputs(cell: Any, output_type: str) -> List[str]:
    return [
        output["data"]["text/html"]
        for output in cell.get("outputs", [])
        if output["output_type"] == output_type and "text/html" in output.get("data", {})
    ]


def test_the_example_notebook_runs_headlessly_and_renders_the_run(
    executed_notebook: ExecutedNotebook,
) -> None:
    cells = executed_notebook.notebook.cells
    single = next(cell for cell in cells if "run_deployment(" in cell.source)
    # The live view (its last update applied), then the finished run's table.
    (view,) = html_outputs(single, "display_data")
    (table,) = html_outputs(single, "execute_result")
    assert 'class="deploytrigger-progress"' in view and 'data-state="COMPLETED"' in view
    assert 'data-state="COMPLETED"' in table and ">Completed<" in table
    assert "/runs/flow-run/" in table and "/runs/flow-run/" in view
    many = next(cell for cell in cells if "run_many(" in cell.source)
    (bar,) = html_outputs(many, "display_data")
    assert 'data-finished="7" data-total="7"' in bar
    assert "6 Completed, 1 Failed" in bar
    everything = [html for cell in cells for html in html_outputs(cell, "display_data")]
    assert len(everything) == 3, everything  # one view per waiting cell, nothing else


def test_the_notebooks_views_were_updated_in_place_while_the_runs_went_on(
    executed_notebook: ExecutedNotebook,
) -> None:
    cells = executed_notebook.notebook.cells
    for marker in ("run_deployment(", "run_many("):
        index = next(i for i, cell in enumerate(cells) if marker in cell.source)
        shown = [html for at, html in executed_notebook.updates if at == index]
        assert len(shown) > 1, (marker, shown)
        counts = [re.search(r'data-finished="(\d+)" data-total="(\d+)"', html) for html in shown]
        finished = [(int(m.group(1)), int(m.group(2))) for m in counts if m]
        assert len(finished) == len(shown), shown
        # Updated while runs were not final yet; the last update: all final, none running.
        assert any(done < total for done, total in finished), finished
        assert finished[-1][0] == finished[-1][1] and 'data-state="RUNNING"' not in shown[-1]
