"""Sales reports (issue 11 part 4): what was ordered, allocated, shipped and returned, by channel,
by SKU or by day, in units and in value per currency.

Read from intake's order view, which every allocation result and return keeps current. Each row
is one (group, currency): values are never added across currencies. The quantities are the
lines' states as they stand now (SPEC 3: ``qty = allocated + backordered + packed + shipped +
cancelled``):

* ``ordered``: the lines' quantities (after modifications; cancelled units included);
* ``cancelled``, ``backordered``: as the order view shows them;
* ``allocated``: units holding stock for the order and not yet shipped (allocated + packed);
* ``shipped``: units shipped (returned units included: they were shipped);
* ``returned``: shipped units that came back.

A value is units x the line's unit price (a return's refund may differ; fulfillment records that).
Orders count in the day they were placed (``placed_at``, UTC); ``date_from``/``date_to`` are
inclusive days.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

Grouping = Literal["channel", "sku", "day"]
MEASURES = ("ordered", "cancelled", "backordered", "allocated", "shipped", "returned")

_GROUP_KEY: dict[str, str] = {
    "channel": "o.channel",
    "sku": "l.sku",
    "day": "to_char(o.placed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
}
_UNITS: dict[str, str] = {
    "ordered": "l.qty",
    "cancelled": "l.cancelled",
    "backordered": "l.backordered",
    "allocated": "l.allocated + l.packed",
    "shipped": "l.shipped",
    "returned": "l.returned",
}


async def sales_report(
    conn: AsyncConnection, group_by: Grouping, date_from: date | None, date_to: date | None,
    channel: str | None, currency: str | None,
) -> list[dict[str, Any]]:
    """One row per (group, currency), ordered by group then currency."""
    key = _GROUP_KEY[group_by]  # a fixed expression per grouping, never user text
    sums = ", ".join(f"sum({expr}) AS {name}_units, sum(({expr}) * l.unit_price) AS {name}_value"
                     for name, expr in _UNITS.items())
    rows = await conn.execute(
        text(
            f"SELECT {key} AS key, o.currency, count(DISTINCT o.order_id) AS orders, {sums}"
            " FROM orders o JOIN order_lines l ON l.order_id = o.order_id"
            " WHERE (CAST(:start AS timestamptz) IS NULL OR o.placed_at >= :start)"
            " AND (CAST(:end AS timestamptz) IS NULL OR o.placed_at < :end)"
            " AND (CAST(:channel AS text) IS NULL OR o.channel = :channel)"
            " AND (CAST(:currency AS text) IS NULL OR o.currency = :currency)"
            " GROUP BY 1, 2 ORDER BY 1, 2"
        ),
        {
            "start": _utc_midnight(date_from),
            "end": _utc_midnight(date_to + timedelta(days=1)) if date_to is not None else None,
            "channel": channel,
            "currency": currency,
        },
    )
    return [
        {"key": r["key"], "currency": r["currency"], "orders": int(r["orders"]),
         **{name: {"units": int(r[f"{name}_units"]), "value": _money(r[f"{name}_value"])} for name in MEASURES}}
        for r in rows.mappings()
    ]


def _utc_midnight(day: date | None) -> datetime | None:
    return None if day is None else datetime.combine(day, time.min, tzinfo=UTC)


def _money(value: Any) -> str:
    """A decimal as a string with two places (four when the prices have them)."""
    amount = value.normalize() if value is not None else 0
    return f"{amount:.2f}" if amount == round(amount, 2) else f"{amount:.4f}"
