"""deploytrigger side by side with Prefect's own client and a raw ``requests`` loop.

One command (``make bench``): starts a throwaway Prefect server serving
``examples/flows.py``, measures every figure for the three clients in the
same run, prints a table and writes ``benchmarks/results.rst``::

    .venv/bin/python -m benchmarks.run [--quick] [--only module-level]

Each measurement runs in a fresh subprocess (``worker.py``) so that no client
pays for another's imports. Cold figures come in two kinds: the import alone,
and a whole script (import, make a client, trigger one run by name with
``timeout=0``), since deferring imports only moves their cost to first use.
Client CPU per trigger is ``time.process_time`` of the client process over
sequential steady-state triggers; its raw-requests floor is one prebuilt
``POST create_flow_run`` per trigger. Figures are min / median / max over repetitions;
the machine is small and noisy, so read the ratios. The server's late-runs
service is off: thousands of far-future runs would otherwise keep it busy.

A second table puts the module-level ``deploytrigger.run_deployment`` (the
default client) beside a reused ``Client``: requests per steady-state trigger
counted at a proxy, p50 and CPU per trigger. ``--only module-level`` measures
just that table and rewrites only its part of ``results.rst``.
"""

from __future__ import annotations

import argparse
import atexit
import compileall
import contextlib
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from harness.local_server import LocalPrefect
from harness.postgres import postgres
from harness.proxy import Proxy

HERE = Path(__file__).resolve().parent
FLOWS_SCRIPT = HERE.parent / "examples" / "flows.py"
SERVED = ("add/add-dep", "echo/echo-dep")

LIBS = ("deploytrigger", "prefect", "raw")
LABELS = {"deploytrigger": "deploytrigger", "prefect": "Prefect 3.8.8", "raw": "raw requests"}
IMPORTS = {
    "deploytrigger": "import deploytrigger",
    "prefect": "from prefect.deployments import run_deployment",
    "raw": "import requests",
}
COLD_STARTS = {
    # A whole script, cold: import, make a client, trigger one run (timeout=0), by name.
    "deploytrigger": (
        "import deploytrigger\n"
        "client = deploytrigger.Client()\n"
        "client.run_deployment('add/add-dep', timeout=0, scheduled_time=FAR_FUTURE)"
    ),
    "prefect": (
        "from prefect.deployments import run_deployment\n"
        "run_deployment('add/add-dep', timeout=0, scheduled_time=FAR_FUTURE)"
    ),
    "raw": (
        "import os, uuid, requests\n"
        "api, session = os.environ['PREFECT_API_URL'], requests.Session()\n"
        "deployment = session.get(api + '/deployments/name/add/add-dep', timeout=30).json()\n"
        "state = {'type': 'SCHEDULED', 'name': 'Scheduled',\n"
        "         'state_details': {'scheduled_time': FAR_FUTURE.isoformat()}}\n"
        "session.post(api + '/deployments/' + deployment['id'] + '/create_flow_run',\n"
        "             json={'state': state, 'idempotency_key': str(uuid.uuid4())},\n"
        "             timeout=30).raise_for_status()"
    ),
}
IMPORT_SNIPPET = """
import datetime, json, time
FAR_FUTURE = datetime.datetime(2099, 1, 1, tzinfo=datetime.timezone.utc)
started = time.perf_counter()
{statement}
elapsed = time.perf_counter() - started
with open("/proc/self/status") as status:
    rss_kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
print(json.dumps({{"seconds": elapsed, "rss_mib": rss_kib / 1024}}))
"""
WAITING_RUNS = 500
FAR_FUTURE = datetime.datetime(2099, 1, 1, tzinfo=datetime.timezone.utc)
POLL_INTERVAL = 2.0


