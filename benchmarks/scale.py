"""Scaling on a production-shaped stack: deploytrigger against Prefect's own sync client.

``make bench-scale`` (or ``python -m benchmarks.scale [--quick]``) starts
``harness.prod_stack.ProdStack`` (PostgreSQL, the Prefect server,
a process pool with two workers, the flows of ``examples/flows.py``), puts a
counting reverse proxy (``harness.proxy.Proxy``) in front of the
server and measures, for both clients in the same run:

* thread scaling: triggers/s, p50/p95 latency of one trigger, HTTP requests
  per trigger (steady state, after a warm-up) and client CPU per trigger
  (``time.process_time`` in the client's process) with 1, 4, 16 and 64 threads;
* batches of 100, 500 and 2,000 runs: deploytrigger's ``run_many`` (16 workers)
  then ``wait_all`` batch polling; Prefect's equivalent, a 16-thread pool
  calling ``run_deployment(timeout=0)`` then one ``read_flow_run`` per pending
  run per interval (from the same 16 threads). Trigger time, wait time, requests the server received
  while waiting, errors, and runs lost or duplicated (counted on the server by
  the batch's unique tag and each run's unique ``x`` parameter).

Runs are not executed by the workers here (the production integration test
shows that they are; two workers on two cores execute a run in ~5 s, so 2,000
real executions would take most of an hour). Triggered runs are scheduled in
2099; during a batch's wait a simulated fleet completes them (``set_state``
COMPLETED, 8 threads, straight to the server, not through the proxy) as fast
as the server takes it, so both waiters watch the same stream of completions.

Every measurement runs in a fresh client subprocess (``scale.py _child``) so
that neither client pays for the other's imports. Results go to
``benchmarks/scale_results.rst`` and ``benchmarks/scaling.png``.

``--api-servers 1,2`` measures something else: deploytrigger's triggers/s on a
stack with one API server and on one with two (behind nginx, with Redis
messaging), both up at once in the same run, the repetitions alternating
between them (``--reps``, 3 by default) so that a busy machine slows both
alike. Each repetition is a fresh client subprocess sending ``--triggers``
triggers from ``--threads`` threads straight to the stack's URL (no counting
proxy, which would be the bottleneck). Min/median/max per stack and the ratios
of the medians go to ``benchmarks/scale_servers_results.rst`` (and ``.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence, Tuple

import requests

from harness.prod_stack import DEPLOYMENTS, ProdStack
from harness.proxy import Proxy

HERE = Path(__file__).resolve().parent
FLOWS_SCRIPT = HERE.parent / "examples" / "flows.py"

LIBS = ("deploytrigger", "prefect")
LABELS = {"deploytrigger": "deploytrigger", "prefect": "Prefect 3.8.8 run_deployment"}
DEPLOYMENT = "add/add-dep"
FAR_FUTURE = dt.datetime(2099, 1, 1, tzinfo=dt.timezone.utc)
THREADS = (1, 4, 16, 64)
BATCH_WORKERS = 16
POLL_INTERVAL = 2.0
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}


# -- the client side (a subprocess per measurement) ----------------------------------------------


def _trigger_function(lib: str, api_url: str, threads: int) -> Callable[[int, str], Any]:
    """``trigger(x, tag)`` creating one run of DEPLOYMENT far in the future; returns its id."""
    if lib == "deploytrigger":
        from deploytrigger import Client

        client = Client(api_url, pool_size=max(32, threads))

        def ours(x: int, tag: str) -> Any:
            options = {"parameters": {"x": x}, "tags": [tag], "scheduled_time": FAR_FUTURE}
            return client.run_deployment(DEPLOYMENT, timeout=0, **options).id

        return ours
    from prefect.deployments import run_deployment

    def theirs(x: int, tag: str) -> Any:
        run = run_deployment(
            DEPLOYMENT, parameters={"x": x}, tags=[tag], scheduled_time=FAR_FUTURE, timeout=0
        )
        return run.id

    return theirs


def _handshake() -> None:
    """Tell the parent we are warmed up; wait until it has reset the proxy's counts."""
    print("READY", flush=True)
    sys.stdin.readline()


