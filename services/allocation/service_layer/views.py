"""Read-only views: an order's allocation with explanations, the backorder queue, policy, reports."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.allocation.adapters.queries import QUEUE_KEY, QUEUE_ORDER, free_units_by_location
from services.allocation.domain.availability import available_by_location
from services.allocation.domain.policy import DEFAULT_CHANNEL, Policy, policy_from_json


class NotFound(LookupError):
    pass


async def allocation_view(conn: AsyncConnection, order_id: str) -> dict[str, Any]:
    order = (await conn.execute(text("SELECT * FROM orders WHERE order_id = :o"), {"o": order_id})).mappings().first()
    if order is None:
        raise NotFound(order_id)
    lines = (await conn.execute(
        text("SELECT * FROM order_lines WHERE order_id = :o ORDER BY line_id"), {"o": order_id})).mappings().all()
    allocations = (await conn.execute(
        text("SELECT allocation_id, line_id, sku, location_id, bin, lot, qty, status, shipment_id, rule, manual,"
             " created_at FROM allocations WHERE order_id = :o ORDER BY allocation_id"), {"o": order_id},
    )).mappings().all()
    # Place in the queue: open, not held backorders of the same SKU that come first.
    ahead = {
        r.line_id: r.ahead
        for r in await conn.execute(
            text(
                "SELECT l.line_id, (SELECT count(*) FROM order_lines q WHERE q.sku = l.sku AND q.backordered > 0"
                f" AND NOT q.on_hold AND {QUEUE_KEY.format(t='q.')} < {QUEUE_KEY.format(t='l.')}) AS ahead"
                " FROM order_lines l WHERE l.order_id = :o AND l.backordered > 0 AND NOT l.on_hold"
            ),
            {"o": order_id},
        )
    }
    return {
        "order_id": order["order_id"],
        "channel": order["channel"],
        "placed_at": order["placed_at"],
        "priority": order["priority"],
        "ship_complete": order["ship_complete"],
        "pickup_location_id": order["pickup_location_id"],
        "ship_to_country": order["country"],
        "version": order["version"],
        "lines": [
            {k: ln[k] for k in ("line_id", "sku", "qty", "allocated", "backordered", "packed", "shipped", "cancelled",
                                "on_hold", "backorder_reason")}
            for ln in lines
        ],
        # Live units (allocated or packed); shipped and released ones are kept in "history".
        "allocations": [_allocation(a) for a in allocations if a["status"] in ("allocated", "packed")],
        "history": [_allocation(a) for a in allocations if a["status"] not in ("allocated", "packed")],
        "backorders": [
            {
                "line_id": ln["line_id"], "sku": ln["sku"], "qty": ln["backordered"], "on_hold": ln["on_hold"],
                "reason": ln["backorder_reason"], "ahead_in_queue": ahead.get(ln["line_id"]),
            }
            for ln in lines if ln["backordered"] > 0
        ],
        "locations": json.loads(order["location_choice"]) if order["location_choice"] else None,
        "presales": await presales_of(conn, order_id),
    }


async def presales_of(conn: AsyncConnection, order_id: str) -> list[dict[str, Any]]:
    """The order's backordered units promised from inbound purchase orders (service_layer/presales.py)."""
    rows = await conn.execute(
        text("SELECT p.line_id, p.sku, p.purchase_order_id, s.location_id, p.qty, p.promised_date FROM presales p"
             " LEFT JOIN inbound_supply s USING (purchase_order_id) WHERE p.order_id = :o"
             " ORDER BY p.line_id, p.promised_date, p.purchase_order_id"),
        {"o": order_id},
    )
    return [dict(r) for r in rows.mappings()]


def _allocation(a: Any) -> dict[str, Any]:
    return {
        "allocation_id": a["allocation_id"], "line_id": a["line_id"], "sku": a["sku"],
        "location_id": a["location_id"], "bin": a["bin"], "lot": a["lot"], "qty": a["qty"],
        "status": a["status"], "shipment_id": a["shipment_id"], "manual": a["manual"],
        "created_at": a["created_at"], "explanation": a["rule"],
    }


