"""deploytrigger end to end: start a local Prefect server, run a deployment, wait for it.

Run ``make demo``, or ``python -m examples.demo`` from the repository root with
deploytrigger and the pinned server installed (``pip install -e . -r
harness/requirements/server.txt``). Exits 0 when the
flow run completed, 1 otherwise.
"""

import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping

import deploytrigger
from harness.local_server import LocalPrefect

FLOWS_SCRIPT = Path(__file__).resolve().parent / "flows.py"
DEPLOYMENT = "add/add-dep"
PARAMETERS = {"x": 40}


def in_given_order(parameters: Mapping[str, Any], given: Mapping[str, Any]) -> Dict[str, Any]:
    """The run's parameters, those given first in their order, then the deployment's defaults."""
    ordered = {name: parameters[name] for name in given if name in parameters}
    ordered.update((name, value) for name, value in parameters.items() if name not in ordered)
    return ordered


def report(client: deploytrigger.Client, run: deploytrigger.FlowRun) -> List[str]:
    """What the demo prints about a finished run: state, parameters, return value."""
    lines = [f"Flow run {run.id} ({run.name})"]
    if run.state is None:
        lines.append("  state:      unknown (the server sent none)")
    else:
        lines.append(f"  state:      {run.state.type.value} ({run.state.name})")
    lines.append(f"  parameters: {in_given_order(run.parameters, PARAMETERS)}")
    if run.state is not None and run.state.is_completed():
        try:
            lines.append(f"  result:     {client.read_result(run)!r}")
        except deploytrigger.DeployTriggerError as exc:
            lines.append(f"  result:     not readable ({exc})")
    return lines


def main() -> int:
    """Run the demo; return the process exit code."""
    print("Starting a local Prefect server and serving examples/flows.py (about 20 s)...")
    with LocalPrefect(FLOWS_SCRIPT, deployments=[DEPLOYMENT]) as prefect:
        print(f"Server ready at {prefect.api_url}")
        print(f"Running {DEPLOYMENT} with {PARAMETERS} (the deployment's default y is 10)...")
        with deploytrigger.Client(prefect.api_url) as client:
            try:
                run = client.run_deployment(
                    DEPLOYMENT, parameters=PARAMETERS, timeout=180, poll_interval=1
                )
            except deploytrigger.DeployTriggerError as exc:
                print(f"deploytrigger failed: {exc}")
                return 1
            print("\n".join(report(client, run)))
        print("Stopping the server.")
    completed = run.state is not None and run.state.is_completed()
    print("Done: the run completed." if completed else "Done: the run did not complete.")
    return 0 if completed else 1


if __name__ == "__main__":
    sys.exit(main())
