# Two entry points do all set-up on a fresh machine (only Python needed):
#   make demo   a real local Prefect server and flow, triggered and awaited by deploytrigger
#   make test   ruff, mypy, lint-imports, the docs build and the whole test suite (unit + integration),
#               the version matrix against Prefect 2.20.25 included
#   make test-matrix  the version matrix against every server version (tests/servers)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-matrix lint docs bench clean prod-up prod-down bench-scale

$(STAMP): setup.cfg setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

lint: $(STAMP)
	$(BIN)/ruff check deploytrigger tests examples benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports --no-logo

test: lint docs
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The Sphinx site in docs/_build/html; any warning (a broken reference, a bad docstring) fails.
docs: $(STAMP)
	$(BIN)/sphinx-build -E -W --keep-going -q -b html docs docs/_build/html

# Server environments are created on first use under .venv-servers/ (about 1 min each).
test-matrix: $(STAMP)
	$(BIN)/python -m pytest -m matrix --prefect-versions=all $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

# A production-shaped stack (PostgreSQL, server, process pool, 2 workers) left running
# until prod-down; state in .prod/state.json. Scale-out: make prod-up PROD_ARGS="--api-servers 2".
prod-up: $(STAMP)
	$(BIN)/python benchmarks/prod_stack.py up $(PROD_ARGS)

prod-down:
	$(BIN)/python benchmarks/prod_stack.py down

# Scaling on that stack, deploytrigger vs Prefect's run_deployment (needs the bench extra).
bench-scale: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/scale.py $(SCALE_ARGS)

clean:
	rm -rf $(VENV) .venv-servers build *.egg-info .pytest_cache .mypy_cache .ruff_cache docs/_build
