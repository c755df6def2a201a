"""A Flask app that triggers Prefect deployments from its request handlers, served by gunicorn.

Run it (with a Prefect server at ``PREFECT_API_URL`` that has the deployments)::

    pip install deploytrigger flask gunicorn
    export PREFECT_API_URL=http://127.0.0.1:4200/api
    export APP_DEPLOYMENTS=etl/nightly,etl/hourly
    gunicorn --preload --workers 4 --bind 127.0.0.1:8000 --chdir examples/gunicorn_app app:app
    curl -X POST localhost:8000/deployments/etl/nightly/runs -H 'Content-Type: application/json' \\
         -d '{"parameters": {"day": "2026-11-24"}}'

``POST /deployments/<flow>/<deployment>/runs`` creates a run of one of the
deployments named in ``APP_DEPLOYMENTS`` and answers ``201`` with its id at
once (``timeout=0``); the JSON body may give ``parameters`` and ``tags``.
``GET /health`` answers ``ok``.

The handler calls the module-level ``deploytrigger.run_deployment``, which
uses the process-wide default client: each worker makes its own on its first
trigger, then every trigger is one request on a kept-alive connection. The
check at import runs once in the gunicorn master (``--preload``) and opens a
connection there; the forked workers never use it.
"""

import os
from typing import Any, Dict, FrozenSet, Tuple

from flask import Flask, jsonify, request

import deploytrigger

Answer = Tuple[Any, int]


def allowed_deployments() -> FrozenSet[str]:
    """The ``flow/deployment`` names of ``APP_DEPLOYMENTS``; the app triggers no others."""
    names = os.environ.get("APP_DEPLOYMENTS", "")
    return frozenset(name.strip() for name in names.split(",") if name.strip())


ALLOWED = allowed_deployments()

# Fail at boot, not at the first request, when Prefect is unreachable or a deployment
# is missing. With --preload this runs once, in the master, before the workers fork.
for _name in sorted(ALLOWED):
    deploytrigger.default_client().read_deployment_by_name(_name)

app = Flask(__name__)


@app.get("/health")
def health() -> str:
    return "ok"


@app.post("/deployments/<flow>/<deployment>/runs")
def create_run(flow: str, deployment: str) -> Answer:
    name = f"{flow}/{deployment}"
    if name not in ALLOWED:
        return jsonify(detail=f"{name} is not a deployment this app triggers"), 404
    body: Dict[str, Any] = request.get_json(silent=True) or {}
    try:
        run = deploytrigger.run_deployment(
            name, parameters=body.get("parameters"), tags=body.get("tags"), timeout=0
        )
    except deploytrigger.InvalidArgumentError as exc:
        return jsonify(detail=str(exc)), 400
    except deploytrigger.ParameterRejectedError as exc:
        return jsonify(detail=str(exc)), 422
    except deploytrigger.DeploymentNotFoundError as exc:
        return jsonify(detail=str(exc)), 404
    except deploytrigger.DeployTriggerError as exc:
        return jsonify(detail=str(exc)), 502
    state = run.state.type.value if run.state else None
    return jsonify(flow_run_id=str(run.id), state=state, worker_pid=os.getpid()), 201
