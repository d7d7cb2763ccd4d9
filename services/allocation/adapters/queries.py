"""SQL forms of two domain rules, for the places where the database must apply them over many rows.

Each is written once here and pinned to its Python definition by
``tests/integration/test_allocation_queries.py``:
- the fair-queue order, ``domain.model.queue_key``: ``QUEUE_ORDER`` (an ORDER BY) and
  ``QUEUE_KEY`` (a row value that compares like the key), for the queue loader, the queue view
  and an order's place in the queue (the index ``order_lines_queue_idx`` follows it too);
- free units per location, ``domain.availability.free_by_location``: ``FREE_UNITS``, summed by
  ``free_units_by_location`` for the availability feed and the stock report alike (both then
  apply ``domain.availability.available_to_promise``).

``{t}`` stands for the table alias with its dot (``"l."``), ``{now}`` for the instant expired lots
are judged at.

Collation: Python compares ids by code point, PostgreSQL text by the database's collation. They
agree on ids of lower case letters and digits (the OMS's order ids, ``ord_<hex>``, differ only
after their common prefix); a database created with a linguistic locale (en_US) may order ids
with punctuation or mixed case differently. Ties on (priority, placed_at) are needed for it to
matter; a database created with ``--locale=C`` (or ``COLLATE "C"`` columns) rules it out.
"""

from __future__ import annotations

from datetime import datetime

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

# (column, descending): the order of domain.model.queue_key.
_QUEUE = (("priority", True), ("placed_at", False), ("order_id", False), ("line_id", False))

QUEUE_ORDER = ", ".join(f"{{t}}{c}{' DESC' if desc else ''}" for c, desc in _QUEUE)
QUEUE_KEY = "(" + ", ".join(f"{'-' if desc else ''}{{t}}{c}" for c, desc in _QUEUE) + ")"

# A position's free units where allocation may take them (p: positions, l: locations LEFT JOINed).
FREE_UNITS = (
    "CASE WHEN p.sellable AND coalesce(l.active, false) AND (p.expires_at IS NULL OR p.expires_at > {now})"
    " THEN greatest(p.on_hand - p.reserved, 0) ELSE 0 END"
)


async def free_units_by_location(conn: AsyncConnection, skus: list[str], now: datetime) -> dict[str, dict[str, int]]:
    """Free units per SKU and location, summed by the database (per location, not per bin/lot)
    and sent back as one JSON document ``{sku: {location: free}}``: one row and one ``orjson``
    parse instead of a row per SKU and location through SQLAlchemy's result machinery (the
    availability feed asks for a thousand SKUs a window)."""
    free: dict[str, dict[str, int]] = {s: {} for s in skus}
    found = (await conn.execute(text(
        "SELECT json_object_agg(sku, at)::text FROM ("
        " SELECT sku, json_object_agg(location_id, free) AS at FROM ("
        f"  SELECT p.sku, p.location_id, sum({FREE_UNITS.format(now=':now')}) AS free"
        "   FROM positions p LEFT JOIN locations l USING (location_id)"
        "   WHERE p.sku = ANY(:s) GROUP BY p.sku, p.location_id) per_location"
        " GROUP BY sku) per_sku"), {"s": skus, "now": now})).scalar()
    if found:
        free.update(orjson.loads(found))
    return free
