"""The documentation is tested: its examples run, its README renders, its CLI facts hold.

Every ``.. code-block:: python`` of ``README.rst`` and ``docs/**/*.rst`` is one
test: the block runs in a fresh namespace against a fresh fake Prefect API.
The first-day examples (README's, which ``docs/quickstart.rst`` includes) get a
fake with exactly the deployments of the example server (``make server``), read
from ``examples/flows.py`` with :mod:`ast`: they must run as written against
it. The guides' examples get the deployments they use
(:data:`EXAMPLE_DEPLOYMENTS`), each completing at once with a result. A block
preceded by an rst comment ``.. skip-example: <reason>`` is reported as
skipped with that reason.

Python must not hide in a bare ``::`` literal block (it would not be run), the
README must render on a package index without a warning, and the command-line
guide may name only options the parser has and the exit codes it uses.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import re
import sys
import textwrap
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.rst"
QUICKSTART = DOCS / "quickstart.rst"
FLOWS_SCRIPT = ROOT / "examples" / "flows.py"
README_MAX_BYTES = 15 * 1024

_PYTHON_BLOCK = re.compile(
    r"^(?P<indent>\s*)\.\. (?:code-block|code|sourcecode)::\s*(?:python3?|py)\s*$"
)
_ANY_DIRECTIVE_OR_COMMENT = re.compile(r"^\s*\.\.(\s|$)")
_OPTION = re.compile(r"^\s+:[\w-]+:")
_SKIP = re.compile(r"^\s*\.\. skip-example:\s*(?P<reason>\S.*)$")
_INCLUDE = re.compile(r"^\.\. include::\s*(?P<path>\S+)\s*$")


@dataclass(frozen=True)
class Example:
    """One Python code block of a page."""

    path: Path
    line: int  # 1-based line of the ``.. code-block::`` directive
    code: str
    skip: Optional[str]  # the reason of a ``.. skip-example:`` comment just before it

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def doc_files() -> List[Path]:
    """README.rst and every page of the Sphinx site (not its build output)."""
    pages = [p for p in sorted(DOCS.rglob("*.rst")) if "_build" not in p.relative_to(DOCS).parts]
    return [README, *pages]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _block_after(lines: List[str], start: int, indent: int) -> List[str]:
    """The lines of the indented body that follows line ``start`` (0-based), options skipped."""
    body: List[str] = []
    i = start + 1
    while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > indent):
        if not body and _OPTION.match(lines[i]):
            i += 1
            continue
        body.append(lines[i])
        i += 1
    while body and not body[-1].strip():
        body.pop()
    while body and not body[0].strip():
        body.pop(0)
    return body


def _skip_reason(lines: List[str], index: int) -> Optional[str]:
    """The ``.. skip-example:`` reason on the last non-blank line before ``index``."""
    i = index - 1
    while i >= 0 and not lines[i].strip():
        i -= 1
    match = _SKIP.match(lines[i]) if i >= 0 else None
    return match.group("reason").strip() if match else None


def collect_examples(text: str, path: Path) -> List[Example]:
    """Every Python code block of an rst text, in order."""
    lines = text.splitlines()
    examples = []
    for index, line in enumerate(lines):
        match = _PYTHON_BLOCK.match(line)
        if match:
            body = _block_after(lines, index, len(match.group("indent")))
            code = textwrap.dedent("\n".join(body)) + "\n"
            examples.append(Example(path, index + 1, code, _skip_reason(lines, index)))
    return examples


def bare_literal_blocks(text: str) -> List[int]:
    """1-based lines of paragraphs ending in ``::`` (literal blocks with no language)."""
    lines = text.splitlines()
    found = []
    for index, line in enumerate(lines):
        literal = line.rstrip().endswith("::") and not _ANY_DIRECTIVE_OR_COMMENT.match(line)
        if literal and _block_after(lines, index, _indent(line)):
            found.append(index + 1)
    return found


def stale_skip_markers(text: str) -> List[int]:
    """1-based lines of ``.. skip-example:`` comments not followed by a Python block."""
    lines = text.splitlines()
    found = []
    for index, line in enumerate(lines):
        if _SKIP.match(line):
            j = index + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            if j >= len(lines) or not _PYTHON_BLOCK.match(lines[j]):
                found.append(index + 1)
    return found


def all_examples() -> List[Example]:
    return [ex for path in doc_files() for ex in collect_examples(path.read_text("utf-8"), path)]


def included_examples(page: Path) -> List[Example]:
    """The Python blocks that ``page`` shows through ``.. include::`` (``:start-after:``,
    ``:end-before:``), each with its own file and line."""
    lines = page.read_text("utf-8").splitlines()
    examples = []
    for index, line in enumerate(lines):
        match = _INCLUDE.match(line)
        if not match:
            continue
        options = dict(
            re.findall(r"^\s+:([\w-]+):\s*(.*)$", "\n".join(_block_after(lines, index, 0)), re.M)
        )
        source = (page.parent / match.group("path")).resolve()
        text = source.read_text("utf-8")
        start = (
            text.index(options["start-after"]) + len(options["start-after"])
            if ("start-after" in options)
            else 0
        )
        end = text.index(options["end-before"], start) if "end-before" in options else len(text)
        lines_before = text.count("\n", 0, start)
        for example in collect_examples(text[start:end], source):
            examples.append(replace(example, line=example.line + lines_before))
    return examples


def first_day_examples() -> List[Example]:
    """README's Python blocks and those the quickstart page includes, each once."""
    examples = collect_examples(README.read_text("utf-8"), README)
    seen = {(ex.path, ex.line) for ex in examples}
    examples += [ex for ex in included_examples(QUICKSTART) if (ex.path, ex.line) not in seen]
    return examples


