"""deploytrigger end to end: start a local Prefect server, run a deployment, wait for it.

Run ``make demo``, or ``python -m examples.demo`` from the repository root with
deploytrigger and the pinned server installed (``pip install -e . -r
harness/requirements/server.txt``). Exits 0 when the
flow run completed, 1 otherwise.
"""

import sys
from pathlib import Path

import deploytrigger
from harness.local_server import LocalPrefect

FLOWS_SCRIPT = Path(__file__).resolve().parent / "flows.py"
DEPLOYMENT = "add/add-dep"
PARAMETERS = {"x": 40}


def main() -> int:
    """Run the demo; return the process exit code."""
    print("Starting a local Prefect server and serving examples/flows.py (about 20 s)...")
    with LocalPrefect(FLOWS_SCRIPT, deployments=[DEPLOYMENT]) as prefect:
        print(f"Server ready at {prefect.api_url}")
        print(f"Running {DEPLOYMENT} with {PARAMETERS} (the deployment's default y is 10)...")
        try:
            with deploytrigger.Client(prefect.api_url) as client:
                run = client.run_deployment(
                    DEPLOYMENT, parameters=PARAMETERS, timeout=180, poll_interval=1
                )
        except deploytrigger.DeployTriggerError as exc:
            print(f"deploytrigger failed: {exc}")
            return 1
        print(f"Flow run {run.id} ({run.name})")
        if run.state is None:
            print("  state:      unknown (the server sent none)")
        else:
            print(f"  state:      {run.state.type.value} ({run.state.name})")
        print(f"  parameters: {run.parameters}")
        print("Stopping the server.")
    completed = run.state is not None and run.state.is_completed()
    print("Done: the run completed." if completed else "Done: the run did not complete.")
    return 0 if completed else 1


if __name__ == "__main__":
    sys.exit(main())
