"""``python -m deploytrigger``: the command line (see :mod:`deploytrigger.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