async def backorder_queue(conn: AsyncConnection, sku: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
    """Open backorders in fair-queue order (held lines listed too, flagged, outside the queue)."""
    rows = await conn.execute(
        text(
            "SELECT l.order_id, l.line_id, l.sku, l.backordered AS qty, l.priority, l.placed_at, l.on_hold,"
            " l.backorder_reason AS reason, o.channel, o.ship_complete FROM order_lines l JOIN orders o USING (order_id)"
            " WHERE l.backordered > 0 AND (CAST(:s AS text) IS NULL OR l.sku = :s)"
            f" ORDER BY l.sku, l.on_hold, {QUEUE_ORDER.format(t='l.')} LIMIT :n OFFSET :off"
        ),
        {"s": sku, "n": limit, "off": offset},
    )
    out = []
    position: dict[str, int] = {}
    for r in rows.mappings():
        item = dict(r)
        if not r["on_hold"]:
            position[r["sku"]] = position.get(r["sku"], offset) + 1
            item["queue_position"] = position[r["sku"]]
        else:
            item["queue_position"] = None
        out.append(item)
    return out


async def get_policy(conn: AsyncConnection, channel: str | None) -> dict[str, Any]:
    """The policy in force for ``channel`` (its own, else the default '*')."""
    wanted = [channel, DEFAULT_CHANNEL] if channel else [DEFAULT_CHANNEL]
    rows = {r.channel: r for r in await conn.execute(
        text("SELECT channel, document, version FROM policies WHERE channel = ANY(:c)"), {"c": wanted})}
    for ch in wanted:
        if ch in rows:
            doc = policy_from_json({**rows[ch].document, "version": rows[ch].version}).to_json()
            return {**doc, "applies_to": channel or DEFAULT_CHANNEL, "inherited": ch != (channel or DEFAULT_CHANNEL)}
    return {**Policy().to_json(), "applies_to": channel or DEFAULT_CHANNEL, "inherited": True, "built_in": True}


async def stock_report(conn: AsyncConnection, sku: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
    """Per SKU: on hand, reserved, backordered demand, and available as SPEC 3 defines it: on hand
    less reserved less safety stock, counting sellable, unexpired stock at active locations only
    (``domain.availability.available_by_location`` under the default policy, the availability
    feed's total)."""
    rows = await conn.execute(
        text(
            "WITH s AS (SELECT p.sku, sum(p.on_hand) AS on_hand, sum(p.reserved) AS reserved,"
            " sum(CASE WHEN NOT p.sellable THEN p.on_hand ELSE 0 END) AS quarantined"
            " FROM positions p WHERE CAST(:s AS text) IS NULL OR p.sku = :s GROUP BY p.sku),"
            " b AS (SELECT sku, sum(backordered) AS backordered, sum(backordered) FILTER (WHERE on_hold) AS on_hold"
            " FROM order_lines WHERE backordered > 0 AND (CAST(:s AS text) IS NULL OR sku = :s) GROUP BY sku)"
            " SELECT coalesce(s.sku, b.sku) AS sku, coalesce(s.on_hand, 0) AS on_hand, coalesce(s.reserved, 0) AS reserved,"
            " coalesce(b.backordered, 0) AS backordered_demand, coalesce(b.on_hold, 0) AS backordered_on_hold,"
            " coalesce(s.quarantined, 0) AS quarantined"
            " FROM s FULL JOIN b ON s.sku = b.sku ORDER BY 1 LIMIT :n OFFSET :off"
        ),
        {"s": sku, "n": limit, "off": offset},
    )
    out: list[dict[str, Any]] = [{k: (int(v) if k != "sku" else v) for k, v in r.items()} for r in rows.mappings()]
    if sku is not None and not out and offset == 0:  # a SKU we have not heard of yet: nothing of it
        out = [{"sku": sku, "on_hand": 0, "reserved": 0, "backordered_demand": 0, "backordered_on_hold": 0,
                "quarantined": 0}]
    free = await free_units_by_location(conn, [r["sku"] for r in out], datetime.now(UTC))
    policy = await default_policy(conn)
    for r in out:
        quarantined = r.pop("quarantined")  # (after available, as the report always listed them)
        r["available"] = sum(available_by_location(r["sku"], free[r["sku"]], policy).values())
        r["quarantined"] = quarantined
    return out


async def default_policy(conn: AsyncConnection) -> Policy:
    row = (await conn.execute(text("SELECT document, version FROM policies WHERE channel = :c"),
                              {"c": DEFAULT_CHANNEL})).first()
    return Policy() if row is None else policy_from_json({**row.document, "version": row.version})


async def reserved_positions(conn: AsyncConnection, location_id: str | None, sku: str | None) -> list[dict[str, Any]]:
    """What allocation reserves at each position of a location or of a SKU (positions with
    nothing reserved are left out). Inventory's stock take reads this at preview and submit time
    instead of keeping a mirror fed by the availability topic."""
    rows = await conn.execute(
        text(
            "SELECT sku, location_id, bin, lot, reserved FROM positions WHERE reserved > 0"
            " AND (CAST(:l AS text) IS NULL OR location_id = :l) AND (CAST(:s AS text) IS NULL OR sku = :s)"
            " ORDER BY sku, location_id, bin, lot"
        ),
        {"l": location_id, "s": sku},
    )
    return [dict(r) for r in rows.mappings()]


async def backorders_by_age(conn: AsyncConnection) -> dict[str, Any]:
    """Backordered and unallocated orders grouped by how long ago they were placed."""
    rows = await conn.execute(
        text(
            "WITH o AS (SELECT l.order_id, min(l.placed_at) AS placed_at, sum(l.backordered) AS backordered,"
            " bool_or(l.on_hold) AS on_hold, sum(l.allocated + l.packed + l.shipped) = 0 AS unallocated"
            " FROM order_lines l WHERE l.backordered > 0 GROUP BY l.order_id)"
            " SELECT CASE WHEN now() - placed_at < interval '1 hour' THEN '<1h'"
            " WHEN now() - placed_at < interval '1 day' THEN '1h-1d'"
            " WHEN now() - placed_at < interval '3 days' THEN '1d-3d'"
            " WHEN now() - placed_at < interval '7 days' THEN '3d-7d' ELSE '>7d' END AS bucket,"
            " count(*) AS orders, count(*) FILTER (WHERE unallocated) AS unallocated_orders,"
            " count(*) FILTER (WHERE on_hold) AS on_hold_orders, sum(backordered) AS backordered_units,"
            " min(placed_at) AS oldest_placed_at FROM o GROUP BY 1"
        )
    )
    order = ["<1h", "1h-1d", "1d-3d", "3d-7d", ">7d"]
    found = {r["bucket"]: r for r in rows.mappings()}
    oldest = (await conn.execute(text(
        "SELECT order_id, min(placed_at) AS placed_at, sum(backordered) AS backordered FROM order_lines"
        " WHERE backordered > 0 GROUP BY order_id ORDER BY 2 LIMIT 20"))).mappings().all()
    return {
        "buckets": [
            {"age": b, "orders": int(found[b]["orders"]) if b in found else 0,
             "unallocated_orders": int(found[b]["unallocated_orders"]) if b in found else 0,
             "on_hold_orders": int(found[b]["on_hold_orders"]) if b in found else 0,
             "backordered_units": int(found[b]["backordered_units"]) if b in found else 0,
             "oldest_placed_at": found[b]["oldest_placed_at"] if b in found else None}
            for b in order
        ],
        "oldest_orders": [dict(r) | {"backordered": int(r["backordered"])} for r in oldest],
    }