def run_example(example: Example) -> Dict[str, object]:
    """Run one block in a fresh namespace; its exceptions propagate. Returns the namespace."""
    namespace: Dict[str, object] = {"__name__": "__docs_example__"}
    exec(compile(example.code, example.where, "exec"), namespace)
    return namespace


# -- running the examples ----------------------------------------------------------------

EXAMPLE_DEPLOYMENTS: Dict[str, Dict[str, Any]] = {
    "etl/nightly": {"parameters": {"day": "2026-11-23"}, "result": {"rows": 42}},
    "etl/daily": {"parameters": {"day": "2026-11-23"}, "result": {"rows": 7}},
    "add/add-dep": {"parameters": {"x": 1, "y": 10}, "result": 11},
    "json-result/json-result-dep": {
        "parameters": {"x": 1},
        "result": {
            "when": datetime(2026, 11, 23, 18, 0, tzinfo=timezone.utc),
            "tags": {"a", "b"},
            "took": timedelta(minutes=1, seconds=30),
        },
    },
}
"""The deployments every example finds on the fake, each run completing at once with a result."""


@contextlib.contextmanager
def example_server() -> Iterator[Any]:
    """A fresh fake Prefect API with :data:`EXAMPLE_DEPLOYMENTS`; ``Client()`` uses it."""
    from deploytrigger.testing import fake_prefect

    with fake_prefect() as fake:
        for name, spec in EXAMPLE_DEPLOYMENTS.items():
            fake.add_deployment(name, parameters=spec["parameters"])
            fake.set_outcome(name, "COMPLETED", result=spec["result"])
        yield fake


# -- the example server's deployments, read from examples/flows.py ----------------------

_JSON_TYPES = {
    "int": "integer",
    "float": "number",
    "str": "string",
    "bool": "boolean",
    "dict": "object",
    "list": "array",
}


@dataclass(frozen=True)
class ServedDeployment:
    """A deployment that ``examples/flows.py`` serves, as its source declares it."""

    name: str  # "flow/deployment"
    defaults: Dict[str, Any]  # the deployment's ``parameters=``
    schema: Dict[str, Any]  # the flow's parameters: names, simple types, required ones


