"""The Python matrix and the install checks that ``make test`` runs (docs/development.rst).

``nox`` runs every session below: the unit suite on each Python we support
(``unit-3.8`` ... ``unit-3.13``), the same suite on the lowest dependency versions
we declare (``minimum``), and the built wheel installed as users install it
(``wheel``). The integration suite is not here: it runs once, on the main
``.venv`` (``make test``).

The interpreters are pyenv's (``pyenv root``/versions/*/bin, put first on PATH
below), as on every machine of this project and its CI. A Python that is missing
is an error, never a skip: run nox with ``--error-on-missing-interpreters``, as
``make test`` does.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path
from typing import List

import nox
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent
PYTHONS = ["3.8", "3.9", "3.10", "3.11", "3.12", "3.13"]
LOWEST = PYTHONS[0]
UNIT = ["-m", "not integration", "-p", "no:cacheprovider"]

nox.options.sessions = [f"unit-{python}" for python in PYTHONS] + ["minimum", "wheel"]
nox.options.error_on_missing_interpreters = True
nox.options.download_python = "never"  # the machine's interpreters, never a downloaded one
# The standard library's venv: virtualenv no longer seeds pip into a Python 3.8 environment.
nox.options.default_venv_backend = "venv"


def _install(session: nox.Session, *args: str) -> None:
    """``pip install`` into the session with the newest pip this Python gets (pip caches)."""
    session.install("--quiet", "--upgrade", "pip")
    session.install("--quiet", *args)


def _pyenv_root() -> Path:
    """Where pyenv keeps its interpreters: ``$PYENV_ROOT``, ``pyenv root``, or ``~/.pyenv``."""
    if os.environ.get("PYENV_ROOT"):
        return Path(os.environ["PYENV_ROOT"])
    try:
        found = subprocess.run(
            ["pyenv", "root"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return Path.home() / ".pyenv"
    return Path(found)


def _put_pyenv_pythons_on_path() -> None:
    """Put each pyenv interpreter's ``bin`` first on PATH, so nox finds ``python3.X`` there."""
    versions = _pyenv_root() / "versions"
    bins = sorted(str(path) for path in versions.glob("3.*/bin") if path.is_dir())
    os.environ["PATH"] = os.pathsep.join([*bins, os.environ.get("PATH", "")])


_put_pyenv_pythons_on_path()


@nox.session(python=PYTHONS)
def unit(session: nox.Session) -> None:
    """The unit suite (the fake's tests included) with the newest dependencies this Python gets."""
    _install(session, "-e", ".[unit]")
    session.run("python", "-m", "pytest", *UNIT, *session.posargs)


def _lowest_requirements() -> List[Requirement]:
    """``install_requires`` of setup.cfg with every ``>=`` lower bound pinned with ``==``.

    An environment marker is kept (``tomli>=1.1; python_version < "3.11"``).
    """
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    pins = []
    for line in config["options"]["install_requires"].strip().splitlines():
        requirement = Requirement(line)
        bounds = list(requirement.specifier)
        if len(bounds) != 1 or bounds[0].operator != ">=":
            raise ValueError(f"install_requires {line!r} has no plain '>=' lower bound")
        requirement.specifier = SpecifierSet(f"=={bounds[0].version}")
        pins.append(requirement)
    return pins


@nox.session(python=LOWEST)
def minimum(session: nox.Session) -> None:
    """The unit suite on the lowest Python with the lowest versions of our dependencies."""
    constraints = Path(session.create_tmp()) / "lowest.txt"
    pins = _lowest_requirements()
    constraints.write_text("".join(f"{pin}\n" for pin in pins))
    _install(session, "-e", ".[unit]", "-c", str(constraints))
    listed = session.run("python", "-m", "pip", "list", "--format=json", silent=True) or "[]"
    installed = {
        canonicalize_name(package["name"]): Version(package["version"])
        for package in json.loads(listed)
    }
    for pin in pins:
        if pin.marker is not None and not pin.marker.evaluate({"python_version": LOWEST}):
            continue  # not a dependency on this Python
        (version,) = (spec.version for spec in pin.specifier)
        if installed.get(canonicalize_name(pin.name)) != Version(version):
            session.error(f"{pin} was not installed: pip lists {listed}")
    session.log(f"lowest versions installed: {', '.join(map(str, pins))}")
    session.run("python", "-m", "pytest", *UNIT, *session.posargs)