def child_threads(lib: str, api_url: str, threads: str, count: str, tag: str) -> Dict[str, Any]:
    """``count`` triggers from ``threads`` threads after a warm-up of ``threads`` triggers."""
    workers, total = int(threads), int(count)
    trigger = _trigger_function(lib, api_url, workers)
    latencies: List[float] = []
    errors = 0
    lock = threading.Lock()

    def timed(x: int) -> None:
        nonlocal errors
        started = time.perf_counter()
        try:
            trigger(x, tag)
        except Exception:
            with lock:
                errors += 1
            return
        elapsed = time.perf_counter() - started
        with lock:
            latencies.append(elapsed)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda x: trigger(-1 - x, tag), range(workers)))  # imports, connections
        _handshake()
        cpu, wall = time.process_time(), time.perf_counter()
        list(pool.map(timed, range(total)))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "per_second": total / wall,
        "latencies": latencies,
        "cpu_per_trigger": cpu / total,
        "errors": errors,
    }


def child_batch(lib: str, api_url: str, count: str, tag: str, interval: str) -> Dict[str, Any]:
    """Trigger ``count`` runs tagged ``tag``, hand over, then wait until all are final."""
    total, every = int(count), float(interval)
    errors = 0
    if lib == "deploytrigger":
        from deploytrigger import Client, DeployTriggerError

        client = Client(api_url, pool_size=32)
        client.read_deployment_by_name(DEPLOYMENT)  # imports and a connection, as Prefect's warm-up
        calls = [
            (DEPLOYMENT, {"parameters": {"x": x}, "tags": [tag], "scheduled_time": FAR_FUTURE})
            for x in range(total)
        ]
        started = time.perf_counter()
        try:
            ids = [run.id for run in client.run_many(calls, max_workers=BATCH_WORKERS, timeout=0)]
        except DeployTriggerError:
            errors += 1
            ids = []
        trigger_seconds = time.perf_counter() - started

        def wait() -> Tuple[int, int]:
            done, not_done = client.wait_all(ids, timeout=600, poll_interval=every)
            return len(done), len(not_done)

    else:
        from prefect.client.orchestration import get_client

        trigger = _trigger_function(lib, api_url, BATCH_WORKERS)
        trigger(-1, tag + "-warmup")
        started = time.perf_counter()
        ids = []
        with ThreadPoolExecutor(max_workers=BATCH_WORKERS) as pool:
            futures = [pool.submit(trigger, x, tag) for x in range(total)]
            for future in futures:
                try:
                    ids.append(future.result())
                except Exception:
                    errors += 1
        trigger_seconds = time.perf_counter() - started
        prefect_client = get_client(sync_client=True)
        prefect_client.__enter__()

        def unfinished(run_id: Any) -> bool:
            return prefect_client.read_flow_run(run_id).state_type.value not in FINAL

        def wait() -> Tuple[int, int]:
            # What N run_deployment(timeout=...) calls cost: one read per pending run per
            # interval, here from the same 16 threads that triggered them.
            pending = list(ids)
            deadline = time.monotonic() + 600
            while pending and time.monotonic() < deadline:
                round_started = time.monotonic()
                with ThreadPoolExecutor(max_workers=BATCH_WORKERS) as readers:
                    still = list(readers.map(unfinished, pending))
                pending = [run_id for run_id, waiting in zip(pending, still) if waiting]
                if pending:
                    time.sleep(max(0.0, every - (time.monotonic() - round_started)))
            return len(ids) - len(pending), len(pending)

    _handshake()
    started = time.perf_counter()
    try:
        done, not_done = wait()
    except Exception:
        errors += 1
        done, not_done = 0, len(ids)
    return {
        "trigger_seconds": trigger_seconds,
        "wait_seconds": time.perf_counter() - started,
        "ids": [str(run_id) for run_id in ids],
        "done": done,
        "not_done": not_done,
        "errors": errors,
    }