def _annotation_schema(annotation: Optional[ast.expr]) -> Dict[str, Any]:
    """A JSON schema for a parameter's annotation: builtin types and ``Optional[...]``."""
    if isinstance(annotation, ast.Name) and annotation.id in _JSON_TYPES:
        return {"type": _JSON_TYPES[annotation.id]}
    if (
        isinstance(annotation, ast.Subscript)
        and isinstance(annotation.value, ast.Name)
        and annotation.value.id == "Optional"
    ):
        # Python 3.8 wraps a subscript in ast.Index
        inner = annotation.slice.value if sys.version_info < (3, 9) else annotation.slice
        return {"anyOf": [_annotation_schema(inner), {"type": "null"}]}
    return {}


def _flow_schema(function: ast.FunctionDef) -> Dict[str, Any]:
    """The flow's parameters as an enforced schema: no other name passes."""
    arguments = function.args.args
    required = [a.arg for a in arguments[: len(arguments) - len(function.args.defaults)]]
    return {
        "type": "object",
        "properties": {a.arg: _annotation_schema(a.annotation) for a in arguments},
        "required": required,
        "additionalProperties": False,
    }


def _flow_name(function: ast.FunctionDef) -> Optional[str]:
    """The ``name=`` of a function's ``@flow(...)`` decorator; None when it is not a flow."""
    for decorator in function.decorator_list:
        if isinstance(decorator, ast.Call) and getattr(decorator.func, "id", None) == "flow":
            names = [k.value for k in decorator.keywords if k.arg == "name"]
            return str(ast.literal_eval(names[0])) if names else function.name
    return None


def served_deployments(source: str) -> List[ServedDeployment]:
    """Every ``<flow>.to_deployment(name=..., parameters=...)`` of a flows script."""
    tree = ast.parse(source)
    flows: Dict[str, Tuple[str, Dict[str, Any]]] = {}
    for node in tree.body:
        flow_name = _flow_name(node) if isinstance(node, ast.FunctionDef) else None
        if isinstance(node, ast.FunctionDef) and flow_name is not None:
            flows[node.name] = (flow_name, _flow_schema(node))
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "to_deployment"
            and isinstance(node.func.value, ast.Name)
        ):
            flow_name, schema = flows[node.func.value.id]
            keywords = {k.arg: ast.literal_eval(k.value) for k in node.keywords
                        if k.arg in ("name", "parameters")}  # fmt: skip
            name = f"{flow_name}/{keywords['name']}"
            found.append(ServedDeployment(name, keywords.get("parameters", {}), schema))
    return sorted(found, key=lambda deployment: deployment.name)


@contextlib.contextmanager
def example_server_fake() -> Iterator[Any]:
    """A fresh fake Prefect API with the example server's deployments; ``Client()`` uses it.

    Each has the deployment's default parameters and enforces the flow's
    parameters (a name the flow does not take is refused: on the example server
    the run would fail); each run completes at once, as the example flows do.
    """
    from deploytrigger.testing import fake_prefect

    with fake_prefect() as fake:
        for served in served_deployments(FLOWS_SCRIPT.read_text("utf-8")):
            fake.add_deployment(
                served.name,
                parameters=served.defaults,
                parameter_schema=served.schema,
                enforce_parameter_schema=True,
            )
        yield fake


# -- the collector -----------------------------------------------------------------------

SAMPLE = """\
Title
=====

.. code-block:: python

    x = 1

    y = x + 1

Text.

- A list item:

  .. code-block:: python
     :caption: nested

     if True:
         z = 3

.. skip-example: needs a cloud

.. code-block:: python

    import boto3

.. code-block:: console

    $ deploytrigger status
"""


def test_collector_finds_every_python_block_with_its_line_indent_and_skip_reason() -> None:
    examples = collect_examples(SAMPLE, README)
    assert [(ex.line, ex.code, ex.skip) for ex in examples] == [
        (4, "x = 1\n\ny = x + 1\n", None),
        (14, "if True:\n    z = 3\n", None),
        (22, "import boto3\n", "needs a cloud"),
    ]