def _source_files() -> List[str]:
    """The repository's files as a clean checkout has them (tracked, or new and not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted(name for name in listed.split("\0") if name and (ROOT / name).is_file())


def _check_wheel_files(session: nox.Session, wheel: Path, sources: List[str]) -> None:
    """The wheel holds exactly the package's source files, and nothing else but its metadata."""
    names = zipfile.ZipFile(wheel).namelist()
    packaged = {name for name in names if not name.split("/")[0].endswith(".dist-info")}
    expected = {name for name in sources if name.startswith("deploytrigger/")}
    required = {
        "deploytrigger/py.typed",
        "deploytrigger/testing/pytest_plugin.py",
        "deploytrigger/testing/fake/__init__.py",
    }
    missing, extra = expected - packaged, packaged - expected
    if missing or extra or not required <= packaged:
        session.error(
            f"{wheel.name} does not hold the package's source tree:\n"
            f"  missing from the wheel: {sorted(missing | (required - packaged))}\n"
            f"  in the wheel, not in the source tree: {sorted(extra)}"
        )
    session.log(f"{wheel.name}: {len(packaged)} files, exactly deploytrigger/ of the source tree")


SMOKE = """
import importlib, importlib.util, pkgutil
from importlib.metadata import entry_points
from pathlib import Path

import deploytrigger

home = Path(deploytrigger.__file__).resolve().parent
assert "site-packages" in home.parts, f"imported from {home}, not from the installed wheel"
needs_pytest = {"deploytrigger.testing.pytest_plugin"}
have_pytest = importlib.util.find_spec("pytest") is not None
names = ["deploytrigger"] + [
    module.name for module in pkgutil.walk_packages(deploytrigger.__path__, "deploytrigger.")
]
for name in names:
    if name in needs_pytest and not have_pytest:
        continue
    importlib.import_module(name)
try:
    points = entry_points(group="pytest11")
except TypeError:  # Python < 3.10: a dict of groups
    points = entry_points().get("pytest11", [])
(plugin,) = [point for point in points if point.name == "deploytrigger"]
assert plugin.value == "deploytrigger.testing.pytest_plugin", plugin
if have_pytest:
    plugin.load()
print(f"imported {len(names)} modules from {home}; pytest11 entry point {plugin.value}")
"""


@nox.session(python=LOWEST)
def wheel(session: nox.Session) -> None:
    """Build the sdist and wheel from a clean tree, check them, and use the wheel as users do."""
    _install(session, "build>=1", "twine>=5")
    work = Path(tempfile.mkdtemp(prefix="deploytrigger-wheel-"))
    try:
        tree, dist, env = work / "tree", work / "dist", work / "venv"
        sources = _source_files()
        for name in sources:
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tree / name)
        # the sdist from the clean tree, then the wheel from the unpacked sdist
        session.run("python", "-m", "build", "--outdir", str(dist), str(tree), silent=True)
        session.run("python", "-m", "twine", "check", "--strict", *map(str, dist.iterdir()))
        (built,) = dist.glob("*.whl")
        _check_wheel_files(session, built, sources)

        # an empty environment with only the wheel (and its dependencies), run from elsewhere
        session.run("python", "-m", "venv", str(env))
        python = str(env / "bin" / "python")
        session.run(python, "-m", "pip", "install", "--quiet", str(built), external=True)
        smoke = work / "smoke.py"
        smoke.write_text(SMOKE)
        with session.chdir(work):
            session.run(str(env / "bin" / "deploytrigger"), "--help", external=True, silent=True)
            session.run(python, "-m", "deploytrigger", "--help", external=True, silent=True)
            session.run(python, str(smoke), external=True)
            # the plugin loads where a user's tests run, with pytest installed
            session.run(python, "-m", "pip", "install", "--quiet", "pytest", external=True)
            session.run(python, str(smoke), external=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
