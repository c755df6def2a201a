"""Completion -> return: how long after a run ends each waiter hands it back.

One command, from the repository root (about 5 minutes)::

    .venv/bin/python -m benchmarks.events [--repetitions 5] [--intervals 5 30]

Starts a throwaway Prefect server serving ``examples/flows.py`` and, for each
poll interval, runs the waiters side by side, each on its own ``sleepy`` run
(1 s) created at the same moment:

- deploytrigger with events (``Client(events="on")``, ``wait_for_flow_run``);
- deploytrigger polling (``events="off"``);
- Prefect's ``run_deployment`` (sync; it polls at ``poll_interval``);
- Prefect's ``wait_for_flow_run`` (async; it listens to the events stream).

Latency is the wall clock when the waiter returned minus the run's
``end_time`` (server and client share the machine's clock). deploytrigger's
REST requests go through :class:`harness.proxy.Proxy`, which counts the reads of
each waiter's run while it waits; the proxy forwards plain HTTP only, so the
events listener's websocket is pointed at the server directly (a private seam,
``EventsListener.url``). Prefect's waiters talk to the server directly and are
not counted. Figures are min / median / max over the repetitions and are
written to ``benchmarks/events_results.rst`` (included in the docs).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import statistics
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from harness.local_server import LocalPrefect
from harness.proxy import Proxy

HERE = Path(__file__).resolve().parent
FLOWS_SCRIPT = HERE.parent / "examples" / "flows.py"
DEPLOYMENT = "sleepy/sleepy-dep"
RUN_SECONDS = 1.0
RESULTS = HERE / "events_results.rst"

WAITERS = ("events", "polling", "prefect-run-deployment", "prefect-wait-for-flow-run")
LABELS = {
    "events": "deploytrigger, events",
    "polling": "deploytrigger, polling",
    "prefect-run-deployment": "Prefect ``run_deployment``",
    "prefect-wait-for-flow-run": "Prefect ``wait_for_flow_run``",
}

Sample = Tuple[float, Optional[int]]
"""One wait: seconds from the run's end to the return, and REST reads while waiting (if counted)."""


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--intervals", type=float, nargs="+", default=[5.0, 30.0])
    args = parser.parse_args(argv)
    with LocalPrefect(FLOWS_SCRIPT, deployments=[DEPLOYMENT]) as server, Proxy(
        server.api_url
    ) as proxy:
        os.environ["PREFECT_API_URL"] = server.api_url
        os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="bench-events-"))
        # Imported here, once: two threads importing Prefect at once trip over its import cycle.
        importlib.import_module("prefect.deployments")
        importlib.import_module("prefect.flow_runs")

        table: Dict[Tuple[str, float], List[Sample]] = {}
        for interval in args.intervals:
            for repetition in range(args.repetitions):
                samples = side_by_side(server.api_url, proxy, interval)
                for waiter, sample in samples.items():
                    table.setdefault((waiter, interval), []).append(sample)
                shown = ", ".join(f"{w} {s[0]:.3f}s" for w, s in samples.items())
                print(f"poll_interval={interval:g} #{repetition + 1}: {shown}", flush=True)
    text = render(table, args.intervals, args.repetitions)
    print(text)
    RESULTS.write_text(text, encoding="utf-8")
    return 0


def side_by_side(api_url: str, proxy: Proxy, interval: float) -> Dict[str, Sample]:
    """One repetition: every waiter on its own run, all started at once."""
    from deploytrigger import Client

    polling = Client(proxy.api_url, events="off")
    listening = Client(proxy.api_url, events="on")
    from deploytrigger._waits.events import EventsListener, events_url

    listener = listening.poller.wakeups
    assert isinstance(listener, EventsListener)
    listener.url = events_url(api_url)  # the proxy forwards HTTP, not websockets
    runs = {
        waiter: polling.run_deployment(
            DEPLOYMENT, parameters={"seconds": RUN_SECONDS}, timeout=0
        ).id
        for waiter in ("events", "polling", "prefect-wait-for-flow-run")
    }
    results: Dict[str, Sample] = {}

    def ours(waiter: str, client: Client) -> Callable[[], None]:
        def wait() -> None:
            path = f"/flow_runs/{runs[waiter]}$"
            before = len(proxy.matching("GET", path))
            run = client.wait_for_flow_run(runs[waiter], poll_interval=interval, timeout=600)
            returned = datetime.now(timezone.utc)
            reads = len(proxy.matching("GET", path)) - before
            results[waiter] = (_since_end(returned, run.end_time), reads)

        return wait

    threads = [
        threading.Thread(target=ours("events", listening)),
        threading.Thread(target=ours("polling", polling)),
        threading.Thread(target=_prefect_run_deployment(results, interval)),
        threading.Thread(target=_prefect_wait(results, runs["prefect-wait-for-flow-run"])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    listening.close()
    polling.close()
    return {waiter: results[waiter] for waiter in WAITERS}


def _prefect_run_deployment(results: Dict[str, Sample], interval: float) -> Callable[[], None]:
    def wait() -> None:
        from prefect.deployments import run_deployment

        run = run_deployment(
            DEPLOYMENT,
            parameters={"seconds": RUN_SECONDS},
            timeout=600,
            poll_interval=interval,
            as_subflow=False,
        )
        returned = datetime.now(timezone.utc)
        results["prefect-run-deployment"] = (_since_end(returned, run.end_time), None)

    return wait


def _prefect_wait(results: Dict[str, Sample], run_id: uuid.UUID) -> Callable[[], None]:
    def wait() -> None:
        from prefect.flow_runs import wait_for_flow_run

        run = asyncio.run(wait_for_flow_run(run_id, timeout=600, log_states=False))
        returned = datetime.now(timezone.utc)
        results["prefect-wait-for-flow-run"] = (_since_end(returned, run.end_time), None)

    return wait


def _since_end(returned: datetime, end_time: Optional[datetime]) -> float:
    if end_time is None:
        return float("nan")
    if end_time.tzinfo is None:
        end_time = end_time.replace(tzinfo=timezone.utc)
    return (returned - end_time).total_seconds()


def render(
    table: Dict[Tuple[str, float], List[Sample]], intervals: Sequence[float], repetitions: int
) -> str:
    """An RST table: latency and reads, min / median / max, per waiter and interval."""
    header = ("waiter", "poll_interval", "run end -> return (s)", "reads while waiting")
    rows = []
    for interval in intervals:
        for waiter in WAITERS:
            samples = table.get((waiter, interval), [])
            latencies = [s[0] for s in samples]
            reads = [s[1] for s in samples if s[1] is not None]
            rows.append(
                (
                    LABELS[waiter],
                    f"{interval:g} s",
                    _three(latencies, "{:.3f}"),
                    _three([float(r) for r in reads], "{:.0f}") if reads else "not counted",
                )
            )
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    rule = "  ".join("=" * width for width in widths)

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(cell).ljust(width) for cell, width in zip(cells, widths)).rstrip()

    stamp = time.strftime("%Y-%m-%d")
    lines = [
        f".. Written by ``python -m benchmarks.events`` on {stamp}: {repetitions} repetitions,",
        f"   a {RUN_SECONDS:g} s run per waiter, min / median / max.",
        "",
        rule,
        line(header),
        rule,
        *(line(row) for row in rows),
        rule,
        "",
    ]
    return "\n".join(lines)


def _three(values: List[float], fmt: str) -> str:
    if not values:
        return "-"
    return " / ".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


if __name__ == "__main__":
    raise SystemExit(main())
