"""500 runs waited on at once: one websocket, the client's CPU and memory, events vs polling.

One command, from the repository root (about 5 minutes)::

    .venv/bin/python -m benchmarks.events_many [--runs 500] [--repetitions 3]
        [--interval 5] [--batches 5] [--gap 3]

Starts a throwaway Prefect server with a deployment nobody serves. For each
repetition and each mode (``events="on"`` and ``events="off"``, alternating
which goes first), it creates ``--runs`` runs, then starts a *waiter process*
(``python -m benchmarks.events_many --waiter``) that calls one
``Client.wait_all`` on all of them at ``poll_interval=--interval``, while this
process sets them COMPLETED over REST in ``--batches`` batches, ``--gap``
seconds apart. The waiter measures itself with ``getrusage``: the CPU seconds
(user + system) its process spent from just before the wait to its return, its
peak RSS, and how much the peak grew during the wait; it reports how many
websockets it opened and how many threads it had. Its REST requests go
through :class:`harness.proxy.Proxy`, which counts them; its websocket goes
to the server directly (the proxy forwards plain HTTP only).

Figures are min / median / max over the repetitions, written to
``benchmarks/events_many_results.rst`` (included in the docs). CPU seconds
are what a loaded machine disturbs least; the wall time of the wait depends
mostly on how fast the server takes the state changes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import requests
import tenacity

from harness.local_server import LocalPrefect
from harness.proxy import Proxy

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "events_many_results.rst"
IDLE_FLOW, IDLE_DEPLOYMENT = "bench-many", "bench-many-dep"
"""A deployment nobody serves: its runs end only when the benchmark sets their state."""
MODES = ("on", "off")
LABELS = {"on": "events", "off": "polling"}
METRICS = (
    ("cpu", "client CPU while waiting (s)", "{:.2f}"),
    ("rss_mb", "peak RSS of the client process (MB)", "{:.1f}"),
    ("rss_growth_mb", "RSS growth during the wait (MB)", "{:.1f}"),
    ("requests", "REST requests while waiting", "{:.0f}"),
    ("sockets", "websockets opened", "{:.0f}"),
    ("threads", "threads at the end of the wait", "{:.0f}"),
    ("wall", "wait, first state change to return (s)", "{:.1f}"),
)


def waiter(argv: Sequence[str]) -> int:
    """The waiter process: one ``wait_all`` on the ids in a file; its figures on stdout as JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--waiter", action="store_true")
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--events-url", required=True)
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--interval", type=float, required=True)
    parser.add_argument("--ids", type=Path, required=True)
    args = parser.parse_args(argv)
    import deploytrigger  # noqa: F401 - imports before the measurement
    from deploytrigger import Client
    from deploytrigger._waits.events import EventsListener

    ids = json.loads(args.ids.read_text(encoding="utf-8"))
    with Client(args.api_url, events=args.mode) as client:
        listener = client._poller.wakeups
        if isinstance(listener, EventsListener):
            listener.url = args.events_url  # the proxy forwards HTTP, not websockets
        before = resource.getrusage(resource.RUSAGE_SELF)
        print("waiting", flush=True)
        result = client.wait_all(ids, poll_interval=args.interval, timeout=900)
        after = resource.getrusage(resource.RUSAGE_SELF)
        threads = threading.active_count()
        sockets = listener.connections if isinstance(listener, EventsListener) else 0
    figures = {
        "done": len(result.done),
        "not_done": len(result.not_done),
        "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "rss_mb": after.ru_maxrss / 1024.0,  # kilobytes on Linux
        "rss_growth_mb": (after.ru_maxrss - before.ru_maxrss) / 1024.0,
        "sockets": sockets,
        "threads": threads,
    }
    print(json.dumps(figures), flush=True)
    return 0


def post(session: requests.Session, url: str, body: Dict[str, Any]) -> Dict[str, Any]:
    """``POST`` ``body`` as JSON; a server busy at start-up or under load (503) is asked again."""
    for attempt in tenacity.Retrying(
        retry=tenacity.retry_if_exception(
            lambda exc: (
                isinstance(exc, requests.HTTPError)
                and exc.response is not None
                and exc.response.status_code == 503
            )
        ),
        wait=tenacity.wait_fixed(1.0),
        stop=tenacity.stop_after_attempt(30),
        reraise=True,
    ):
        with attempt:
            response = session.post(url, json=body, timeout=120)
            response.raise_for_status()
    answer: Dict[str, Any] = response.json()
    return answer


