"""The harness's processes (harness.processes): started, waited for, stopped by pid."""

from __future__ import annotations

import os
import sys
from importlib import metadata
from pathlib import Path
from typing import List

import pytest

from harness.processes import Harness, Service, system_program

PYTHON = [sys.executable, "-c"]
ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


class Three(Harness):
    """Three sleeping services; the third one exits at once when ``fail`` is set."""

    def __init__(self, tmp_path: Path, fail: bool = False) -> None:
        self.tmp_path = tmp_path
        self.fail = fail
        self.stopped: List[str] = []
        self.pids: List[int] = []

    def _start(self) -> None:
        for name in ("first", "second", "third"):
            failing = self.fail and name == "third"
            code = "raise SystemExit(3)" if failing else "import time; time.sleep(60)"
            self.on_stop(self.stopped.append, name)
            log = self.tmp_path / f"{name}.log"
            ready = (lambda: False) if failing else None  # a failing one is never ready
            service = self.run(Service(name, [*PYTHON, code], ENV, log, ready=ready))
            assert service.pid is not None
            self.pids.append(service.pid)


def test_a_harness_stops_its_processes_by_pid_the_last_started_first(tmp_path: Path) -> None:
    with Three(tmp_path) as three:
        assert three.started and not any(gone(pid) for pid in three.pids)
    assert three.stopped == ["third", "second", "first"]
    assert all(gone(pid) for pid in three.pids) and not three.started


def test_a_failed_start_stops_what_had_started_and_shows_the_log(tmp_path: Path) -> None:
    three = Three(tmp_path, fail=True)
    with pytest.raises(RuntimeError, match=r"third: .*non-zero code: 3"):
        three.start()
    assert three.stopped == ["third", "second", "first"]
    assert len(three.pids) == 2 and all(gone(pid) for pid in three.pids)


MIRAKURU_MAJOR = int(metadata.version("mirakuru").split(".")[0])


@pytest.mark.skipif(
    MIRAKURU_MAJOR < 3,
    reason="mirakuru 2 (Python 3.8, 3.9) always merges this process's environment; the "
    "harness's servers run on .venv's Python, with mirakuru 3",
)
def test_a_service_waits_until_ready_and_gets_exactly_its_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_PROFILE", "the-users-own")
    marker = tmp_path / "ready"
    code = (
        "import json, os, pathlib, time; print(json.dumps(sorted(os.environ)), flush=True); "
        f"time.sleep(1); pathlib.Path({str(marker)!r}).touch(); time.sleep(60)"
    )
    with Service("env", [*PYTHON, code], {**ENV, "OURS": "1"}, tmp_path / "env.log",
                 ready=marker.exists) as service:  # fmt: skip
        assert marker.exists()
        pid = service.pid
    assert pid is not None and gone(pid)
    names = (tmp_path / "env.log").read_text()
    assert '"OURS"' in names and "PREFECT_PROFILE" not in names


def test_a_service_not_ready_in_time_is_killed_and_its_log_shown(tmp_path: Path) -> None:
    code = "print('still booting', flush=True); import time; time.sleep(60)"
    service = Service("slow", [*PYTHON, code], ENV, tmp_path / "slow.log", ready=lambda: False,
                      timeout=2)  # fmt: skip
    with pytest.raises(RuntimeError, match=r"(?s)slow: .*timed out after 2 seconds.*still booting"):
        service.start()
    assert not service.running()


def test_a_missing_system_program_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr("harness.processes.SEARCH_PATH", [])
    with pytest.raises(RuntimeError, match=r"make system-packages.*apt-get install -y postgresql"):
        system_program("initdb")
