"""Parent runs: a plain script shows up in Prefect as one run, its triggered runs nested under it.

Run ``python -m examples.subflows`` from the repository root, with deploytrigger
and the pinned server (``harness/requirements/server.txt``) installed: it
starts a local Prefect server serving ``examples/flows.py``, or uses the server
at ``PREFECT_API_URL`` when that is set (it must serve ``add/add-dep``).

What it shows, in order:

1. ``Client.flow_run`` creates a tracked, Running flow run and makes it the
   parent of everything triggered in the block, in this thread;
2. ``deploytrigger.ParentAwareThreadPoolExecutor`` hands that parent to its workers (a
   plain ``concurrent.futures.ThreadPoolExecutor`` would not);
3. ``parent_run`` links under any run you know the id of, and nests;
4. ``as_subflow=False`` opts out; the block's end marks the run Completed.
"""

import os
import sys
from contextlib import ExitStack
from pathlib import Path

import deploytrigger
from harness.local_server import LocalPrefect

FLOWS_SCRIPT = Path(__file__).resolve().parent / "flows.py"
DEPLOYMENT = "add/add-dep"
CHILDREN = 8


def main() -> int:
    """Run the example; return the process exit code."""
    with ExitStack() as stack:
        api_url = os.environ.get("PREFECT_API_URL")
        if not api_url:
            print("Starting a local Prefect server serving examples/flows.py (about 20 s)...")
            server = LocalPrefect(FLOWS_SCRIPT, deployments=[DEPLOYMENT])
            api_url = stack.enter_context(server).api_url
        client = stack.enter_context(deploytrigger.Client(api_url))

        with client.flow_run("nightly-batch", name="subflows-example") as parent:
            print(f"Tracked parent run {parent.id} ({parent.name}) is Running")
            print(f"  current parent here:     {deploytrigger.current_parent()}")

            # The workers of this pool link their runs under `parent` too.
            with deploytrigger.ParentAwareThreadPoolExecutor(max_workers=4) as pool:
                children = list(
                    pool.map(
                        lambda x: client.run_deployment(DEPLOYMENT, parameters={"x": x}, timeout=0),
                        range(CHILDREN),
                    )
                )
            print(f"  {len(children)} children triggered from 4 threads, each with its own link:")
            for child in children:
                print(f"    {child.name:<24} parent_task_run_id={child.parent_task_run_id}")

            # Any run can be a parent, by id; blocks nest and the innermost wins.
            with client.flow_run("nightly-batch", name="inner-step") as inner:
                with deploytrigger.parent_run(parent.id):
                    back_under_outer = client.run_deployment(DEPLOYMENT, timeout=0)
                under_inner = client.run_deployment(DEPLOYMENT, timeout=0)
            print(f"  nested: {under_inner.name} is under {inner.name},")
            print(f"          {back_under_outer.name} under {parent.name} again")

            top_level = client.run_deployment(DEPLOYMENT, timeout=0, as_subflow=False)
            print(f"  as_subflow=False: {top_level.name} has no parent")

        final = client.read_flow_run(parent.id)
        print(f"Parent run is now {final.state}")
        print("In the Prefect UI the parent shows its children as subflows.")
        return 0 if final.state is not None and final.state.is_completed() else 1


if __name__ == "__main__":
    sys.exit(main())