def one_wait(
    api_url: str, proxy: Proxy, mode: str, runs: int, interval: float, batches: int, gap: float
) -> Dict[str, float]:
    """Create ``runs`` runs, wait on them in a waiter process while setting them COMPLETED."""
    from deploytrigger import Client

    session = requests.Session()
    with Client(api_url, events="off") as creator:
        ids = [
            str(creator.run_deployment(f"{IDLE_FLOW}/{IDLE_DEPLOYMENT}", timeout=0).id)
            for _ in range(runs)
        ]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(ids, handle)
    command = [
        sys.executable,
        "-m",
        "benchmarks.events_many",
        "--waiter",
        f"--api-url={proxy.api_url}",
        f"--events-url={api_url.replace('http', 'ws', 1)}/events/out",
        f"--mode={mode}",
        f"--interval={interval}",
        f"--ids={handle.name}",
    ]
    proxy.clear_received()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "waiting"
        time.sleep(3.0)  # the waiter's first poll, and its socket subscribed
        started = time.monotonic()
        size = -(-runs // batches)
        for index in range(0, runs, size):
            if index:
                time.sleep(gap)
            for run_id in ids[index : index + size]:
                post(
                    session,
                    f"{api_url}/flow_runs/{run_id}/set_state",
                    {"state": {"type": "COMPLETED", "name": "Completed"}, "force": True},
                )
        figures: Dict[str, float] = json.loads(process.stdout.readline())
        figures["wall"] = time.monotonic() - started
        process.wait(60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        os.unlink(handle.name)
    if figures.pop("not_done") or figures.pop("done") != runs:
        raise SystemExit(f"the {mode} waiter did not see all {runs} runs final: {figures}")
    figures["requests"] = proxy.total()
    return figures


def render(table: Dict[str, List[Dict[str, float]]], args: argparse.Namespace) -> str:
    """The reST table of the figures, min / median / max per mode."""
    rows = [(label, *(LABELS[m] for m in MODES)) for label in ["figure"]]
    for key, label, form in METRICS:
        cells = []
        for mode in MODES:
            values = sorted(sample[key] for sample in table[mode])
            cells.append(" / ".join(form.format(v) for v in _three(values)))
        rows.append((label, *cells))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    rule = "  ".join("=" * w for w in widths)
    lines = [
        f".. Written by ``python -m benchmarks.events_many`` on {time.strftime('%Y-%m-%d')}: "
        f"{args.repetitions} repetitions,",
        f"   {args.runs} runs, poll_interval={args.interval:g}, set COMPLETED in "
        f"{args.batches} batches {args.gap:g} s apart, min / median / max.",
        "",
        rule,
        "  ".join(cell.ljust(w) for cell, w in zip(rows[0], widths)).rstrip(),
        rule,
        *("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows[1:]),
        rule,
        "",
    ]
    return "\n".join(lines)


def _three(values: List[float]) -> List[float]:
    return [min(values), statistics.median(values), max(values)]


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--waiter" in argv:
        return waiter(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--gap", type=float, default=3.0)
    args = parser.parse_args(argv)
    with LocalPrefect() as server, Proxy(server.api_url) as proxy:
        session = requests.Session()
        flow = post(session, f"{server.api_url}/flows/", {"name": IDLE_FLOW})
        post(
            session,
            f"{server.api_url}/deployments/",
            {"name": IDLE_DEPLOYMENT, "flow_id": flow["id"], "parameters": {}},
        )
        table: Dict[str, List[Dict[str, float]]] = {mode: [] for mode in MODES}
        for repetition in range(args.repetitions):
            for mode in MODES if repetition % 2 == 0 else MODES[::-1]:
                figures = one_wait(
                    server.api_url,
                    proxy,
                    mode,
                    args.runs,
                    args.interval,
                    args.batches,
                    args.gap,
                )
                table[mode].append(figures)
                print(f"#{repetition + 1} {LABELS[mode]}: {figures}", flush=True)
    text = render(table, args)
    print(text)
    RESULTS.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
