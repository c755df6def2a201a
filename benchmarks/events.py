"""Completion -> return: how long after a run ends each waiter hands it back.

One command, from the repository root (about 10 minutes)::

    .venv/bin/python -m benchmarks.events [--repetitions 5] [--intervals 5 30]
        [--parts latency requests many order]

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

Three more parts, written to ``benchmarks/events_more_results.rst``:

- ``requests``: every REST request (at the proxy) a listening client sends while
  waiting for one 10 s run at ``poll_interval=30`` (target: at most 2);
- ``many``: the requests of one ``wait_all`` on 200 runs at
  ``poll_interval=60`` with events; nothing executes these runs (a deployment
  that nobody serves): the benchmark sets them COMPLETED over REST in four
  batches of 50, 40 s apart, so the wait spans two intervals (target: at most
  one filter request per 200 runs per interval, plus one read per batch that
  finished);
- ``order``: ``as_completed`` at ``poll_interval=60`` with events on six runs of
  1..6 s created together, in shuffled order: whether it yields in the order the
  runs ended (``end_time``) and each yield's lag behind its run's ``end_time``.
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
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Tuple

from harness.local_server import LocalPrefect
from harness.proxy import Proxy

if TYPE_CHECKING:
    from deploytrigger import Client, FlowRun
    from deploytrigger._waits.events import EventsListener

HERE = Path(__file__).resolve().parent
FLOWS_SCRIPT = HERE.parent / "examples" / "flows.py"
DEPLOYMENT = "sleepy/sleepy-dep"
RUN_SECONDS = 1.0
RESULTS = HERE / "events_results.rst"
MORE_RESULTS = HERE / "events_more_results.rst"
PARTS = ("latency", "requests", "many", "order")
IDLE_FLOW, IDLE_DEPLOYMENT = "bench-idle", "bench-idle-dep"
"""A deployment nobody serves: its runs end only when the benchmark sets their state."""
MANY_RUNS, MANY_BATCHES, MANY_BATCH_GAP = 200, 4, 40.0
ORDER_SECONDS = (4, 1, 6, 2, 5, 3)

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
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    args = parser.parse_args(argv)
    with LocalPrefect(FLOWS_SCRIPT, deployments=[DEPLOYMENT]) as server, Proxy(
        server.api_url
    ) as proxy:
        os.environ["PREFECT_API_URL"] = server.api_url
        os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="bench-events-"))
        # Imported here, once: two threads importing Prefect at once trip over its import cycle.
        importlib.import_module("prefect.deployments")
        importlib.import_module("prefect.flow_runs")

        if "latency" in args.parts:
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
        more: List[str] = []
        if "requests" in args.parts:
            more += requests_for_one_run(server.api_url, proxy, args.repetitions)
        if "many" in args.parts:
            more += requests_for_many_runs(server.api_url, proxy)
        if "order" in args.parts:
            more += completion_order(server.api_url, args.repetitions)
    if more:
        text = render_more(more)
        print(text)
        MORE_RESULTS.write_text(text, encoding="utf-8")
    return 0


def listener_of(client: Client) -> EventsListener:
    """The client's events listener (it opens nothing until a wait watches a run)."""
    from deploytrigger._waits.events import EventsListener

    listener = client._poller.wakeups
    assert isinstance(listener, EventsListener)
    return listener


def listening_client(api_url: str, proxy: Proxy) -> Client:
    """A client with events whose REST goes through the proxy and its websocket straight on."""
    from deploytrigger import Client
    from deploytrigger._waits.events import events_url

    client = Client(proxy.api_url, events="on")
    listener = listener_of(client)
    listener.url = events_url(api_url)  # the proxy forwards HTTP, not websockets
    return client


def requests_for_one_run(api_url: str, proxy: Proxy, repetitions: int) -> List[str]:
    """Requests sent while waiting for one 10 s run at ``poll_interval=30``, with events."""
    counts: List[float] = []
    endpoints: Counter[str] = Counter()
    for repetition in range(repetitions):
        with listening_client(api_url, proxy) as client:
            run_id = client.run_deployment(DEPLOYMENT, parameters={"seconds": 10}, timeout=0).id
            proxy.clear_received()
            run = client.wait_for_flow_run(run_id, poll_interval=30, timeout=600)
            sent = list(proxy.received)
        assert run.state is not None and run.state.type == "COMPLETED", run.state
        counts.append(float(len(sent)))
        endpoints.update(_endpoint_of(r.method, r.path) for r in sent)
        print(f"one 10 s run #{repetition + 1}: {len(sent)} requests", flush=True)
    shown = ", ".join(f"{e} x{n}" for e, n in sorted(endpoints.items()))
    return [
        f"Requests while waiting for one 10 s run at ``poll_interval=30`` with events, "
        f"{repetitions} repetitions (target: at most 2): "
        f"**{_three(counts, '{:.0f}')}** (min / median / max); in all: {shown}."
    ]