class Bench:
    """The server, the environment for workers, and the collected samples."""

    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.home = tempfile.mkdtemp(prefix="deploytrigger-bench-")
        self.samples: Dict[Tuple[str, str], List[float]] = {}

    def env(self, api_url: str) -> Dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(
            PREFECT_API_URL=api_url,
            PREFECT_HOME=self.home,
            PREFECT_LOGGING_LEVEL="WARNING",
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
        )
        return env

    def add(self, figure: str, lib: str, value: float) -> None:
        self.samples.setdefault((figure, lib), []).append(value)

    def worker(self, lib: str, task: str, api_url: str, *args: object) -> Dict[str, Any]:
        command = [sys.executable, str(HERE / "worker.py"), lib, task, api_url]
        done = subprocess.run(
            command + [str(a) for a in args],
            env=self.env(api_url),
            capture_output=True,
            text=True,
            timeout=600,
        )
        return _result(done.stdout, done.stderr, command)

    def counted_worker(
        self, proxy: Proxy, lib: str, task: str, *args: object
    ) -> Tuple[Dict[str, Any], int]:
        """Run a worker task against ``proxy``: its result, and the requests the proxy
        received after the worker printed ``READY`` (its warm-up is not counted)."""
        command = [sys.executable, str(HERE / "worker.py"), lib, task, proxy.api_url]
        with subprocess.Popen(
            command + [str(a) for a in args],
            env=self.env(proxy.api_url),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as child:
            assert child.stdin is not None and child.stdout is not None
            ready = child.stdout.readline()
            if ready.strip() != "READY":
                child.kill()
                raise RuntimeError(f"{lib} {task} worker: {ready}{child.communicate()[1]}")
            proxy.clear_received()
            child.stdin.write("go\n")
            child.stdin.flush()
            stdout, stderr = child.communicate(timeout=600)
        return _result(stdout, stderr, command), proxy.total()


def _result(stdout: str, stderr: str, command: Sequence[str]) -> Dict[str, Any]:
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            result: Dict[str, Any] = json.loads(line[len("RESULT ") :])
            return result
    raise RuntimeError(f"{' '.join(command)} failed:\n{stdout[-2000:]}\n{stderr[-4000:]}")


def rotated(rep: int) -> List[str]:
    """The libraries in a different order each repetition, so no one always goes first."""
    return [LIBS[(rep + i) % len(LIBS)] for i in range(len(LIBS))]


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


# -- the measurements ------------------------------------------------------------------------


def measure_imports(bench: Bench, reps: int) -> None:
    for rep in range(reps):
        for lib in rotated(rep):
            code = IMPORT_SNIPPET.format(statement=IMPORTS[lib])
            done = subprocess.run(
                [sys.executable, "-c", code],
                env=bench.env("http://127.0.0.1:9/api"),
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            )
            result = json.loads(done.stdout)
            bench.add("import", lib, result["seconds"])
            bench.add("rss", lib, result["rss_mib"])


def measure_cold_start(bench: Bench, api_url: str, reps: int) -> None:
    """A fresh interpreter imports, makes a client and triggers one run: seconds and RSS."""
    for rep in range(reps):
        for lib in rotated(rep):
            code = IMPORT_SNIPPET.format(statement=COLD_STARTS[lib])
            done = subprocess.run(
                [sys.executable, "-c", code],
                env=bench.env(api_url),
                capture_output=True,
                text=True,
                timeout=120,
            )
            result = json.loads(_last_line(done, lib))
            bench.add("cold_start", lib, result["seconds"])
            bench.add("cold_start_rss", lib, result["rss_mib"])


def _last_line(done: subprocess.CompletedProcess[str], what: str) -> str:
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(
            f"{what} cold start failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
        )
    return done.stdout.strip().splitlines()[-1]


def measure_cpu(bench: Bench, api_url: str, reps: int, count: int) -> None:
    """Client CPU per steady-state trigger; the raw floor is one prebuilt POST (issue 7)."""
    for rep in range(reps):
        ratios = {}
        for lib in rotated(rep):
            result = bench.worker(lib, "cpu", api_url, count)
            ratios[lib] = result["cpu_per_trigger"]
            bench.add("cpu", lib, result["cpu_per_trigger"] * 1e6)
        bench.add("cpu_ratio", "deploytrigger", ratios["deploytrigger"] / ratios["raw"])


def measure_latency(bench: Bench, api_url: str, reps: int, count: int) -> None:
    for rep in range(reps):
        for lib in rotated(rep):
            seconds = bench.worker(lib, "latency", api_url, count)["seconds"]
            bench.add("p50", lib, percentile(seconds, 0.5) * 1000)
            bench.add("p95", lib, percentile(seconds, 0.95) * 1000)


def measure_fanout(bench: Bench, api_url: str, reps: int, count: int) -> None:
    for rep in range(reps):
        for lib in rotated(rep):
            result = bench.worker(lib, "fanout", api_url, count, 16)
            bench.add("fanout", lib, result["per_second"])


def measure_polling(bench: Bench, api_url: str) -> None:
    from deploytrigger import Client

    with Client(api_url) as client:
        deployment = client.read_deployment_by_name("echo/echo-dep")
        runs = client.run_many(
            [(deployment.id, {"scheduled_time": FAR_FUTURE})] * WAITING_RUNS,
            max_workers=8,
            timeout=0,
        )
    ids_file = Path(bench.home) / "waiting-ids.json"
    ids_file.write_text(json.dumps([str(run.id) for run in runs]))
    with Proxy(api_url) as proxy:
        for lib in LIBS:
            rounds = 3 if lib == "deploytrigger" else 2
            args = [str(ids_file), str(POLL_INTERVAL), rounds]
            result, requests = bench.counted_worker(proxy, lib, "poll", *args)
            bench.add("requests_per_poll", lib, requests / result["polls"])
            bench.add("seconds_per_poll", lib, result["seconds"] / result["polls"])


def measure_completion(bench: Bench, api_url: str, reps: int) -> None:
    for rep in range(reps):
        for lib in rotated(rep):
            for seconds in bench.worker(lib, "complete", api_url, 1, 1.0)["seconds"]:
                bench.add("completion", lib, seconds)


def measure_module_level(bench: Bench, api_url: str, reps: int, count: int) -> None:
    """The module-level ``deploytrigger.run_deployment`` beside a reused Client, Prefect, raw.

    Requests per steady-state trigger are counted at a proxy (sequential and
    16 threads, after each worker's warm-up); p50 and CPU per trigger as in the
    main table. Ratios to the reused Client are taken within each repetition.
    """
    with Proxy(api_url) as proxy:
        for rep in range(reps):
            p50: Dict[str, float] = {}
            cpu: Dict[str, float] = {}
            for lib in [MODULE_LIBS[(rep + i) % len(MODULE_LIBS)] for i in range(4)]:
                for threads, key in ((1, "m_requests"), (16, "m_requests16")):
                    _, requests = bench.counted_worker(proxy, lib, "count", count, threads)
                    bench.add(key, lib, requests / count)
                seconds = bench.worker(lib, "latency", api_url, count)["seconds"]
                p50[lib] = percentile(seconds, 0.5) * 1000
                bench.add("m_p50", lib, p50[lib])
                cpu[lib] = bench.worker(lib, "cpu", api_url, 3 * count)["cpu_per_trigger"] * 1e6
                bench.add("m_cpu", lib, cpu[lib])
            bench.add("m_p50_ratio", "module", p50["module"] / p50["deploytrigger"])
            bench.add("m_cpu_ratio", "module", cpu["module"] / cpu["deploytrigger"])


# -- the report --------------------------------------------------------------------------------

Row = Tuple[str, str, str, Optional[Callable[[Dict[str, float]], str]]]

ROWS: List[Row] = [
    ("import", "cold import time (s)", "{:.3f}", lambda m: _ratio(m, "prefect", "≤ 0.10")),
    ("rss", "RSS after import (MiB)", "{:.1f}", lambda m: _ratio(m, "prefect", "≤ 0.25")),
    (
        "cold_start",
        "cold start: import + Client() + first trigger (s)",
        "{:.3f}",
        lambda m: _ratio(m, "prefect", "") + "; " + _ratio(m, "raw", ""),
    ),
    (
        "cold_start_rss",
        "RSS after the first trigger (MiB)",
        "{:.1f}",
        lambda m: _ratio(m, "prefect", "") + "; " + _ratio(m, "raw", ""),
    ),
    (
        "cpu",
        "client CPU per steady-state trigger (µs)",
        "{:.0f}",
        lambda m: _ratio(m, "raw", "≤ 1.2") + "; " + _ratio(m, "prefect", ""),
    ),
    ("p50", "sequential trigger p50 (ms)", "{:.1f}", lambda m: _ratio(m, "prefect", "")),
    ("p95", "sequential trigger p95 (ms)", "{:.1f}", lambda m: _ratio(m, "prefect", "")),
    (
        "fanout",
        "fan-out, 16 threads (triggers/s)",
        "{:.0f}",
        lambda m: _ratio(m, "raw", "≥ 0.9") + "; " + _ratio(m, "prefect", "> 1"),
    ),
    (
        "requests_per_poll",
        f"requests per poll interval, {WAITING_RUNS} runs waiting",
        "{:.0f}",
        lambda m: f"target ≤ 3: {'met' if m['deploytrigger'] <= 3 else 'MISSED'}",
    ),
    ("seconds_per_poll", "seconds per poll round (2 s interval)", "{:.2f}", None),
    ("completion", "run end → waiter returns (s), 1 s polls", "{:.2f}", None),
]


MODULE_LIBS = ("module", "deploytrigger", "prefect", "raw")
MODULE_LABELS = {
    "module": "deploytrigger.run_deployment",
    "deploytrigger": "reused Client",
    "prefect": "Prefect 3.8.8",
    "raw": "raw requests",
}
SHORT = {"deploytrigger": "Client", "module": "run_deployment"}
"""Short names in the verdicts where the label's first word would not do."""
MODULE_HEADING = "Module-level functions (the default client)"


def _requests_target(medians: Dict[str, float]) -> str:
    met = medians["module"] <= 1.05
    return _ratio(medians, "deploytrigger", "", "module") + (
        f" (target ≤ 1.05 per trigger: {'met' if met else 'MISSED'})"
    )


MODULE_ROWS: List[Row] = [
    ("m_requests", "requests per steady-state trigger, sequential", "{:.2f}", _requests_target),
    ("m_requests16", "requests per steady-state trigger, 16 threads", "{:.2f}", _requests_target),
    (
        "m_p50",
        "sequential trigger p50 (ms)",
        "{:.1f}",
        lambda m: (
            _ratio(m, "deploytrigger", "", "module") + "; " + _ratio(m, "prefect", "", "module")
        ),
    ),
    (
        "m_cpu",
        "client CPU per steady-state trigger (µs)",
        "{:.0f}",
        lambda m: _ratio(m, "deploytrigger", "", "module") + "; " + _ratio(m, "raw", "", "module"),
    ),
]


def module_section(bench: Bench, command: str, quick: bool, seconds: float, database: bool) -> str:
    """The module-level table with its heading and note, as RST."""
    rows = table(bench, MODULE_LIBS, MODULE_ROWS, MODULE_LABELS, "module")
    note = (
        f"{'Quick run' if quick else 'Run'} of ``{command}`` on "
        f"{_machine()}, Prefect server on {'PostgreSQL' if database else 'SQLite'}; "
        f"{seconds:.0f} s. Cells: median (min..max) over repetitions. Requests are counted "
        "at a proxy after each worker's warm-up; raw requests resolves the name on every "
        "trigger except in the CPU row (one prebuilt POST). Within each repetition, "
        "run_deployment / reused Client: p50 "
        f"{cell(bench.samples.get(('m_p50_ratio', 'module'), []), '{:.2f}')}, CPU "
        f"{cell(bench.samples.get(('m_cpu_ratio', 'module'), []), '{:.2f}')}."
    )
    title = MODULE_HEADING
    return f"{title}\n{'-' * len(title)}\n\n{render_rst(rows)}\n\n{note}\n"


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    return (
        f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs ({cpu}), "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}"
    )


def write_results(path: Path, main_part: Optional[str], module_part: Optional[str]) -> None:
    """Write the parts measured into ``path``, keeping the parts of an earlier run."""
    old = path.read_text() if path.exists() else ""
    marker = f"\n{MODULE_HEADING}\n"
    old_main, _, old_module = old.partition(marker)
    main_text = main_part if main_part is not None else old_main.rstrip("\n") + "\n"
    if module_part is None:
        module_part = MODULE_HEADING + "\n" + old_module if old_module else ""
    path.write_text(main_text + ("\n" + module_part if module_part else ""))


def _ratio(
    medians: Dict[str, float], other: str, target: str, subject: str = "deploytrigger"
) -> str:
    ratio = medians[subject] / medians[other]
    text = f"{ratio:.2f}x {SHORT.get(other, LABELS[other].split()[0])}"
    if not target:
        return text
    bound = float(target.split()[-1])
    met = (
        ratio <= bound
        if target.startswith("≤")
        else ratio >= bound
        if "≥" in target
        else ratio > bound
    )
    return f"{text} (target {target}: {'met' if met else 'MISSED'})"


def cell(values: List[float], fmt: str) -> str:
    if not values:
        return "-"
    middle = fmt.format(statistics.median(values))
    if len(values) == 1:
        return middle
    return f"{middle} ({fmt.format(min(values))}..{fmt.format(max(values))})"


def table(
    bench: Bench,
    libs: Sequence[str] = LIBS,
    rows_wanted: Sequence[Row] = ROWS,
    labels: Optional[Dict[str, str]] = None,
    subject: str = "deploytrigger",
) -> List[List[str]]:
    names = labels or LABELS
    rows = [["figure", *(names[lib] for lib in libs), f"{names[subject]} vs"]]
    for key, title, fmt, compare in rows_wanted:
        values = {lib: bench.samples.get((key, lib), []) for lib in libs}
        if not any(values.values()):
            continue
        medians = {lib: statistics.median(v) for lib, v in values.items() if v}
        verdict = compare(medians) if compare and len(medians) == len(libs) else ""
        rows.append([title, *(cell(values[lib], fmt) for lib in libs), verdict])
    return rows


def render_rst(rows: List[List[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    border = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    header = border.replace("-", "=")
    out = [border]
    for index, row in enumerate(rows):
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
        out.append(header if index == 0 else border)
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (~3 minutes)")
    parser.add_argument("--output", default=str(HERE / "results.rst"), help="the RST table")
    parser.add_argument("--sqlite", action="store_true", help="SQLite even if PostgreSQL is here")
    parser.add_argument(
        "--only",
        choices=["module-level"],
        help="measure one section and update only its part of the output (~11 minutes)",
    )
    options = parser.parse_args()
    quick = options.quick
    everything = options.only is None
    bench = Bench(quick)
    atexit.register(shutil.rmtree, bench.home, True)
    started = time.monotonic()
    # pip compiles a package's bytecode when it installs it, as it did for requests and
    # Prefect here; an editable checkout has none, and with PYTHONDONTWRITEBYTECODE set
    # every cold start would compile deploytrigger's sources again. Compile them once.
    compileall.compile_dir(str(HERE.parent / "deploytrigger"), quiet=1)
    if everything:
        print("measuring imports ...", flush=True)
        measure_imports(bench, 3 if quick else 7)
    print("starting a local Prefect server ...", flush=True)
    env = {"PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false"}
    with contextlib.ExitStack() as stack:
        # SQLite answers 16 concurrent writers with 503s: PostgreSQL unless --sqlite.
        database = None if options.sqlite else stack.enter_context(postgres())
        if database:
            env["PREFECT_API_DATABASE_CONNECTION_URL"] = database
        server = stack.enter_context(LocalPrefect(FLOWS_SCRIPT, deployments=SERVED, env=env))
        api_url = server.api_url
        if everything:
            measure_main_table(bench, api_url, quick)
        print("module-level run_deployment beside a reused Client ...", flush=True)
        module_started = time.monotonic()
        measure_module_level(bench, api_url, 2 if quick else 5, 30 if quick else 100)
        module_seconds = time.monotonic() - module_started
    command = "python -m benchmarks.run" + (" --quick" if quick else "")
    if not everything:
        command += f" --only {options.only}"
    section = module_section(bench, command, quick, module_seconds, bool(database))
    main_part = None
    if everything:
        rendered = render_rst(table(bench))
        cpu = platform.processor() or platform.machine()
        note = (
            f"{'Quick run' if quick else 'Full run'} on {platform.system()} "
            f"{platform.release()}, {os.cpu_count()} CPUs ({cpu}), Python "
            f"{platform.python_version()}, {time.strftime('%Y-%m-%d')}, Prefect server on "
            f"{'PostgreSQL' if database else 'SQLite'}; {time.monotonic() - started:.0f} s. "
            "Cells: median (min..max) over repetitions."
        )
        paired = bench.samples.get(("cpu_ratio", "deploytrigger"))
        if paired:
            note += (
                " CPU per trigger, deploytrigger / raw requests within each repetition: "
                f"{cell(paired, '{:.2f}')} (target ≤ 1.2: "
                f"{'met' if statistics.median(paired) <= 1.2 else 'MISSED'})."
            )
        main_part = rendered + "\n\n" + note + "\n"
        print()
        print(main_part)
    print()
    print(section)
    write_results(Path(options.output), main_part, section)
    print(f"written to {options.output}")


def measure_main_table(bench: Bench, api_url: str, quick: bool) -> None:
    """Every figure of the main table but the imports."""
    print("cold starts: import + Client() + one trigger ...", flush=True)
    measure_cold_start(bench, api_url, 3 if quick else 7)
    print("client CPU per trigger ...", flush=True)
    measure_cpu(bench, api_url, 3 if quick else 5, 100 if quick else 300)
    print("sequential triggers ...", flush=True)
    measure_latency(bench, api_url, 1 if quick else 3, 30 if quick else 100)
    print("fan-out ...", flush=True)
    measure_fanout(bench, api_url, 1 if quick else 3, 96 if quick else 320)
    print(f"polling {WAITING_RUNS} waiting runs through a counting proxy ...", flush=True)
    measure_polling(bench, api_url)
    print("completion to return ...", flush=True)
    measure_completion(bench, api_url, 2 if quick else 5)


if __name__ == "__main__":
    main()
