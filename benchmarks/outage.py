"""What a wait does when the server goes away, at default settings, in real time.

One command, from the repository root (about 7 minutes; no Prefect needed)::

    .venv/bin/python -m benchmarks.outage

Two cases, each against the fake Prefect API (a real HTTP server on loopback):

- **never reached**: a client pointed at a port nothing listens on reads the
  deployments; printed: how long until the error, and after how many attempts;
- **dies mid-wait**: ``run_deployment`` waits for a run that stays Running, and
  the server stops 2 s into the wait; printed: every line the library logs at
  WARNING and INFO, stamped with the seconds since the server stopped, and how
  long until the wait raised.

docs/guides/reliability.rst ("When the server goes away") quotes its figures.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

import deploytrigger
from deploytrigger.testing import FakePrefect


def never_reached() -> None:
    with socket.socket() as sock:  # a free port, closed again: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    with deploytrigger.Client(f"http://127.0.0.1:{port}/api") as client:
        try:
            client.read_deployments()
        except deploytrigger.ConnectionFailedError as exc:
            took = time.monotonic() - started
            print(f"never reached: raised after {took:.1f} s, {exc.attempts} attempts: {exc}")


def dies_mid_wait() -> None:
    fake = FakePrefect(set_environment=False).start()
    fake.add_deployment("outage/waits")
    fake.set_outcome("outage/waits", "RUNNING")
    stopped = [0.0]

    class Stamped(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            since = time.monotonic() - stopped[0] if stopped[0] else 0.0
            print(f"  [{since:6.1f} s] {record.levelname} {record.getMessage()}", flush=True)

    logger = logging.getLogger("deploytrigger")
    logger.addHandler(Stamped(logging.INFO))
    logger.setLevel(logging.INFO)

    def stop_soon() -> None:
        time.sleep(2)
        fake.stop()
        stopped[0] = time.monotonic()
        print("  [   0.0 s] the server stopped", flush=True)

    with deploytrigger.Client(fake.api_url) as client:
        threading.Thread(target=stop_soon, daemon=True).start()
        try:
            client.run_deployment("outage/waits")
        except deploytrigger.DeployTriggerError as exc:
            took = time.monotonic() - stopped[0]
            print(
                f"dies mid-wait: raised {took:.1f} s after the server stopped: {type(exc).__name__}"
            )


def main() -> None:
    never_reached()
    print("dies mid-wait (about 6.5 minutes):")
    dies_mid_wait()


if __name__ == "__main__":
    main()