CHILD_TASKS: Dict[str, Callable[..., Dict[str, Any]]] = {
    "threads": child_threads,
    "batch": child_batch,
}


def child_main(args: Sequence[str]) -> None:
    task, lib, api_url, *rest = args
    result = CHILD_TASKS[task](lib, api_url, *rest)
    print("RESULT " + json.dumps(result), flush=True)


# -- the parent side ----------------------------------------------------------------------------


class Runner:
    """Runs client subprocesses against the proxy and the simulated fleet against the server."""

    def __init__(self, stack: ProdStack, proxy: Proxy, home: str) -> None:
        self.stack = stack
        self.proxy = proxy
        self.home = home
        self.http = requests.Session()

    def env(self) -> Dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(
            PREFECT_API_URL=self.proxy.api_url,
            PREFECT_HOME=self.home,
            PREFECT_LOGGING_LEVEL="WARNING",
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
        )
        return env

    def child(
        self, args: Sequence[str], on_go: Callable[[], None] = lambda: None
    ) -> Tuple[Dict[str, Any], int, int]:
        """Run ``scale.py _child ARGS``; returns its result, requests before and after 'go'."""
        command = [sys.executable, str(Path(__file__).resolve()), "_child", *args]
        with subprocess.Popen(
            command,
            env=self.env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as process:
            assert process.stdin is not None and process.stdout is not None
            self.proxy.clear_received()
            ready = process.stdout.readline()
            if ready.strip() != "READY":
                process.kill()
                raise RuntimeError(f"{' '.join(args)}: {ready}{process.communicate()[1][-3000:]}")
            before = self.proxy.total()
            self.proxy.clear_received()
            on_go()
            process.stdin.write("go\n")
            process.stdin.flush()
            stdout, stderr = process.communicate(timeout=900)
        after = self.proxy.total()
        for line in stdout.splitlines():
            if line.startswith("RESULT "):
                return json.loads(line[len("RESULT ") :]), before, after
        raise RuntimeError(f"{' '.join(args)} failed:\n{stdout[-2000:]}\n{stderr[-4000:]}")

    def runs_with_tag(self, tag: str) -> List[Dict[str, Any]]:
        """Every run on the server carrying ``tag`` (paged by the server's limit of 200)."""
        runs: List[Dict[str, Any]] = []
        while True:
            body = {
                "flow_runs": {"tags": {"all_": [tag]}},
                "sort": "ID_DESC",
                "limit": 200,
                "offset": len(runs),
            }
            response = self.http.post(
                f"{self.stack.api_url}/flow_runs/filter", json=body, timeout=60
            )
            response.raise_for_status()
            page = response.json()
            runs.extend(page)
            if len(page) < 200:
                return runs

    def complete_all(self, ids: Sequence[str]) -> None:
        """The simulated fleet: set every run COMPLETED, 8 threads, straight to the server."""
        state = {"state": {"type": "COMPLETED", "name": "Completed"}, "force": True}

        def complete(run_id: str) -> None:
            for _ in range(5):
                response = self.http.post(
                    f"{self.stack.api_url}/flow_runs/{run_id}/set_state", json=state, timeout=60
                )
                if response.status_code < 300:
                    return
                time.sleep(0.5)
            response.raise_for_status()

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(complete, ids))


