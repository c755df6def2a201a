"""Example Prefect flows that the demo and the integration tests serve.

Run with a Prefect installation (the ``server`` extra) and ``PREFECT_API_URL``
pointing at a server: ``python examples/flows.py``. Each flow becomes one
deployment, named ``<flow>/<deployment>`` as listed in ``DEPLOYMENTS``.
``add/add-dep`` carries the deployment default ``y=10``: a run given only ``x``
shows that the server merges run parameters over deployment defaults.
"""

import time
from typing import Optional

from prefect import flow, serve


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


if __name__ == "__main__":
    serve(*DEPLOYMENTS.values(), limit=50)