def test_collector_sees_bare_literal_blocks_and_stale_skip_markers() -> None:
    text = "Run this::\n\n    import deploytrigger\n\n.. skip-example: why\n\nText.\n"
    assert bare_literal_blocks(text) == [1]
    assert stale_skip_markers(text) == [5]
    assert bare_literal_blocks(SAMPLE) == [] and stale_skip_markers(SAMPLE) == []


# -- the pages ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_bare_literal_blocks_or_stale_skip_markers(path: Path) -> None:
    """Every block names its language: Python is run, the rest is console or text."""
    text = path.read_text("utf-8")
    assert bare_literal_blocks(text) == [], "use '.. code-block:: LANGUAGE' for these blocks"
    assert stale_skip_markers(text) == [], "'.. skip-example:' must come just before a block"


def test_readme_renders_on_a_package_index_without_warnings() -> None:
    readme_renderer_rst = pytest.importorskip("readme_renderer.rst")
    warnings = io.StringIO()
    html = readme_renderer_rst.render(README.read_text("utf-8"), stream=warnings)
    assert warnings.getvalue() == ""
    assert html is not None and "make demo" in html and "make test" in html


def test_readme_stays_a_front_page() -> None:
    assert len(README.read_bytes()) <= README_MAX_BYTES


# -- the command-line guide --------------------------------------------------------------


def _parser_options() -> Set[str]:
    from deploytrigger.cli import build_parser

    parser = build_parser()
    parsers = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            parsers.extend(action.choices.values())
    return {flag for p in parsers for action in p._actions for flag in action.option_strings}


