"""A bad value of every client option, and the one-line error each must raise.

Keyed by the names of :class:`~deploytrigger.ClientOptions`: a test that
iterates over its keys fails with a ``KeyError`` for an option added without a case.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

WRONG_TYPES: Dict[str, Tuple[Any, str]] = {
    "api_key": (5, "api_key must be a string, not int"),
    "auth_string": (b"user:pass", "auth_string must be a string, not bytes"),
    "verify": (1.5, "verify must be True, False or the path of a CA bundle file, not 1.5"),
    "request_timeout": ("soon", "request_timeout must be a finite number > 0, not 'soon'"),
    "max_retries": ("many", "max_retries must be a whole number >= 0, not 'many'"),
    "retry_budget": ("soon", "retry_budget must be a finite number >= 0, not 'soon'"),
    "max_requests_per_minute": (
        "lots",
        "max_requests_per_minute must be a finite number > 0, not 'lots'",
    ),
    "events": (1, "events must be one of auto, on, off, not 1"),
    "progress": (True, "progress must be one of auto, on, off, not True"),
    "pool_size": ("many", "pool_size must be a whole number > 0, not 'many'"),
    "sleep": (5, "sleep must be a function, not 5"),
    "clock": (None, "clock must be a function, not None"),
    "backoff": ("fast", "backoff must be a function or None, not 'fast'"),
    "deployment_cache_ttl": (
        "soon",
        "deployment_cache_ttl must be a finite number >= 0, not 'soon'",
    ),
    "outage_tolerance": ("long", "outage_tolerance must be a finite number >= 0, not 'long'"),
    "result_reader": ("s3", "result_reader must be a function or None, not 's3'"),
}
"""Per option: a value of a type it does not take, and the error's message."""

OUT_OF_RANGE: Dict[str, Tuple[Any, str]] = {
    "request_timeout": (0, "request_timeout must be a finite number > 0, not 0"),
    "max_retries": (-1, "max_retries must be a whole number >= 0, not -1"),
    "retry_budget": (float("inf"), "retry_budget must be a finite number >= 0, not inf"),
    "max_requests_per_minute": (0, "max_requests_per_minute must be a finite number > 0, not 0"),
    "events": ("sometimes", "events must be one of auto, on, off, not 'sometimes'"),
    "progress": ("always", "progress must be one of auto, on, off, not 'always'"),
    "pool_size": (0, "pool_size must be a whole number > 0, not 0"),
    "deployment_cache_ttl": (-1, "deployment_cache_ttl must be a finite number >= 0, not -1"),
    "outage_tolerance": (-5, "outage_tolerance must be a finite number >= 0, not -5"),
}
"""Per option that is a number or a choice: a value of its type out of range, and the message."""
