"""Example Prefect flows that the demo and the integration tests serve.

Run with a Prefect installation (the ``server`` extra) and ``PREFECT_API_URL``
pointing at a server: ``python examples/flows.py``. Each flow becomes one
deployment, named ``<flow>/<deployment>`` as listed in ``DEPLOYMENTS``.
``add/add-dep`` carries the deployment default ``y=10``: a run given only ``x``
shows that the server merges run parameters over deployment defaults.
"""

import time
from typing import Dict, List, Optional

from prefect import flow, serve
from prefect.deployments import run_deployment as prefect_run_deployment


@flow(name="add", log_prints=True)
def add(x: int = 1, y: int = 2) -> int:
    """Add two numbers and print the sum."""
    total = x + y
    print(f"sum is {total}")
    return total


@flow(name="fail")
def fail(message: str = "boom") -> None:
    """Always fail with ``message``."""
    raise RuntimeError(message)


@flow(name="sleepy", log_prints=True)
def sleepy(seconds: float = 30.0) -> float:
    """Sleep for ``seconds`` and return them."""
    time.sleep(seconds)
    print(f"slept {seconds}s")
    return seconds


@flow(name="echo", log_prints=True)
def echo(value: Optional[dict] = None, items: Optional[list] = None) -> dict:
    """Return what it was given."""
    print(f"echo {value!r} {items!r}")
    return {"value": value, "items": items}


DEPLOYMENTS = {
    "add": add.to_deployment(
        name="add-dep", tags=["examples"], version="1.0", parameters={"y": 10}
    ),
    "fail": fail.to_deployment(name="fail-dep"),
    "sleepy": sleepy.to_deployment(name="sleepy-dep"),
    "echo": echo.to_deployment(name="echo-dep", enforce_parameter_schema=True),
}


@flow(name="parent", log_prints=True)
def parent(children: int = 4, with_prefect: bool = True) -> Dict[str, List[str]]:
    """Trigger ``add/add-dep`` ``children`` times from a deploytrigger thread pool.

    Every child is linked under this run as a subflow; with ``with_prefect``,
    Prefect's own ``run_deployment`` triggers one more child before and one
    after, and the placeholders of all of them still get distinct dynamic keys.
    """
    import deploytrigger  # only this flow needs it: the others run in any Prefect install

    before = prefect_run_deployment("add/add-dep", timeout=0) if with_prefect else None
    with deploytrigger.ThreadPoolExecutor(max_workers=8) as pool:
        ours = list(
            pool.map(
                lambda i: (
                    deploytrigger.run_deployment("add/add-dep", parameters={"x": i}, timeout=0).id
                ),
                range(children),
            )
        )
    after = prefect_run_deployment("add/add-dep", timeout=0) if with_prefect else None
    print(f"triggered {len(ours)} children")
    return {
        "deploytrigger": [str(run_id) for run_id in ours],
        "prefect": [str(run.id) for run in (before, after) if run is not None],
    }


DEPLOYMENTS["parent"] = parent.to_deployment(name="parent-dep")


if __name__ == "__main__":
    serve(*DEPLOYMENTS.values(), limit=50)
