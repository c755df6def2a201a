# Two entry points do all set-up on a fresh machine (only Python needed):
#   make demo   a real local Prefect server and flow, triggered and awaited by deploytrigger
#   make server the example server (examples/flows.py served by a local Prefect server) kept up
#               until Ctrl-C; SERVER_ARGS="--port 4200" picks its port
#   make test   ruff, mypy, lint-imports, the docs build, then two jobs at once: the whole test
#               suite on .venv (unit + integration, the version matrix against Prefect 2.20.25
#               included) and nox (noxfile.py: the unit suite on Python 3.8-3.13, the lowest
#               dependency versions, the built wheel installed as users install it)
#   make test-matrix  the version matrix against every server version (tests/servers)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo server test test-suite test-pythons test-matrix lint docs bench clean prod-up prod-down bench-scale \
	system-packages

$(STAMP): setup.cfg setup.py pyproject.toml harness/requirements/server.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]' -r harness/requirements/server.txt
	touch $(STAMP)

# The programs the harness runs, from Debian's packages (program:package): PostgreSQL for the
# production-shaped stack, nginx and redis-server for its scale-out. Only the missing ones are
# installed, as root (CI and the developers' machines); tests never install anything.
SYSTEM_PROGRAMS := initdb:postgresql nginx:nginx redis-server:redis-server
SYSTEM_PATH := $(PATH):/usr/sbin:/sbin:$(subst $() ,:,$(wildcard /usr/lib/postgresql/*/bin))

system-packages:
	@missing=""; for pair in $(SYSTEM_PROGRAMS); do \
	  PATH="$(SYSTEM_PATH)" command -v "$${pair%%:*}" >/dev/null || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "missing system packages:$$missing (run as root: apt-get install -y$$missing)" >&2; exit 1; fi; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi

# The demo's own environment: deploytrigger, the pinned local server and what harness/ runs it with.
DEMO_VENV ?= .venv-demo
DEMO_STAMP := $(DEMO_VENV)/.installed

$(DEMO_STAMP): setup.cfg setup.py pyproject.toml harness/requirements/server.txt \
		harness/requirements/harness.txt
	$(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(DEMO_VENV)/bin/python -m pip install --quiet -e . -r harness/requirements/server.txt \
	  -r harness/requirements/harness.txt
	touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(DEMO_VENV)/bin/python -m examples.demo

# It prints the line to paste into another shell: export PREFECT_API_URL=http://127.0.0.1:PORT/api
server: $(DEMO_STAMP)
	PYTHONPATH=$(CURDIR) $(DEMO_VENV)/bin/python -m harness.local_server --flows examples/flows.py \
	  --deployment add/add-dep $(SERVER_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check deploytrigger harness tests examples benchmarks noxfile.py
	$(BIN)/mypy
	$(BIN)/lint-imports --no-logo

# The suite on .venv and the nox sessions run side by side (one core each; 22 min in all in
# a fresh clone, set-up included); each job's output is printed whole when it ends, and
# either failing fails the test.
test: lint docs
	$(MAKE) --no-print-directory -j2 --output-sync=target test-suite test-pythons

test-suite: $(STAMP) system-packages
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# nox's environments live in .nox/; a developer's are reused (-r), CI builds them afresh.
# A Python of the matrix that is missing fails the run.
NOX_ARGS ?= $(if $(CI),,--reuse-existing-virtualenvs)
test-pythons: $(STAMP) system-packages
	$(BIN)/nox --error-on-missing-interpreters $(NOX_ARGS)

# The Sphinx site in docs/_build/html; any warning (a broken reference, a bad docstring) fails.
docs: $(STAMP)
	$(BIN)/sphinx-build -E -W --keep-going -q -b html docs docs/_build/html

# Server environments are created on first use under .venv-servers/ (about 1 min each).
test-matrix: $(STAMP) system-packages
	$(BIN)/python -m pytest -m matrix --prefect-versions=all $(PYTEST_ARGS)

bench: $(STAMP) system-packages
	$(BIN)/python -m pip install --quiet -r harness/requirements/bench.txt
	$(BIN)/python -m benchmarks.run

# A production-shaped stack (PostgreSQL, server, process pool, 2 workers) left running
# until prod-down (a holder process keeps it); state in .prod/state.json. Scale-out: make prod-up PROD_ARGS="--api-servers 2".
prod-up: $(STAMP) system-packages
	$(BIN)/python -m benchmarks.prod_stack up $(PROD_ARGS)

prod-down:
	$(BIN)/python -m benchmarks.prod_stack down

# Scaling on that stack, deploytrigger vs Prefect's run_deployment (installs harness/requirements/bench.txt).
bench-scale: $(STAMP) system-packages
	$(BIN)/python -m pip install --quiet -r harness/requirements/bench.txt
	$(BIN)/python -m benchmarks.scale $(SCALE_ARGS)

clean:
	rm -rf $(VENV) $(DEMO_VENV) .venv-servers .nox build *.egg-info .pytest_cache .mypy_cache .ruff_cache docs/_build
