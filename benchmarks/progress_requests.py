"""Requests of a 200-run ``run_many`` with and without its progress view.

The view renders the runs each poll read: it must add no request. Against the
fake Prefect API (loopback HTTP, runs that complete ``--after`` seconds after
they are created, events off so that polls alone drive the wait), each mode
runs ``--rounds`` times, alternating, and the requests the fake received are
counted by endpoint::

    python -m benchmarks.progress_requests [--runs 200] [--rounds 3] [--after 4]

Last, what one render costs in this process: the notebook view's HTML and the
terminal's line for ``--runs`` runs (mean of 200 renders).

With ``progress=True`` outside a notebook the view is the progress line on
stderr (sent to a buffer here); in a kernel it is the notebook's display,
rendered from the same calls. A difference of one poll between two rounds is
the wall clock (a poll that came just before or after the runs ended), not the
view: compare the rounds of each mode with each other too.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import sys
import timeit
import uuid
from collections import Counter
from datetime import datetime, timezone
from typing import Dict, List, Optional, Sequence, Tuple

from deploytrigger import Client
from deploytrigger.testing import FakePrefect

DEPLOYMENT = "batch/progress"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def one_round(runs: int, after: float, progress: bool) -> Dict[str, int]:
    """The requests of one ``run_many`` of ``runs`` runs, by ``METHOD /path``."""
    with FakePrefect(set_environment=False) as fake:
        fake.add_deployment(DEPLOYMENT)
        fake.set_outcome(DEPLOYMENT, "COMPLETED", after=after)
        line = io.StringIO()
        with Client(fake.api_url, events="off") as client, contextlib.redirect_stderr(line):
            finished = client.run_many(
                [DEPLOYMENT] * runs, poll_interval=1, timeout=120, progress=progress
            )
        assert all(run.state is not None and run.state.is_completed() for run in finished)
        assert (line.getvalue() != "") is progress, "the view showed (or hid) as asked"
        paths = Counter(f"{r.method} {UUID.sub('{id}', r.path)}" for r in fake.requests)
    return dict(paths)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.progress_requests")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--after", type=float, default=4.0)
    options = parser.parse_args(argv)
    totals: Dict[bool, List[int]] = {False: [], True: []}
    for index in range(options.rounds * 2):
        progress = index % 2 == 1
        counts = one_round(options.runs, options.after, progress)
        totals[progress].append(sum(counts.values()))
        shown = ", ".join(f"{path}: {count}" for path, count in sorted(counts.items()))
        print(f"progress={progress!s:<5} {sum(counts.values())} requests ({shown})", flush=True)
    for progress, values in totals.items():
        print(f"progress={progress!s:<5} requests per round: {values}")
    html, line = render_seconds(options.runs)
    print(f"one render of {options.runs} runs: notebook {html * 1e3:.2f} ms, ", end="")
    print(f"line {line * 1e3:.2f} ms")
    return 0


def render_seconds(runs: int, renders: int = 200) -> Tuple[float, float]:
    """Mean seconds to build the notebook view's HTML and the terminal line for ``runs`` runs."""
    from deploytrigger import FlowRun
    from deploytrigger._progress import notebook, terminal
    from deploytrigger._progress.snapshot import Snapshot

    states = ("RUNNING", "COMPLETED", "FAILED")
    shown = tuple(
        FlowRun.from_json(
            {
                "id": str(uuid.uuid4()),
                "name": f"run-{index}",
                "flow_id": str(uuid.uuid4()),
                "state": {"type": states[index % 3], "name": states[index % 3].title()},
                "start_time": "2026-12-05T18:00:00+00:00",
            },
            api_url="http://127.0.0.1:4200/api",
        )
        for index in range(runs)
    )
    snapshot = Snapshot(shown, 5.0, datetime.now(timezone.utc))
    html = timeit.timeit(lambda: notebook.view_html(snapshot), number=renders) / renders
    line = timeit.timeit(lambda: terminal.line(snapshot), number=renders) / renders
    return html, line


if __name__ == "__main__":
    sys.exit(main())