def test_cli_guide_and_readme_name_only_options_the_parser_has() -> None:
    known = _parser_options()
    guide = (DOCS / "guides" / "cli.rst").read_text("utf-8")
    readme = README.read_text("utf-8").splitlines()
    readme_commands = [line for line in readme if "$ deploytrigger" in line]
    for name, text in (("cli.rst", guide), ("README.rst", "\n".join(readme_commands))):
        named = set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)(?=[\s=`,)/]|$)", text, flags=re.M))
        named -= {"-m"}  # python -m deploytrigger
        assert named and named - known == set(), name


def test_cli_guide_exit_code_table_is_the_one_the_cli_uses() -> None:
    from deploytrigger.cli import EXIT_CODES, EXIT_INTERRUPTED

    text = (DOCS / "guides" / "cli.rst").read_text("utf-8")
    table = text.split("Exit codes:", 1)[1].split("\n\n", 2)[1]
    documented = {int(m) for m in re.findall(r"^(\d+)\s", table, flags=re.M)}
    assert documented == set(EXIT_CODES) | {EXIT_INTERRUPTED}


# -- every example runs ------------------------------------------------------------------

FIRST_DAY_EXAMPLES = first_day_examples()
EXAMPLES = [ex for ex in all_examples() if ex.path != README]


@pytest.mark.parametrize("example", FIRST_DAY_EXAMPLES, ids=[ex.where for ex in FIRST_DAY_EXAMPLES])
def test_first_day_example_runs_as_written_against_the_example_servers_deployments(
    example: Example,
) -> None:
    assert example.skip is None, "README's examples must run as written"
    with example_server_fake():
        run_example(example)


@pytest.mark.parametrize("example", EXAMPLES, ids=[ex.where for ex in EXAMPLES])
def test_example_runs(example: Example) -> None:
    if example.skip is not None:
        pytest.skip(f"skip-example: {example.skip}")
    with example_server():
        run_example(example)


def test_examples_are_found_and_few_are_skipped() -> None:
    where = {ex.path.relative_to(ROOT).as_posix() for ex in EXAMPLES}
    assert {"docs/guides/running.rst", "docs/guides/many-runs.rst"} <= where
    skipped = [ex.where for ex in EXAMPLES if ex.skip is not None]
    assert len(skipped) <= len(EXAMPLES) // 4, skipped


def test_the_quickstart_page_shows_readmes_quickstart_examples() -> None:
    shown = included_examples(QUICKSTART)
    assert shown and {ex.path for ex in shown} == {README}
    readme_lines = README.read_text("utf-8").splitlines()
    for example in shown:
        assert _PYTHON_BLOCK.match(readme_lines[example.line - 1]), example.where
    assert {(ex.path, ex.line) for ex in shown} <= {(ex.path, ex.line) for ex in FIRST_DAY_EXAMPLES}


def test_the_example_servers_deployments_are_read_from_the_flows_script() -> None:
    from conftest import DEPLOYMENT_NAMES

    served = {deployment.name: deployment for deployment in served_deployments(
        FLOWS_SCRIPT.read_text("utf-8"))}  # fmt: skip
    assert set(served) == {*DEPLOYMENT_NAMES, "parent/parent-dep"}
    add = served["add/add-dep"]
    assert add.defaults == {"y": 10}
    assert add.schema["properties"] == {"x": {"type": "integer"}, "y": {"type": "integer"}}
    assert add.schema["required"] == []
    echo = served["echo/echo-dep"].schema["properties"]["value"]
    assert echo == {"anyOf": [{"type": "object"}, {"type": "null"}]}


def test_the_quickstart_page_lists_every_deployment_of_the_example_server() -> None:
    section = QUICKSTART.read_text("utf-8").split("The example server\n", 1)[1]
    for served in served_deployments(FLOWS_SCRIPT.read_text("utf-8")):
        flow, deployment = served.name.split("/")
        listed = f"``{served.name}``" in section or (
            deployment == f"{flow}-dep" and f"``{flow}``" in section
        )
        assert listed, served.name


def test_a_renamed_deployment_or_parameter_breaks_a_first_day_example() -> None:
    import deploytrigger

    renamed = "import deploytrigger\ndeploytrigger.run_deployment('etl/nightly', timeout=0)\n"
    wrong_parameter = (
        "import deploytrigger\n"
        "deploytrigger.run_deployment('add/add-dep', parameters={'day': 'mon'}, timeout=0)\n"
    )
    with example_server_fake(), pytest.raises(deploytrigger.DeploymentNotFoundError):
        run_example(Example(README, 1, renamed, None))
    with example_server_fake(), pytest.raises(deploytrigger.ParameterRejectedError):
        run_example(Example(README, 1, wrong_parameter, None))
    code = (
        "import deploytrigger\n"
        "run = deploytrigger.run_deployment('add/add-dep', parameters={'x': 5}, timeout=0)\n"
    )
    with example_server_fake():
        assert run_example(Example(README, 1, code, None))["run"].parameters == {"x": 5, "y": 10}


def test_the_runner_fails_on_a_broken_example() -> None:
    broken = Example(README, 1, "import deploytrigger\nrun = deploytrigger.run_deployment(\n", None)
    with pytest.raises(SyntaxError):
        run_example(broken)
    raising = Example(README, 1, "import deploytrigger\nassert deploytrigger.Clinet\n", None)
    with pytest.raises(AttributeError):
        run_example(raising)


def test_the_runner_fails_on_a_deployment_the_fake_does_not_have() -> None:
    import deploytrigger

    code = "import deploytrigger\ndeploytrigger.run_deployment('etl/weekly', timeout=0)\n"
    with example_server(), pytest.raises(deploytrigger.DeploymentNotFoundError):
        run_example(Example(README, 1, code, None))


def test_examples_run_against_the_fake_and_see_its_results() -> None:
    code = (
        "import deploytrigger\n"
        "run = deploytrigger.run_deployment('add/add-dep', parameters={'x': 5})\n"
        "value = deploytrigger.read_result(run)\n"
    )
    with example_server() as fake:
        namespace = run_example(Example(README, 1, code, None))
        assert len(fake.runs) == 1
    assert namespace["value"] == 11
    assert namespace["run"].parameters == {"x": 5, "y": 10}  # type: ignore[attr-defined]
