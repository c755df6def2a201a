"""The ``deploytrigger`` command line: a thin layer over the public API.

Commands: ``run`` (trigger a deployment, optionally wait, watch, cancel on
timeout), ``status``, ``result`` (the run's return value as JSON), ``logs``,
``cancel`` and ``deployments``. Only the
standard library (argparse) and deploytrigger's own dependencies are used.

Exit codes (:data:`EXIT_CODES`): 0 completed, 1 failed or crashed, 2 usage
error, 3 still not final when the timeout ran out, 4 cancelled (or being
cancelled), 5 API or configuration error; 130 on Ctrl-C. Errors are one line
on stderr; ``--debug`` adds the traceback and the HTTP log.

``parsing.py`` holds pure helpers, tested on their own; ``output.py`` what is
printed; ``commands.py`` the commands. Only the public API (names in
``deploytrigger.__all__``) is used.
"""

from .commands import DEFAULT_POLL_INTERVAL, build_parser, main
from .output import (
    EXIT_API_ERROR,
    EXIT_CANCELLED,
    EXIT_CODES,
    EXIT_COMPLETED,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NOT_FINAL,
    EXIT_USAGE,
    exit_code_for_error,
    exit_code_for_run,
    log_line,
    log_to_json,
    one_line,
    result_to_json,
    run_to_json,
    state_line,
)
from .parsing import (
    UsageError,
    non_negative_seconds,
    parse_duration,
    parse_key_value,
    parse_params,
    parse_start_at,
    parse_value,
    run_parameters,
    scheduled_time,
)

__all__ = [
    "DEFAULT_POLL_INTERVAL",
    "EXIT_API_ERROR",
    "EXIT_CANCELLED",
    "EXIT_CODES",
    "EXIT_COMPLETED",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FINAL",
    "EXIT_USAGE",
    "UsageError",
    "build_parser",
    "exit_code_for_error",
    "exit_code_for_run",
    "log_line",
    "log_to_json",
    "main",
    "non_negative_seconds",
    "one_line",
    "parse_duration",
    "parse_key_value",
    "parse_params",
    "parse_start_at",
    "parse_value",
    "result_to_json",
    "run_parameters",
    "run_to_json",
    "scheduled_time",
    "state_line",
]
