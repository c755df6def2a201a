"""The ``deploytrigger`` command line: a thin layer over the public API.

Commands: ``run`` (trigger a deployment, optionally wait, watch, cancel on
timeout), ``wait`` (many existing runs at once), ``status``, ``result`` (the
run's return value as JSON), ``logs``, ``cancel`` and ``deployments``. Only
the standard library (argparse) and deploytrigger's own dependencies are used.

Exit codes (:data:`EXIT_CODES`): 0 completed, 1 failed or crashed, 2 usage
error, 3 still not final when the timeout ran out, 4 cancelled (or being
cancelled), 5 API or configuration error; 130 on Ctrl-C. ``wait`` gives one
code for all its runs, the worst (``_output.WAIT_EXIT_CODES``). Errors are one
line on stderr; ``--debug`` adds the traceback and the HTTP log. The options and
the output are described in the command-line guide.

``_parsing.py`` holds pure helpers, tested on their own; ``_output.py`` what is
printed; ``_following.py`` how ``wait`` and ``run --watch`` follow runs;
``_commands.py`` the commands. Only the public API (names in
``deploytrigger.__all__``) is used.
"""

from ._commands import build_parser, main
from ._output import (
    EXIT_API_ERROR,
    EXIT_CANCELLED,
    EXIT_CODES,
    EXIT_COMPLETED,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NOT_FINAL,
    EXIT_USAGE,
)

__all__ = [
    "EXIT_API_ERROR",
    "EXIT_CANCELLED",
    "EXIT_CODES",
    "EXIT_COMPLETED",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FINAL",
    "EXIT_USAGE",
    "build_parser",
    "main",
]
