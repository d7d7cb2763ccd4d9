"""Use case: receive returned units of shipped lines and record the refund due."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.contracts.events import ReturnReceived
from services.fulfillment.domain.returns import ReturnableLine, ReturnRequestLine, check_return, new_return_id
from services.fulfillment.service_layer.packing import OrderNotFound
from services.fulfillment.service_layer.prices import OrderPrices, PricesUnavailable
from services.fulfillment.service_layer.publishing import publish_about_order


async def receive_return(
    conn: AsyncConnection, order_id: str, requested: list[ReturnRequestLine], prices: OrderPrices
) -> dict[str, Any]:
    """Check the limits (shipped minus already returned per line), store the return, publish
    ReturnReceived. ``prices``: what order intake says the lines were sold at (ask it before the
    transaction, see service_layer/prices.py). Raises OrderNotFound or the domain's ReturnRefused."""
    # Lock the order's snapshot so two concurrent returns cannot both pass the limit.
    snapshot = (
        await conn.execute(
            text("SELECT lines FROM allocation_snapshots WHERE order_id = :o FOR UPDATE"), {"o": order_id}
        )
    ).scalar()
    if not snapshot:
        raise OrderNotFound(order_id)
    lines = sorted(snapshot, key=lambda ln: ln["line_id"])
    known = {ln["line_id"] for ln in lines}
    unpriced = sorted({r.line_id for r in requested if r.line_id in known and r.line_id not in prices.unit_prices})
    if unpriced:  # never refund a guess: order intake must know what the line was sold at
        raise PricesUnavailable(f"order intake has no price for line(s) {', '.join(unpriced)}")
    shipped: dict[str, int] = {}
    shipped_from: dict[str, set[str]] = {}
    for row in (
        await conn.execute(
            text(
                "SELECT l.line_id, l.location_id, sum(l.qty) AS qty FROM shipment_lines l JOIN shipments s"
                " USING (shipment_id) WHERE s.order_id = :o AND s.status = 'shipped'"
                " GROUP BY l.line_id, l.location_id"
            ),
            {"o": order_id},
        )
    ).all():
        shipped[row.line_id] = shipped.get(row.line_id, 0) + int(row.qty)
        shipped_from.setdefault(row.line_id, set()).add(row.location_id)
    returned: dict[str, int] = {
        row.line_id: row.qty
        for row in await conn.execute(
            text("SELECT line_id, sum(qty) AS qty FROM return_lines WHERE order_id = :o GROUP BY line_id"),
            {"o": order_id},
        )
    }
    returnable = {
        ln["line_id"]: ReturnableLine(
            ln["line_id"],
            ln["sku"],
            prices.unit_prices.get(ln["line_id"], Decimal(0)),  # only requested lines are refunded
            int(shipped.get(ln["line_id"], 0)),
            int(returned.get(ln["line_id"], 0)),
            frozenset(shipped_from.get(ln["line_id"], ())),
        )
        for ln in lines
    }
    return_lines = check_return(requested, returnable)
    return_id = new_return_id()
    total = sum((ln.refund for ln in return_lines), Decimal(0))
    currency = prices.currency
    await conn.execute(
        text("INSERT INTO returns (return_id, order_id, refund_total, currency) VALUES (:r, :o, :t, :c)"),
        {"r": return_id, "o": order_id, "t": total, "c": currency},
    )
    await conn.execute(
        text(
            "INSERT INTO return_lines (return_id, line_no, order_id, line_id, sku, qty, condition,"
            " location_id, bin,"
            " lot, refund) SELECT :r, n, :o, l, s, q, c, loc, b, lot, CAST(f AS numeric)"
            " FROM unnest(CAST(:n AS int[]), CAST(:l AS text[]), CAST(:s AS text[]), CAST(:q AS int[]),"
            " CAST(:c AS text[]), CAST(:loc AS text[]), CAST(:b AS text[]), CAST(:lot AS text[]),"
            " CAST(:f AS text[])) AS t(n, l, s, q, c, loc, b, lot, f)"
        ),
        {
            "r": return_id,
            "o": order_id,
            "n": list(range(1, len(return_lines) + 1)),
            "l": [ln.line_id for ln in return_lines],
            "s": [ln.sku for ln in return_lines],
            "q": [ln.qty for ln in return_lines],
            "c": [ln.condition for ln in return_lines],
            "loc": [ln.location_id for ln in return_lines],
            "b": [ln.bin for ln in return_lines],
            "lot": [ln.lot for ln in return_lines],
            "f": [str(ln.refund) for ln in return_lines],
        },
    )
    event = ReturnReceived(order_id=order_id, return_id=return_id, lines=return_lines, refund_total=total)
    await publish_about_order(conn, order_id, event)
    return {
        "return_id": return_id,
        "order_id": order_id,
        "currency": currency,
        "refund_total": str(total),
        "lines": [ln.model_dump(mode="json") for ln in return_lines],
    }