def measure_threads(runner: Runner, count: int, results: List[Dict[str, Any]]) -> None:
    for threads in THREADS:
        for lib in LIBS if threads % 2 else reversed(LIBS):
            tag = f"threads-{lib}-{threads}-{uuid.uuid4().hex[:6]}"
            print(f"  {lib:14} {threads:2} threads x {count} triggers ...", flush=True)
            result, _, requests_sent = runner.child(
                ["threads", lib, runner.proxy.api_url, str(threads), str(count), tag]
            )
            latencies = result["latencies"] or [float("nan")]
            results.append(
                {
                    "lib": lib,
                    "threads": threads,
                    "per_second": result["per_second"],
                    "p50_ms": percentile(latencies, 0.5) * 1000,
                    "p95_ms": percentile(latencies, 0.95) * 1000,
                    "requests_per_trigger": requests_sent / count,
                    "cpu_ms_per_trigger": result["cpu_per_trigger"] * 1000,
                    "errors": result["errors"],
                }
            )


def measure_batches(runner: Runner, sizes: Sequence[int], results: List[Dict[str, Any]]) -> None:
    for size in sizes:
        for lib in LIBS:
            tag = f"batch-{lib}-{size}-{uuid.uuid4().hex[:6]}"
            print(f"  {lib:14} batch of {size} runs ...", flush=True)
            fleet: List[threading.Thread] = []

            def start_fleet(tag: str = tag, fleet: List[threading.Thread] = fleet) -> None:
                ids = [run["id"] for run in runner.runs_with_tag(tag)]
                thread = threading.Thread(target=runner.complete_all, args=(ids,))
                fleet.append(thread)
                thread.start()

            result, before, waited = runner.child(
                ["batch", lib, runner.proxy.api_url, str(size), tag, str(POLL_INTERVAL)],
                on_go=start_fleet,
            )
            for thread in fleet:
                thread.join()
            on_server = runner.runs_with_tag(tag)
            xs = [run["parameters"].get("x") for run in on_server]
            unique = set(xs)
            results.append(
                {
                    "lib": lib,
                    "runs": size,
                    "trigger_seconds": result["trigger_seconds"],
                    "wait_seconds": result["wait_seconds"],
                    "total_seconds": result["trigger_seconds"] + result["wait_seconds"],
                    "trigger_requests": before,
                    "wait_requests": waited,
                    "errors": result["errors"] + result["not_done"],
                    "lost": size - len(unique & set(range(size))),
                    "duplicated": len(xs) - len(unique),
                    "ids_returned": len(set(result["ids"])),
                }
            )


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


# -- the report ---------------------------------------------------------------------------------