def requests_for_many_runs(api_url: str, proxy: Proxy) -> List[str]:
    """One ``wait_all`` on 200 runs at ``poll_interval=60``; the runs end in four batches."""
    import requests

    from deploytrigger import Client

    session = requests.Session()

    def post(path: str, body: Dict[str, object]) -> Dict[str, object]:
        response = session.post(f"{api_url}{path}", json=body, timeout=120)
        response.raise_for_status()
        answer: Dict[str, object] = response.json()
        return answer

    flow = post("/flows/", {"name": IDLE_FLOW})
    post("/deployments/", {"name": IDLE_DEPLOYMENT, "flow_id": flow["id"], "parameters": {}})
    with Client(api_url, events="off") as creator:
        ids = [
            creator.run_deployment(f"{IDLE_FLOW}/{IDLE_DEPLOYMENT}", timeout=0).id
            for _ in range(MANY_RUNS)
        ]
    size = MANY_RUNS // MANY_BATCHES
    batches = [ids[i : i + size] for i in range(0, MANY_RUNS, size)]
    with listening_client(api_url, proxy) as client:
        listener = listener_of(client)
        spread: List[float] = []

        def finish() -> None:
            while listener.connections < 1:
                time.sleep(0.05)
            for index, batch in enumerate(batches):
                time.sleep(5.0 if index == 0 else MANY_BATCH_GAP)
                began = time.monotonic()
                for run_id in batch:
                    post(
                        f"/flow_runs/{run_id}/set_state",
                        {"state": {"type": "COMPLETED", "name": "Completed"}, "force": True},
                    )
                spread.append(time.monotonic() - began)
                print(f"200 runs: batch {index + 1} of {len(batches)} completed", flush=True)

        finisher = threading.Thread(target=finish, daemon=True)
        proxy.clear_received()
        started = time.monotonic()
        finisher.start()
        result = client.wait_all(ids, poll_interval=60, timeout=900)
        elapsed = time.monotonic() - started
        sent = list(proxy.received)
        finisher.join(60)
    assert not result.not_done and len(result.done) == MANY_RUNS
    endpoints = Counter(_endpoint_of(r.method, r.path) for r in sent)
    intervals = int(elapsed // 60)
    filters = endpoints.get("POST /flow_runs/filter", 0)
    shown = ", ".join(f"{e} x{n}" for e, n in sorted(endpoints.items()))
    return [
        f"Requests of one ``wait_all`` on {MANY_RUNS} runs at ``poll_interval=60`` with events, "
        f"the runs set COMPLETED in {len(batches)} batches of {size}, {MANY_BATCH_GAP:g} s "
        f"apart (each batch's 50 state changes took {_three(spread, '{:.1f}')} s to send, "
        f"one after another); the wait took {elapsed:.0f} s ({intervals} whole intervals): "
        f"**{len(sent)} requests**, {filters} of them filters. Targets: one read per "
        f"finished run (the issue's): at most 1 + {intervals} + {MANY_RUNS} = "
        f"{1 + intervals + MANY_RUNS}; one read per finished batch: at most 1 + "
        f"{intervals} + {len(batches)} = {1 + intervals + len(batches)}. In all: {shown}."
    ]


def completion_order(api_url: str, repetitions: int) -> List[str]:
    """``as_completed`` on runs of 1..6 s: order, and the lag behind each run's end."""
    from deploytrigger import Client

    lags: List[float] = []
    in_order = 0
    for repetition in range(repetitions):
        with Client(api_url, events="on") as client:
            handles = [
                client.submit(DEPLOYMENT, parameters={"seconds": seconds})
                for seconds in ORDER_SECONDS
            ]
            yielded: List[Tuple[datetime, FlowRun]] = []
            for run in client.as_completed(handles, poll_interval=60, timeout=600):
                yielded.append((datetime.now(timezone.utc), run))
        ends = [run.end_time for _, run in yielded]
        ordered = ends == sorted(ends)
        in_order += ordered
        these = [_since_end(when, run.end_time) for when, run in yielded]
        lags += these
        shown = ", ".join(
            f"{run.parameters['seconds']}s +{lag:.3f}" for (_, run), lag in zip(yielded, these)
        )
        print(f"as_completed #{repetition + 1}: in order {ordered}: {shown}", flush=True)
    within = sum(lag <= 0.1 for lag in lags)
    return [
        f"``as_completed`` at ``poll_interval=60`` with events on runs of "
        f"{', '.join(str(s) for s in ORDER_SECONDS)} s, {repetitions} repetitions: yielded "
        f"in completion order {in_order} of {repetitions} times; lag behind each run's "
        f"``end_time`` **{_three(lags, '{:.3f}')} s** (min / median / max), "
        f"{within} of {len(lags)} within 0.1 s (target: all)."
    ]


def _endpoint_of(method: str, path: str) -> str:
    import re

    path = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "{id}", path.split("?")[0])
    return f"{method} {path.replace('/api', '', 1)}"


def render_more(paragraphs: List[str]) -> str:
    stamp = time.strftime("%Y-%m-%d")
    head = f".. Written by ``python -m benchmarks.events`` on {stamp}."
    return "\n\n".join([head, *(f"- {p}" for p in paragraphs)]) + "\n"


def side_by_side(api_url: str, proxy: Proxy, interval: float) -> Dict[str, Sample]:
    """One repetition: every waiter on its own run, all started at once."""
    from deploytrigger import Client

    polling = Client(proxy.api_url, events="off")
    listening = Client(proxy.api_url, events="on")
    from deploytrigger._waits.events import events_url

    listener = listener_of(listening)
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
