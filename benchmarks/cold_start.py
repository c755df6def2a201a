"""Cold start as whole processes: ``import deploytrigger`` + the first ``run_deployment``
against a raw ``requests`` script doing the same two requests.

Each sample is the wall time of a fresh interpreter (``python -c``), start to
exit, so that it includes what importing costs and what exiting costs. The two
scripts alternate (which goes first changes every pair), after one warm-up each
that writes the bytecode cache (in a temporary ``PYTHONPYCACHEPREFIX``, as a user's
installed package has one)::

    python -m benchmarks.cold_start [--pairs 15] [--fake]

Against a throwaway local Prefect server serving ``examples/flows.py`` by
default, or the fake Prefect API (``--fake``: no Prefect needed, less noise from
the server). Prints min / median / max of each and the ratio of the medians
(target: at most 1.25). See where the import time goes with
``python -X importtime -c "import deploytrigger; deploytrigger.run_deployment(...)"``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

HERE = Path(__file__).resolve().parent
FLOWS_SCRIPT = HERE.parent / "examples" / "flows.py"
TARGET = 1.25

SCRIPTS = {
    "deploytrigger": (
        "import deploytrigger\ndeploytrigger.run_deployment('add/add-dep', timeout=0)\n"
    ),
    "raw": (
        "import os, uuid, requests\n"
        "api, session = os.environ['PREFECT_API_URL'], requests.Session()\n"
        "deployment = session.get(api + '/deployments/name/add/add-dep', timeout=30).json()\n"
        "session.post(api + '/deployments/' + deployment['id'] + '/create_flow_run',\n"
        "             json={'idempotency_key': str(uuid.uuid4())}, timeout=30).raise_for_status()\n"
    ),
}


@contextlib.contextmanager
def server(fake: bool) -> Iterator[str]:
    """The API URL of a server with ``add/add-dep`` (runs stay scheduled or idle)."""
    if fake:
        from deploytrigger.testing import FakePrefect

        with FakePrefect(set_environment=False) as api:
            api.add_deployment("add/add-dep")
            api.set_outcome("add/add-dep", "SCHEDULED")
            yield api.api_url
        return
    from harness.local_server import LocalPrefect

    with LocalPrefect(FLOWS_SCRIPT, deployments=["add/add-dep"]) as prefect:
        yield prefect.api_url


def sample(script: str, env: Dict[str, str]) -> Tuple[float, float]:
    """Seconds a fresh interpreter takes to run ``script`` and exit: wall, and CPU
    (user + system, which a loaded machine disturbs less).

    A run that fails (the raw script does not retry a server's 503) is run again,
    up to five times: only whole, successful runs are measured.
    """
    for attempt in range(5):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-c", script], env=env)
        # A blocking wait: ``wait(timeout=...)`` polls every 50 ms, which rounds the
        # wall time of every sample up to the next poll. The timer is the safety net.
        watchdog = threading.Timer(120, process.kill)
        watchdog.start()
        returncode = process.wait()
        wall = time.perf_counter() - started
        watchdog.cancel()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if returncode == 0:
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            return wall, cpu
        print(f"(attempt {attempt + 1} failed with exit code {returncode}; again)")
    raise SystemExit(f"the script failed five times in a row:\n{script}")


def show(what: str, times: Dict[str, List[float]]) -> float:
    """Print min / median / max of each script and the ratios; the ratio of the medians."""
    for name, values in times.items():
        print(
            f"{what:<5} {name:<14} min {min(values):.3f}  median {statistics.median(values):.3f}  "
            f"max {max(values):.3f} s"
        )
    ratios = sorted(a / b for a, b in zip(times["deploytrigger"], times["raw"]))
    ratio = statistics.median(times["deploytrigger"]) / statistics.median(times["raw"])
    print(
        f"{what:<5} ratio of medians {ratio:.2f}x (target <= {TARGET}); per pair "
        f"min {ratios[0]:.2f} median {statistics.median(ratios):.2f} max {ratios[-1]:.2f}"
    )
    return ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=15)
    parser.add_argument("--fake", action="store_true", help="use the fake Prefect API")
    options = parser.parse_args()
    with server(options.fake) as api_url, tempfile.TemporaryDirectory() as cache:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.update(PREFECT_API_URL=api_url, PYTHONPYCACHEPREFIX=cache)
        env["PREFECT_HOME"] = os.path.join(cache, "prefect-home")
        for script in SCRIPTS.values():
            sample(script, env)  # warm-up: the bytecode cache
        walls: Dict[str, List[float]] = {name: [] for name in SCRIPTS}
        cpus: Dict[str, List[float]] = {name: [] for name in SCRIPTS}
        names = list(SCRIPTS)
        for pair in range(options.pairs):
            for name in names if pair % 2 == 0 else names[::-1]:
                wall, cpu = sample(SCRIPTS[name], env)
                walls[name].append(wall)
                cpus[name].append(cpu)
    ratio = show("wall", walls)
    show("cpu", cpus)
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
