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


# -- which Python makes an environment ------------------------------------------------------

NEXT = (sys.version_info[0], sys.version_info[1] + 1)
"""A Python newer than this one, which pins can ask for."""


def interpreter(directory: Path, name: str, script: str) -> None:
    """A stand-in ``name`` on ``PATH`` that runs the shell ``script``."""
    path = directory / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)


@pytest.fixture
def newer_pythons(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``PATH`` holds a stale shim of the next Python and a working one after it."""
    directory = tmp_path / "bin"
    directory.mkdir()
    major, minor = NEXT
    interpreter(
        directory, f"python{major}.{minor}", "echo 'pyenv: version not installed' >&2; exit 127"
    )
    interpreter(directory, f"python{major}.{minor + 1}", f"echo {major} {minor + 1}")
    monkeypatch.setenv("PATH", str(directory))
    return directory


def test_pins_name_the_oldest_python_they_install_on(tmp_path: Path) -> None:
    pins = tmp_path / "prefect-3.9.1.txt"
    pins.write_text("# Pins for 3.9.1\n#  Python >= 3.11\nanyio==4.4.0\n")
    assert server_venv.required_python(pins) == (3, 11)
    pins.write_text("# Pins for 3.8.8\nanyio==4.4.0\n")
    assert server_venv.required_python(pins) is None


def test_the_newest_pins_ask_for_python_3_11() -> None:
    pins = Path(__file__).resolve().parents[1] / "servers" / "prefect-3.9.1.txt"
    assert server_venv.required_python(pins) == (3, 11)


def test_pins_without_a_python_line_use_this_interpreter() -> None:
    assert server_venv.suitable_python(None, "Prefect 2.20.25") == sys.executable
    assert server_venv.suitable_python(sys.version_info[:2], "Prefect 3.9.1") == sys.executable


def test_pins_asking_for_a_newer_python_get_the_oldest_that_runs(newer_pythons: Path) -> None:
    major, minor = NEXT
    found = server_venv.suitable_python(NEXT, "Prefect 9.0.0")
    assert found == str(newer_pythons / f"python{major}.{minor + 1}")  # the stale shim skipped


def test_an_environment_is_made_from_the_python_its_pins_ask_for(
    tmp_path: Path, pins: Path, commands: List[List[str]], newer_pythons: Path
) -> None:
    major, minor = NEXT
    (pins / "prefect-2.20.25.txt").write_text(f"# python>={major}.{minor}\nanyio==4.4.0\n")
    server_venv.server_python("2.20.25", tmp_path / "venvs", pins)
    assert commands[0][0] == str(newer_pythons / f"python{major}.{minor + 1}")


def test_no_python_new_enough_is_refused_with_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(
        RuntimeError, match=r"Prefect 9\.0\.0 needs Python >= 99\.1: this is"
    ) as info:
        server_venv.suitable_python((99, 1), "Prefect 9.0.0")
    assert "no python99.1 or later is on PATH" in str(info.value)


# -- which versions the pins know ----------------------------------------------------------


def test_the_own_servers_version_is_read_from_its_requirements(tmp_path: Path) -> None:
    requirements = tmp_path / "server.txt"
    requirements.write_text("# the pinned server\nPrefect == 3.9.1\nfastapi==0.150.0\n")
    assert server_venv.pinned_prefect_version(requirements) == "3.9.1"
    requirements.write_text("fastapi==0.150.0\n")
    with pytest.raises(ValueError, match="pins no Prefect version"):
        server_venv.pinned_prefect_version(requirements)
    shipped = server_venv.pinned_prefect_version()
    assert f"prefect=={shipped}" in server_venv.SERVER_REQUIREMENTS.read_text().splitlines()


def test_pinned_versions_are_listed_oldest_first_by_number(tmp_path: Path) -> None:
    for version in ("3.10.0", "3.9.1", "2.20.25"):
        (tmp_path / f"prefect-{version}.txt").write_text("")
    (tmp_path / "matrix_flows.py").write_text("")
    assert server_venv.pinned_versions(tmp_path) == ["2.20.25", "3.9.1", "3.10.0"]
    assert server_venv.version_key("3.10.0") > server_venv.version_key("3.9.1")
