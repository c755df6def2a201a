"""Request bodies as bytes on the wire."""

from __future__ import annotations

import json
from typing import Any


def encode_body(body: Any) -> bytes:
    """Serialise a request body that has passed through the checks above."""
    return json.dumps(body, allow_nan=False, separators=(",", ":")).encode("utf-8")
