"""A result value with every type Prefect's JSON serializer marks, for the result tests."""

import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

SAMPLE = {
    "x": 1,
    "when": datetime(2026, 11, 23, 18, 30, tzinfo=timezone.utc),
    "day": date(2026, 11, 23),
    "took": timedelta(minutes=1, seconds=30),
    "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "price": Decimal("9.99"),
    "where": Path("/tmp/report.csv"),
    "tags": {"a", "b"},
    "items": [1, "two", None, 3.5],
}
