"""Execute the scheduled runs of one deployment in this process with Prefect's own flow engine.

A stand-in for a Prefect worker when hundreds of runs must finish within a
test: a process worker starts a Python subprocess per run (about 2 s of CPU
each on these machines), this runs each flow in a thread of one process. Each
run is claimed as a worker claims it (propose PENDING; the server refuses a
second claim, so several executors never run a run twice) and then executed by
``prefect.flow_engine.run_flow``, which sets RUNNING and the final state and
sends the flow's logs, all over ``PREFECT_API_URL``.

A claim can be answered REJECT and still be ours: when the API server that
made the transition dies before answering, Prefect's client resends the claim
(same ``transition_id``) and the server refuses the duplicate of what it
already did, returning the run PENDING (``PreventDuplicateTransitions``);
another executor's claim is ABORTed instead. A claimed run whose read fails is
read again at the next poll: only SCHEDULED runs are polled for, so a claimed
run left aside would stay PENDING for ever::

    PREFECT_API_URL=... python tests/integration/quick_executor.py \
        FLOWS_SCRIPT FUNCTION DEPLOYMENT_ID

Runs until SIGTERM. Needs Prefect (the ``server`` extra).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, List, Optional, Sequence, Set

logger = logging.getLogger("quick_executor")


def load_flow(script: Path, function: str) -> Any:
    """The flow object ``function`` defined in the Python file ``script``."""
    sys.path.insert(0, str(script.parent))
    spec = importlib.util.spec_from_file_location(script.stem, script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, function)


def claimed(result: Any, flow_run_id: Any) -> bool:
    """Whether the answer to our PENDING proposal makes the run ours (see the module docstring)."""
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.responses import SetStateStatus

    if result.status == SetStateStatus.ACCEPT:
        return True
    state = result.state
    if result.status == SetStateStatus.REJECT and state and state.type == StateType.PENDING:
        logger.info("claim of %s refused as a duplicate: a resent claim, ours", flow_run_id)
        return True
    return False


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("flows_script", type=Path)
    parser.add_argument("function")
    parser.add_argument("deployment_id")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between polls")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise

    from prefect import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.flow_engine import run_flow
    from prefect.states import Pending

    flow = load_flow(options.flows_script.resolve(), options.function)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    running: Set[str] = set()  # claimed and not yet ended
    unstarted: List[Any] = []  # ids of claimed runs not handed to a thread yet
    lock = threading.Lock()

    def execute(flow_run: Any) -> None:
        try:
            run_flow(flow, flow_run=flow_run, return_type="state")
        except BaseException:  # one run's failure must not stop the others
            logger.exception("flow run %s: the engine raised", flow_run.id)
        finally:
            with lock:
                running.discard(str(flow_run.id))

    scheduled = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
    )
    deployment = DeploymentFilter(id=DeploymentFilterId(any_=[options.deployment_id]))
    logger.info("executing scheduled runs of deployment %s", options.deployment_id)
    with ThreadPoolExecutor(options.threads) as pool, get_client(sync_client=True) as client:
        while not stopped.is_set():
            with lock:
                free = options.threads * 2 - len(running)
            started = 0
            try:
                runs = []
                if free > 0:
                    runs = client.read_flow_runs(
                        flow_run_filter=scheduled,
                        deployment_filter=deployment,
                        sort=FlowRunSort.EXPECTED_START_TIME_ASC,
                        limit=free,
                    )
                for flow_run in runs:
                    with lock:
                        if str(flow_run.id) in running:
                            continue
                    result = client.set_flow_run_state(flow_run.id, Pending(), force=False)
                    if not claimed(result, flow_run.id):
                        continue  # claimed elsewhere, or no longer scheduled
                    with lock:
                        running.add(str(flow_run.id))
                    unstarted.append(flow_run.id)
                while unstarted:
                    pool.submit(execute, client.read_flow_run(unstarted[0]))
                    unstarted.pop(0)
                    started += 1
            except Exception as exc:  # an API server went away: poll again
                logger.warning("poll failed: %r", exc)
            if not started:
                stopped.wait(options.poll)
        logger.info("stopping; %d runs still executing", len(running))
    return 0


if __name__ == "__main__":
    sys.exit(main())
