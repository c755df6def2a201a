"""Server environments for the version matrix: made once, reused, rebuilt when the pins change."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List

import pytest

from harness import server_venv
from harness.local_server import prefect_command, server_command


@pytest.fixture
def pins(tmp_path: Path) -> Path:
    directory = tmp_path / "servers"
    directory.mkdir()
    (directory / "prefect-2.20.25.txt").write_text("anyio==4.4.0\n")
    return directory


@pytest.fixture
def commands(monkeypatch: pytest.MonkeyPatch) -> List[List[str]]:
    """The commands run instead of running them; ``venv`` leaves a python behind."""
    ran: List[List[str]] = []

    def fake_run(command: List[str], log_path: Path) -> None:
        ran.append(command)
        if command[1:3] == ["-m", "venv"]:
            python = server_venv.venv_python(Path(command[3]))
            python.parent.mkdir(parents=True)
            python.write_text("")

    monkeypatch.setattr(server_venv, "_run", fake_run)
    return ran


def test_an_environment_is_created_once_and_then_reused(
    tmp_path: Path, pins: Path, commands: List[List[str]]
) -> None:
    root = tmp_path / "venvs"
    python = server_venv.server_python("2.20.25", root, pins)
    assert python == root / "prefect-2.20.25" / "bin" / "python" and python.exists()
    venv, install = commands
    assert venv == [sys.executable, "-m", "venv", str(root / "prefect-2.20.25")]
    assert install[:4] == [str(python), "-m", "pip", "install"]
    assert install[-3:] == ["prefect==2.20.25", "-r", str(pins / "prefect-2.20.25.txt")]
    assert server_venv.server_python("2.20.25", root, pins) == python
    assert len(commands) == 2


def test_changed_pins_rebuild_the_environment(
    tmp_path: Path, pins: Path, commands: List[List[str]]
) -> None:
    root = tmp_path / "venvs"
    server_venv.server_python("2.20.25", root, pins)
    (root / "prefect-2.20.25" / "leftover").write_text("old")
    (pins / "prefect-2.20.25.txt").write_text("anyio==4.3.0\n")
    server_venv.server_python("2.20.25", root, pins)
    assert len(commands) == 4
    assert not (root / "prefect-2.20.25" / "leftover").exists()


def test_a_version_without_pins_is_refused(tmp_path: Path, pins: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no pins for Prefect 9\.9\.9"):
        server_venv.server_python("9.9.9", tmp_path / "venvs", pins)


def test_a_failed_install_says_so_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "install.log"
    command = [sys.executable, "-c", "import sys; print('no such package'); sys.exit(3)"]
    with pytest.raises(RuntimeError, match="exited with code 3") as caught:
        server_venv._run(command, log)
    assert "no such package" in str(caught.value)


def test_a_failed_install_leaves_no_stamp(
    tmp_path: Path, pins: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(command: List[str], log_path: Path) -> None:
        raise RuntimeError("pip failed")

    monkeypatch.setattr(server_venv, "_run", failing)
    with pytest.raises(RuntimeError):
        server_venv.server_python("2.20.25", tmp_path / "venvs", pins)
    assert not (tmp_path / "venvs" / "prefect-2.20.25" / server_venv.STAMP_NAME).exists()


def test_another_interpreter_runs_its_own_prefect_script(tmp_path: Path) -> None:
    python = tmp_path / "bin" / "python"
    python.parent.mkdir()
    python.write_text("")
    assert prefect_command(str(python)) == [str(python), "-m", "prefect"]
    (tmp_path / "bin" / "prefect").write_text("")  # Prefect 2 has no ``python -m prefect``
    assert prefect_command(str(python)) == [str(tmp_path / "bin" / "prefect")]
    assert server_command(4200, str(python))[-5:] == [
        "start", "--host", "127.0.0.1", "--port", "4200"
    ]  # fmt: skip
