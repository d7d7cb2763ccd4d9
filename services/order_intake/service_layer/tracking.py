"""Use cases that keep the order view current from downstream events, and change requests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.contracts import Topic, new_envelope
from libs.contracts.envelope import EventMessage
from libs.contracts.events import (
    AllocationResult,
    Event,
    LineChange,
    OrderCancelled,
    OrderModified,
    OrderPacked,
    OrderShipped,
    PackRequested,
    ReturnReceived,
)
from libs.contracts.orders import MAX_LINES, Problem
from libs.messaging import OutboxMessage, claim_new_events
from services.order_intake.adapters.rows import json_rows
from services.order_intake.domain.orders import check_cancel, order_status
from services.order_intake.service_layer import rules
from services.order_intake.service_layer.placing import SOURCE, add_timeline, timeline_insert


async def apply_downstream_events(conn: AsyncConnection, messages: Sequence[EventMessage]) -> None:
    """Allocation and fulfillment events update line quantities, status and the timeline."""
    fresh = await claim_new_events(conn, [m.envelope.event_id for m in messages])
    latest: dict[str, AllocationResult] = {}
    timeline: list[tuple[str, str, str, str]] = []
    returns: list[tuple[str, str, int]] = []
    for m in messages:
        env, event = m.envelope, m.event
        if env.event_id not in fresh:
            continue
        fresh.discard(env.event_id)  # the same event twice in one batch counts once
        order_id = getattr(event, "order_id", None)
        if order_id is None:
            continue
        if isinstance(event, AllocationResult):
            if order_id not in latest or event.version > latest[order_id].version:
                latest[order_id] = event
        elif isinstance(event, ReturnReceived):
            returns += [(order_id, ln.line_id, ln.qty) for ln in event.lines]
        timeline.append((order_id, env.event_type, env.source, summarise(event)))
    if returns:
        await conn.execute(text(
            "UPDATE order_lines l SET returned = l.returned + r.q FROM (SELECT e->>0 AS o, e->>1 AS l,"
            " CAST(e->>2 AS int) AS q FROM jsonb_array_elements(CAST(:rows AS jsonb)) AS e) r"
            " WHERE l.order_id = r.o AND l.line_id = r.l"), {"rows": json_rows(returns)})
    if latest:  # the snapshots and the timeline in one statement
        results = list(latest.values())
        await conn.execute(_APPLY_SNAPSHOTS, {
            "o": [r.order_id for r in results], "v": [r.version for r in results],
            "s": [order_status(r.lines, known=True) for r in results],
            "rows": json_rows([(r.order_id, ln.line_id, ln.sku, ln.qty, ln.allocated, ln.backordered, ln.packed,
                                ln.shipped, ln.cancelled, ln.on_hold, ln.backorder_reason)
                               for r in results for ln in r.lines]),
            "timeline": json_rows(timeline)})
    else:
        await add_timeline(conn, timeline)


# Only snapshots newer than what we hold win (per-order order is kept, but be safe on replays):
# the status row of each order whose version is older, then the lines of exactly those orders,
# then the batch's timeline entries, in one statement (a round trip per table was most of a small
# batch's cost: docs/benchmark.md, eleventh wave).
# The status update takes arrays, not a JSON document: the planner expects few rows from unnest
# and looks each order up by its key; from jsonb_array_elements it expected 100 and read the
# narrow table whole (a steady run read 4.9 million rows of order_status in 352 sequential scans:
# docs/benchmark.md, tenth wave).
_APPLY_SNAPSHOTS = text(
    "WITH applied AS (UPDATE order_status o SET allocation_version = r.v, status = r.s, updated_at = now()"
    " FROM unnest(CAST(:o AS text[]), CAST(:v AS int[]), CAST(:s AS text[])) AS r(o, v, s)"
    " WHERE o.order_id = r.o AND o.allocation_version < r.v RETURNING o.order_id),"
    " lines AS (INSERT INTO order_lines AS l (order_id, line_id, sku, qty, unit_price, allocated, backordered, packed,"
    " shipped, cancelled, on_hold, backorder_reason)"
    " SELECT e->>0, e->>1, e->>2, CAST(e->>3 AS int), 0, CAST(e->>4 AS int), CAST(e->>5 AS int), CAST(e->>6 AS int),"
    " CAST(e->>7 AS int), CAST(e->>8 AS int), CAST(e->>9 AS bool), e->>10"
    " FROM jsonb_array_elements(CAST(:rows AS jsonb)) AS e JOIN applied a ON a.order_id = e->>0"
    " ON CONFLICT (order_id, line_id) DO UPDATE SET qty = EXCLUDED.qty, allocated = EXCLUDED.allocated,"
    " backordered = EXCLUDED.backordered, packed = EXCLUDED.packed, shipped = EXCLUDED.shipped,"
    " cancelled = EXCLUDED.cancelled, on_hold = EXCLUDED.on_hold, backorder_reason = EXCLUDED.backorder_reason) "
    + timeline_insert("timeline")
)


def summarise(event: Event) -> str:
    """One readable timeline sentence per event."""
    if isinstance(event, AllocationResult):
        parts = [f"{ln.line_id}: {ln.allocated} allocated, {ln.backordered} backordered"
                 + (f", {ln.packed} packed" if ln.packed else "")
                 + (f", {ln.shipped} shipped" if ln.shipped else "")
                 + (f", {ln.cancelled} cancelled" if ln.cancelled else "")
                 + (" (on hold)" if ln.on_hold else "")
                 for ln in event.lines]
        detail = f" ({event.detail})" if event.detail else ""
        return f"{event.change}{detail}: " + "; ".join(parts)
    if isinstance(event, PackRequested):
        return f"pack requested as shipment {event.shipment_id}"
    if isinstance(event, OrderPacked):
        return f"shipment {event.shipment_id} packed: " + ", ".join(f"{ln.sku} x{ln.qty}" for ln in event.lines)
    if isinstance(event, OrderShipped):
        return f"shipment {event.shipment_id} shipped with {event.carrier} {event.tracking_number}"
    if isinstance(event, ReturnReceived):
        return f"return {event.return_id}: refund due {event.refund_total}"
    return type(event).__name__


class OrderNotFound(LookupError):
    pass


_KEPT = " (the order is held: sent to allocation on release)"


class ChangeRefused(ValueError):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.problem}" for p in problems))
        self.problems = problems


async def _order_lines(conn: AsyncConnection, order_id: str, *, lock: bool) -> dict[str, Any]:
    row = (await conn.execute(
        text("SELECT order_id, status FROM order_status WHERE order_id = :o" + (" FOR UPDATE" if lock else "")),
        {"o": order_id},
    )).first()
    if row is None:
        raise OrderNotFound(order_id)
    lines = (await conn.execute(text("SELECT * FROM order_lines WHERE order_id = :o"), {"o": order_id})).all()
    return {ln.line_id: ln for ln in lines}


async def cancel_order(conn: AsyncConnection, order_id: str, line_ids: list[str] | None, reason: str) -> None:
    lines = await _order_lines(conn, order_id, lock=True)
    problems = check_cancel(line_ids, {k: v.qty for k, v in lines.items()})
    if problems:
        raise ChangeRefused(problems)
    if line_ids is None and await rules.cancel_held_order(conn, order_id, reason):
        return  # never announced: nothing to tell downstream
    if line_ids is None:
        await rules.end_announced_hold(conn, order_id)
    event = OrderCancelled(order_id=order_id, line_ids=line_ids, reason=reason)
    kept = await rules.publish_or_keep(
        conn, order_id, [OutboxMessage(Topic.ORDERS, order_id, new_envelope(event, source=SOURCE, correlation_id=order_id))])
    what = "order" if line_ids is None else "line(s) " + ", ".join(line_ids)
    await add_timeline(conn, [(order_id, "OrderCancelled", SOURCE,
                               f"cancellation of {what} requested: {reason}" + (_KEPT if kept else ""))])


async def modify_order(conn: AsyncConnection, order_id: str, changes: list[LineChange], priority: int | None) -> None:
    lines = await _order_lines(conn, order_id, lock=True)
    problems: list[Problem] = []
    for i, change in enumerate(changes):
        current = lines.get(change.line_id)
        if current is not None and current.sku != change.sku:
            problems.append(Problem(field=f"lines.{i}.sku", problem=f"line {change.line_id!r} is for {current.sku!r}; add a new line instead"))
        if current is not None and change.qty < current.shipped + current.packed:
            problems.append(Problem(
                field=f"lines.{i}.qty", problem=f"cannot go below the {current.shipped + current.packed} already packed or shipped"))
    added = {c.line_id for c in changes} - set(lines)
    if len(lines) + len(added) > MAX_LINES:
        problems.append(Problem(field="lines", problem=f"an order has at most {MAX_LINES} lines; it has {len(lines)}"))
    if not changes and priority is None:
        problems.append(Problem(field="lines", problem="nothing to change"))
    if problems:
        raise ChangeRefused(problems)
    event = OrderModified(order_id=order_id, lines=changes, priority=priority)
    kept = await rules.publish_or_keep(
        conn, order_id, [OutboxMessage(Topic.ORDERS, order_id, new_envelope(event, source=SOURCE, correlation_id=order_id))])
    summary = ", ".join(f"{c.line_id} -> {c.qty}" for c in changes) + (f" priority -> {priority}" if priority is not None else "")
    await add_timeline(conn, [(order_id, "OrderModified", SOURCE, f"modification requested: {summary}" + (_KEPT if kept else ""))])


async def order_channel(conn: AsyncConnection, order_id: str) -> str | None:
    """The channel that placed the order, or None when there is no such order."""
    return (await conn.execute(text("SELECT channel FROM orders WHERE order_id = :o"), {"o": order_id})).scalar()


async def order_view(conn: AsyncConnection, order_id: str) -> dict[str, Any]:
    order = (await conn.execute(text("SELECT o.*, s.status FROM orders o JOIN order_status s USING (order_id) WHERE order_id = :o"), {"o": order_id})).mappings().first()
    if order is None:
        raise OrderNotFound(order_id)
    lines = (await conn.execute(
        text("SELECT * FROM order_lines WHERE order_id = :o ORDER BY line_id"), {"o": order_id})).mappings().all()
    events = (await conn.execute(
        text("SELECT at, event_type, source, summary FROM timeline WHERE order_id = :o ORDER BY id"),
        {"o": order_id})).mappings().all()
    return {
        "order_id": order["order_id"],
        "channel": order["channel"],
        "external_id": order["external_id"],
        "status": order["status"],
        "placed_at": order["placed_at"],
        "currency": order["currency"],
        "priority": order["priority"],
        "ship_complete": order["ship_complete"],
        "pickup_location_id": order["pickup_location_id"],
        "customer": order["customer"],
        "ship_to": order["ship_to"],
        "lines": [
            {
                "line_id": ln["line_id"], "sku": ln["sku"], "qty": ln["qty"], "unit_price": str(ln["unit_price"]),
                "allocated": ln["allocated"], "backordered": ln["backordered"], "packed": ln["packed"],
                "shipped": ln["shipped"], "cancelled": ln["cancelled"], "returned": ln["returned"],
                "on_hold": ln["on_hold"], "backorder_reason": ln["backorder_reason"],
            }
            for ln in lines
        ],
        "timeline": [dict(e) for e in events],
        **await rules.rules_view(conn, order_id),  # hold, which rule did what, tags
    }


async def list_orders(conn: AsyncConnection, status: str | None, channel: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text(
            "SELECT s.order_id, s.channel, o.external_id, s.status, o.placed_at, s.received_at"
            " FROM order_status s JOIN orders o USING (order_id)"
            " WHERE (CAST(:s AS text) IS NULL OR s.status = :s) AND (CAST(:c AS text) IS NULL OR s.channel = :c)"
            " ORDER BY s.received_at DESC LIMIT :n OFFSET :off"
        ),
        {"s": status, "c": channel, "n": limit, "off": offset},
    )
    return [dict(r) for r in rows.mappings()]


async def orders_by_channel_and_status(conn: AsyncConnection) -> list[dict[str, Any]]:
    """Report (SPEC 3.8): how many orders each channel has in each status."""
    rows = await conn.execute(
        text("SELECT channel, status, count(*) AS orders FROM order_status GROUP BY channel, status ORDER BY channel, status")
    )
    return [dict(r) for r in rows.mappings()]
