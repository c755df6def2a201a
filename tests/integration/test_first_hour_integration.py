"""The first hour against a real Prefect server (issue 21): the /api hint, the
demo's report, and the CLI's wording of a finished run."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import deploytrigger
from examples import demo

pytestmark = pytest.mark.integration

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "notebook.ipynb"


def test_url_without_api_on_a_real_server_says_add_api(api_url: str) -> None:
    bare = api_url[: -len("/api")]
    with deploytrigger.Client(bare) as client, pytest.raises(
        deploytrigger.DeploymentNotFoundError
    ) as caught:
        client.run_deployment("add/add-dep", timeout=0)
    assert str(caught.value).endswith(f"the API URL probably needs to end in /api: {api_url}")
    assert (caught.value.status_code, caught.value.method) == (404, "GET")


def test_unknown_deployment_on_a_real_server_sends_no_probe_and_one_traceback(
    api_url: str,
) -> None:
    with deploytrigger.Client(api_url) as client, pytest.raises(
        deploytrigger.DeploymentNotFoundError
    ) as caught:
        client.run_deployment("add/no-such-dep", timeout=0)
    assert caught.value.hint is None and caught.value.__cause__ is None
    assert caught.value.__suppress_context__ or caught.value.__context__ is None


def test_demo_prints_the_return_value_and_the_parameters_in_the_order_given(
    api_url: str,
) -> None:
    with deploytrigger.Client(api_url) as client:
        run = client.run_deployment(
            demo.DEPLOYMENT, parameters=demo.PARAMETERS, timeout=180, poll_interval=0.5
        )
        lines = demo.report(client, run)
    assert "  parameters: {'x': 40, 'y': 10}" in lines
    assert "  result:     50" in lines


def test_cli_names_the_flows_run_time_and_the_wait_before_it(api_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "deploytrigger", "--api-url", api_url, "run", "add/add-dep"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "COMPLETED, ran " in done.stdout and " s after it was triggered" in done.stdout


def test_notebook_reads_prefect_api_url_and_its_logs_cell_shows_the_lines(
    api_url: str, tmp_path: Path
) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert "DEPLOYTRIGGER_API_URL" not in NOTEBOOK.read_text()
    saved = dict(os.environ)
    for name in [n for n in os.environ if n.startswith("PREFECT_")]:
        del os.environ[name]
    os.environ.update(PREFECT_API_URL=api_url, PREFECT_HOME=str(tmp_path / "home"))
    try:
        nbclient.NotebookClient(
            notebook, timeout=240, kernel_name="python3",
            resources={"metadata": {"path": str(tmp_path)}},
        ).execute()  # fmt: skip
    finally:
        os.environ.clear()
        os.environ.update(saved)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    logs_cell = next(cell for cell in code if "logs=True" in cell.source)
    printed = "".join(output.get("text", "") for output in logs_cell.outputs)
    assert printed.count(" INFO     sum is 42\n") == 1, printed
