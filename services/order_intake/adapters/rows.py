"""Many rows as one statement parameter: a JSON document (an array of arrays, one per row, the
columns in order) that the SQL unpacks with ``jsonb_array_elements``.

One array parameter per column (``unnest(CAST(:x AS text[]), ...)``) made asyncpg check every
single value against ``collections.abc.Iterable`` and ``Sized`` in Python (it looks for nested
arrays): tens of thousands of calls per batch of orders. orjson writes the document in C;
PostgreSQL parses it once (bench/hotpath_intake.py, docs/benchmark.md "Fifth wave")."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

Fragment = orjson.Fragment  # a value that is JSON already (a model's own JSON): embedded as is


def json_rows(rows: list[Any]) -> str:
    """The rows as the text of one JSON array (datetimes as RFC 3339, a naive one as UTC, as
    asyncpg sends it; UUIDs as text)."""
    return orjson.dumps(rows, option=orjson.OPT_NAIVE_UTC).decode()


def utc(value: datetime) -> datetime:
    """``value`` in UTC (JSON's offsets have no seconds; a naive value is UTC already)."""
    return value if value.tzinfo is None else value.astimezone(UTC)