def rst_table(rows: List[List[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    border = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [border]
    for index, row in enumerate(rows):
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
        out.append(border.replace("-", "=") if index == 0 else border)
    return "\n".join(out)


def thread_rows(results: List[Dict[str, Any]]) -> List[List[str]]:
    rows = [
        [
            "threads",
            "client",
            "triggers/s",
            "p50 (ms)",
            "p95 (ms)",
            "requests/trigger",
            "client CPU/trigger (ms)",
            "errors",
        ]
    ]
    for r in results:
        rows.append(
            [
                str(r["threads"]),
                LABELS[r["lib"]],
                f"{r['per_second']:.0f}",
                f"{r['p50_ms']:.1f}",
                f"{r['p95_ms']:.1f}",
                f"{r['requests_per_trigger']:.2f}",
                f"{r['cpu_ms_per_trigger']:.2f}",
                str(r["errors"]),
            ]
        )
    return rows


def batch_rows(results: List[Dict[str, Any]]) -> List[List[str]]:
    rows = [
        [
            "runs",
            "client",
            "trigger (s)",
            "wait (s)",
            "total (s)",
            "requests to trigger",
            "requests while waiting",
            "errors",
            "lost",
            "duplicated",
        ]
    ]
    for r in results:
        rows.append(
            [
                str(r["runs"]),
                LABELS[r["lib"]],
                f"{r['trigger_seconds']:.1f}",
                f"{r['wait_seconds']:.1f}",
                f"{r['total_seconds']:.1f}",
                str(r["trigger_requests"]),
                str(r["wait_requests"]),
                str(r["errors"]),
                str(r["lost"]),
                str(r["duplicated"]),
            ]
        )
    return rows


def plot(threads: List[Dict[str, Any]], batches: List[Dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"deploytrigger": "tab:blue", "prefect": "tab:orange"}
    fig, axes = plt.subplots(2, 2, figsize=(11, 8.5))
    panels: List[Tuple[Any, List[Dict[str, Any]], str, str, str, bool]] = [
        (axes[0][0], threads, "threads", "per_second", "triggers/s (higher is better)", False),
        (axes[0][1], threads, "threads", "p95_ms", "p95 trigger latency, ms (log)", True),
        (axes[1][0], batches, "runs", "total_seconds", "trigger + wait, s (log)", True),
        (axes[1][1], batches, "runs", "wait_requests", "requests while waiting (log)", True),
    ]
    for axis, rows, x_key, y_key, title, log_y in panels:
        for lib in LIBS:
            points = sorted((r[x_key], r[y_key]) for r in rows if r["lib"] == lib)
            if not points:
                continue
            xs, ys = zip(*points)
            axis.plot(xs, ys, marker="o", color=colors[lib], label=LABELS[lib])
            for x, y in points:
                axis.annotate(
                    f"{y:.0f}" if y >= 10 else f"{y:.1f}",
                    (x, y),
                    textcoords="offset points",
                    xytext=(0, 6),
                    ha="center",
                    fontsize=8,
                    color=colors[lib],
                )
        axis.set_xscale("log")
        axis.set_xticks(sorted({r[x_key] for r in rows}))
        axis.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axis.minorticks_off()
        if log_y:
            axis.set_yscale("log")
            axis.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
            axis.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            axis.margins(y=0.12)
        else:
            axis.set_ylim(bottom=0, top=max(r[y_key] for r in rows) * 1.15)
        axis.set_xlabel("client threads" if x_key == "threads" else "runs in the batch")
        axis.set_title(title, fontsize=11)
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=9)
    fig.suptitle(
        "deploytrigger vs Prefect's run_deployment on PostgreSQL-backed Prefect 3.8.8",
        fontsize=13,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary(threads: List[Dict[str, Any]], batches: List[Dict[str, Any]]) -> List[str]:
    lines = []
    for n in THREADS:
        pair = {r["lib"]: r for r in threads if r["threads"] == n}
        if len(pair) == 2:
            ratio = pair["deploytrigger"]["per_second"] / pair["prefect"]["per_second"]
            lines.append(f"{n} threads: deploytrigger {ratio:.1f}x Prefect's triggers/s")
    for size in sorted({r["runs"] for r in batches}):
        pair = {r["lib"]: r for r in batches if r["runs"] == size}
        if len(pair) == 2:
            lines.append(
                f"{size} runs: total {pair['deploytrigger']['total_seconds']:.1f} s vs "
                f"{pair['prefect']['total_seconds']:.1f} s; requests while waiting "
                f"{pair['deploytrigger']['wait_requests']} vs {pair['prefect']['wait_requests']}"
            )
    return lines


def direct_child(args: Sequence[str], api_url: str, home: str) -> Dict[str, Any]:
    """Run ``scale.py _child ARGS`` against ``api_url`` with no proxy; returns its result."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_API_URL=api_url,
        PREFECT_HOME=home,
        PREFECT_LOGGING_LEVEL="WARNING",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    command = [sys.executable, str(Path(__file__).resolve()), "_child", *args]
    with subprocess.Popen(
        command,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdin is not None and process.stdout is not None
        ready = process.stdout.readline()
        if ready.strip() != "READY":
            process.kill()
            raise RuntimeError(f"{' '.join(args)}: {ready}{process.communicate()[1][-3000:]}")
        process.stdin.write("go\n")
        process.stdin.flush()
        stdout, stderr = process.communicate(timeout=900)
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            result: Dict[str, Any] = json.loads(line[len("RESULT ") :])
            return result
    raise RuntimeError(f"{' '.join(args)} failed:\n{stdout[-2000:]}\n{stderr[-4000:]}")


def measure_api_servers(
    counts: Sequence[int], reps: int, threads: int, triggers: int, home: str
) -> List[Dict[str, Any]]:
    """Triggers/s with each number of API servers, stacks up together, repetitions alternating."""
    env = {"PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false"}
    results: List[Dict[str, Any]] = []
    with contextlib.ExitStack() as stacks:
        started: Dict[int, ProdStack] = {}
        for count in counts:
            print(f"starting a stack with {count} API server(s) ...", flush=True)
            started[count] = stacks.enter_context(
                ProdStack(
                    FLOWS_SCRIPT,
                    workers=0,
                    api_servers=count,
                    deployments={DEPLOYMENT: DEPLOYMENTS[DEPLOYMENT]},
                    env=env,
                    startup_timeout=600,
                )
            )
        for rep in range(reps):
            for count in counts if rep % 2 == 0 else reversed(counts):
                stack = started[count]
                tag = f"servers-{count}-{rep}-{uuid.uuid4().hex[:6]}"
                print(f"  rep {rep + 1}/{reps}: {count} API server(s), {threads} threads ...")
                args = ["threads", "deploytrigger", stack.api_url, str(threads), str(triggers), tag]
                result = direct_child(args, stack.api_url, home)
                latencies = result["latencies"] or [float("nan")]
                results.append(
                    {
                        "api_servers": count,
                        "rep": rep,
                        "per_second": result["per_second"],
                        "p50_ms": percentile(latencies, 0.5) * 1000,
                        "errors": result["errors"],
                    }
                )
                print(f"    {result['per_second']:.1f} triggers/s", flush=True)
    return results


def servers_report(results: List[Dict[str, Any]], note: str) -> str:
    """The min/median/max table of :func:`measure_api_servers` and the ratios of the medians."""
    counts = sorted({result["api_servers"] for result in results})
    medians: Dict[int, float] = {}
    rows = [["API servers", "reps", "triggers/s min", "median", "max", "p50 ms (median)", "errors"]]
    for count in counts:
        mine = [result for result in results if result["api_servers"] == count]
        rates = sorted(result["per_second"] for result in mine)
        medians[count] = statistics.median(rates)
        rows.append(
            [
                f"{count}" + (" (nginx, Redis)" if count > 1 else " (direct)"),
                str(len(mine)),
                f"{rates[0]:.1f}",
                f"{medians[count]:.1f}",
                f"{rates[-1]:.1f}",
                f"{statistics.median(result['p50_ms'] for result in mine):.0f}",
                str(sum(result["errors"] for result in mine)),
            ]
        )
    ratios = [
        f"{count} vs {counts[0]} API server(s): {medians[count] / medians[counts[0]]:.2f}x "
        "(ratio of the medians)"
        for count in counts[1:]
    ]
    return "\n\n".join([rst_table(rows), "\n".join(f"- {line}" for line in ratios), note])


def main_api_servers(options: argparse.Namespace) -> None:
    counts = [int(part) for part in options.api_servers.split(",")]
    if options.reps < 3:
        raise SystemExit("--reps must be 3 or more (min/median/max)")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="deploytrigger-scale-") as home:
        results = measure_api_servers(counts, options.reps, options.threads, options.triggers, home)
    import deploytrigger

    note = (
        f"{time.strftime('%Y-%m-%d')}, {platform.system()} {platform.release()}, "
        f"{os.cpu_count()} CPUs (shared by every process of both stacks and the client), "
        f"load average {os.getloadavg()[0]:.1f} at the end, Python {platform.python_version()}, "
        f"deploytrigger {deploytrigger.__version__}, Prefect 3.8.8 on PostgreSQL 15, no workers; "
        f"{options.triggers} triggers (run_deployment timeout=0, runs scheduled in 2099) from "
        f"{options.threads} threads per repetition, {options.reps} repetitions alternating "
        f"between the stacks; {time.monotonic() - started:.0f} s."
    )
    text = servers_report(results, note)
    output = Path(options.servers_output)
    output.write_text(text + "\n")
    output.with_suffix(".json").write_text(
        json.dumps({"results": results, "note": note}, indent=1) + "\n"
    )
    print(text)
    print(f"written {output}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer triggers, batches to 500")
    parser.add_argument("--output", default=str(HERE / "scale_results.rst"))
    parser.add_argument("--plot", default=str(HERE / "scaling.png"))
    parser.add_argument(
        "--replot", action="store_true", help="redraw the plot from the output's .json only"
    )
    parser.add_argument(
        "--api-servers",
        help="compare triggers/s on stacks with these numbers of API servers, e.g. 1,2",
    )
    parser.add_argument("--reps", type=int, default=3, help="with --api-servers: repetitions")
    parser.add_argument("--threads", type=int, default=16, help="with --api-servers: threads")
    parser.add_argument(
        "--triggers", type=int, default=320, help="with --api-servers: triggers per repetition"
    )
    parser.add_argument("--servers-output", default=str(HERE / "scale_servers_results.rst"))
    options = parser.parse_args()
    if options.api_servers:
        main_api_servers(options)
        return
    if options.replot:
        saved = json.loads(Path(options.output).with_suffix(".json").read_text())
        plot(saved["threads"], saved["batches"], Path(options.plot))
        return
    count = 64 if options.quick else 160
    sizes = (100, 500) if options.quick else (100, 500, 2000)
    started = time.monotonic()
    thread_results: List[Dict[str, Any]] = []
    batch_results: List[Dict[str, Any]] = []
    env = {"PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false"}
    print("starting PostgreSQL, the Prefect server and 2 workers ...", flush=True)
    with contextlib.ExitStack() as stack_of:
        home = stack_of.enter_context(tempfile.TemporaryDirectory(prefix="deploytrigger-scale-"))
        stack = stack_of.enter_context(ProdStack(FLOWS_SCRIPT, workers=2, env=env))
        proxy = stack_of.enter_context(Proxy(stack.api_url))
        runner = Runner(stack, proxy, home)
        print("thread scaling ...", flush=True)
        measure_threads(runner, count, thread_results)
        print("batches ...", flush=True)
        measure_batches(runner, sizes, batch_results)
        server_version = requests.get(f"{stack.api_url}/admin/version", timeout=10).json()
    elapsed = time.monotonic() - started
    import deploytrigger

    note = (
        f"{'Quick run' if options.quick else 'Full run'}, {time.strftime('%Y-%m-%d')}, "
        f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, deploytrigger {deploytrigger.__version__}, Prefect "
        f"server and client {server_version} on PostgreSQL 15, 2 process workers; "
        f"{count} triggers per thread count after a warm-up, batches with "
        f"{BATCH_WORKERS} client threads and {POLL_INTERVAL:g} s poll interval; {elapsed:.0f} s."
    )
    text = "\n\n".join(
        [
            "Thread scaling (runs scheduled in 2099; requests counted at the server's proxy)",
            rst_table(thread_rows(thread_results)),
            "Batches: trigger N runs, then wait until a simulated fleet has completed them all",
            rst_table(batch_rows(batch_results)),
            note,
            "\n".join(f"- {line}" for line in summary(thread_results, batch_results)),
        ]
    )
    Path(options.output).write_text(text + "\n")
    Path(options.output).with_suffix(".json").write_text(
        json.dumps({"threads": thread_results, "batches": batch_results, "note": note}, indent=1)
    )
    plot(thread_results, batch_results, Path(options.plot))
    print(text)
    print(f"written {options.output} and {options.plot}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        child_main(sys.argv[2:])
    else:
        main()
