"""Pre-selling against inbound supply (issue 10 part 1), in the caller's transaction:

- ``record_purchase_orders``: mirror inventory's PurchaseOrderChanged events (highest version
  wins; inbox-deduplicated) and mark their SKUs for review;
- ``review_presales``: after the book has written a batch's or a command's changes, recompute
  the promises of every SKU that may be affected (``domain.inbound.plan_presales``), store them
  (table ``presales``), set the affected lines' backorder reasons and publish each affected
  order's snapshot again (an OrderBackordered AllocationResult whose lines carry ``presold`` and
  ``promised_date``).

Pre-sold units stay backordered (see docs/decisions.md, decision 12): the book never sees them,
so shelf stock, packing and the fair queue work exactly as before. When a purchase order's
receipt is booked, its StockAdjusted fills the queue in queue order (pre-sold lines included, at
their place), then its PurchaseOrderChanged ("received") ends the promises: lines still waiting
(a short receipt, or older lines took the units) say so in their reason.

Cost when nobody pre-sells: one indexed query per transaction (no open purchase order and no
pre-sale of the touched SKUs, nothing pending)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.contracts import Topic
from libs.contracts.envelope import EventMessage, envelope_of
from libs.contracts.events import PurchaseOrderChanged, StockAdjusted
from libs.messaging import OutboxMessage, claim_new_events, write_outbox
from services.allocation.adapters.repository import MARK_AVAILABILITY_CHANGED
from services.allocation.adapters.tables import SCHEMA
from services.allocation.domain.book import AllocationBook
from services.allocation.domain.inbound import (
    InboundSupply,
    Presale,
    PresellCap,
    WaitingLine,
    group_by_line,
    inbound_for_channel,
    plan_presales,
    presold_reason,
    reason_after,
)
from services.allocation.domain.model import Location, queue_key
from services.allocation.domain.policy import DEFAULT_CHANNEL, policy_from_json

SOURCE = "allocation"
SUPPLY_COLUMNS = "purchase_order_id, sku, location_id, qty, expected_date, status, received_qty"


async def record_purchase_orders(conn: AsyncConnection, messages: Sequence[EventMessage], *,
                                 review_now: bool = False) -> int:
    """Mirror the batch's PurchaseOrderChanged events; their SKUs are reviewed by the next
    ``review_presales`` (right here when ``review_now``: a batch with nothing else for the book)."""
    await _mark_arrived(conn, [ev for _, ev in messages if isinstance(ev, StockAdjusted) and ev.purchase_order_id])
    received = [(env, ev) for env, ev in messages if isinstance(ev, PurchaseOrderChanged)]
    if not received:
        return 0
    fresh = await claim_new_events(conn, [env.event_id for env, _ in received])
    newest: dict[str, PurchaseOrderChanged] = {}
    for env, ev in received:
        if env.event_id in fresh:
            kept = newest.get(ev.purchase_order_id)
            if kept is None or ev.version > kept.version:
                newest[ev.purchase_order_id] = ev
    if newest:
        evs = sorted(newest.values(), key=lambda e: e.purchase_order_id)
        await conn.execute(
            text(
                "INSERT INTO inbound_supply (purchase_order_id, sku, location_id, qty, expected_date,"
                " supplier_reference, status, received_qty, version, review_pending)"
                " SELECT *, true FROM unnest(CAST(:i AS text[]), CAST(:s AS text[]), CAST(:l AS text[]),"
                " CAST(:q AS int[]), CAST(:d AS date[]), CAST(:r AS text[]), CAST(:st AS text[]), CAST(:rq AS int[]),"
                " CAST(:v AS int[]))"
                " ON CONFLICT (purchase_order_id) DO UPDATE SET qty = EXCLUDED.qty,"
                " expected_date = EXCLUDED.expected_date, supplier_reference = EXCLUDED.supplier_reference,"
                " status = EXCLUDED.status, received_qty = EXCLUDED.received_qty, version = EXCLUDED.version,"
                " review_pending = true, updated_at = now() WHERE inbound_supply.version < EXCLUDED.version"
            ),
            {"i": [e.purchase_order_id for e in evs], "s": [e.sku for e in evs], "l": [e.location_id for e in evs],
             "q": [e.qty for e in evs], "d": [e.expected_date for e in evs],
             "r": [e.supplier_reference for e in evs], "st": [e.status for e in evs],
             "rq": [e.received_qty for e in evs], "v": [e.version for e in evs]},
        )
    if review_now:
        await review_presales(conn, None)
    return len(newest)


async def _mark_arrived(conn: AsyncConnection, receipts: list[StockAdjusted]) -> None:
    """A receipt booked against a purchase order: the order promises nothing from now on (its units
    are on the shelf and fill the queue in this transaction); its PurchaseOrderChanged "received"
    follows and confirms. Without this, a batch ending between the two would promise the arrived
    units a second time, for a moment. Idempotent (a replayed receipt sets the same)."""
    if not receipts:
        return
    await conn.execute(
        text("UPDATE inbound_supply s SET status = 'received', received_qty = u.q, review_pending = true,"
             " updated_at = now() FROM unnest(CAST(:i AS text[]), CAST(:q AS int[])) AS u(i, q)"
             " WHERE s.purchase_order_id = u.i AND s.status = 'open'"),
        {"i": [r.purchase_order_id for r in receipts], "q": [r.delta for r in receipts]},
    )


async def review_presales(conn: AsyncConnection, book: AllocationBook | None, *, today: date | None = None,
                          skus: Iterable[str] = ()) -> int:
    """Recompute the promises of the SKUs that may have changed: the ones the book touched that have
    open supply or pre-sales, the ones of orders the book published that hold pre-sales, the ones
    with a purchase order pending review, and ``skus``. Returns how many orders were republished."""
    today = today or (book.now if book is not None else datetime.now(UTC)).date()
    touched: set[str] = set(skus)
    published: list[str] = []
    if book is not None:
        touched |= book.changes.availability | {ln.sku for ln in book.changes.lines.values()}
        published = sorted({r.order_id for r in book.results})
    rows = await conn.execute(
        text("SELECT sku FROM inbound_supply WHERE review_pending"
             " UNION SELECT sku FROM inbound_supply WHERE status = 'open' AND sku = ANY(:t)"
             " UNION SELECT sku FROM presales WHERE sku = ANY(:t) OR order_id = ANY(:o)"),
        {"t": sorted(touched), "o": published},
    )
    review = sorted({r.sku for r in rows})
    if not review:
        return 0
    await conn.execute(text("INSERT INTO skus (sku) SELECT unnest(CAST(:s AS text[])) ON CONFLICT DO NOTHING"),
                       {"s": review})
    await conn.execute(text("SELECT sku FROM skus WHERE sku = ANY(:s) ORDER BY sku FOR UPDATE"), {"s": review})
    return await _review(conn, review, set(published), today)


async def _review(conn: AsyncConnection, skus: list[str], published: set[str], today: date) -> int:
    supplies = {r.purchase_order_id: InboundSupply(*r) for r in await conn.execute(
        text(f"SELECT {SUPPLY_COLUMNS} FROM inbound_supply WHERE sku = ANY(:s)"), {"s": skus})}
    old = [Presale(*r) for r in await conn.execute(
        text("SELECT order_id, line_id, purchase_order_id, sku, qty, promised_date FROM presales WHERE sku = ANY(:s)"),
        {"s": skus})]
    waiting_rows = (await conn.execute(
        text("SELECT l.order_id, l.line_id, l.sku, l.backordered, l.priority, l.placed_at, l.backorder_reason,"
             " o.channel, o.country, o.pickup_location_id FROM order_lines l JOIN orders o USING (order_id)"
             " WHERE l.sku = ANY(:s) AND l.backordered > 0 AND NOT l.on_hold"),
        {"s": skus},
    )).all()
    waiting = {(r.order_id, r.line_id): r for r in waiting_rows}
    locations = {r.location_id: Location(
        location_id=r.location_id, name=r.name, kind=r.kind, country=r.country, active=r.active,
        ships_to=tuple(r.ships_to or ()), channels=None if r.channels is None else tuple(r.channels))
        for r in await conn.execute(text(
            "SELECT location_id, name, kind, country, active, ships_to, channels FROM locations"))}
    caps = {r.channel: policy_from_json({**r.document, "version": r.version}).presell
            for r in await conn.execute(text("SELECT channel, document, version FROM policies"))}

    def caps_of(channel: str) -> tuple[PresellCap, ...]:
        return caps.get(channel, caps.get(DEFAULT_CHANNEL, ()))

    lines = [WaitingLine(r.order_id, r.line_id, r.sku, r.backordered, r.channel, r.country,
                         queue_key(r.priority, r.placed_at, r.order_id, r.line_id), r.pickup_location_id)
             for r in waiting_rows]
    plan = plan_presales(lines, supplies.values(), locations, caps_of, today)
    new = plan.presales
    old_by_line, new_by_line = group_by_line(old), group_by_line(new)

    reasons: dict[tuple[str, str], str] = {}
    details: dict[str, list[str]] = {}
    for key in sorted(set(old_by_line) | set(new_by_line)):
        before, after = sorted(old_by_line.get(key, [])), sorted(new_by_line.get(key, []))
        row = waiting.get(key)
        if row is None:
            continue  # allocated, held or cancelled meanwhile: the book said so
        if after:
            reason = presold_reason(after, supplies)
        else:
            kept = {p.purchase_order_id for p in after}
            reason = reason_after([p for p in before if p.purchase_order_id not in kept], supplies, today)
        if before != after or row.backorder_reason != reason:
            reasons[key] = reason
            units = sum(p.qty for p in after)
            details.setdefault(key[0], []).append(
                f"{key[1]}: {units} pre-sold" if after else f"{key[1]}: no longer pre-sold")
    for order_id in published & {k[0] for k in new_by_line}:
        details.setdefault(order_id, [])  # the book published it without its pre-sales: again with them

    await conn.execute(text("DELETE FROM presales WHERE sku = ANY(:s)"), {"s": skus})
    if new:
        await conn.execute(
            text("INSERT INTO presales (order_id, line_id, purchase_order_id, sku, qty, promised_date)"
                 " SELECT * FROM unnest(CAST(:o AS text[]), CAST(:l AS text[]), CAST(:p AS text[]),"
                 " CAST(:s AS text[]), CAST(:q AS int[]), CAST(:d AS date[]))"),
            {"o": [p.order_id for p in new], "l": [p.line_id for p in new], "p": [p.purchase_order_id for p in new],
             "s": [p.sku for p in new], "q": [p.qty for p in new], "d": [p.promised_date for p in new]},
        )
    ids = sorted(plan.left)
    await conn.execute(
        text("UPDATE inbound_supply s SET review_pending = false, available = u.n FROM unnest(CAST(:i AS text[]),"
             " CAST(:n AS int[])) AS u(i, n) WHERE s.purchase_order_id = u.i"
             " AND (s.review_pending OR s.available <> u.n)"),
        {"i": ids, "n": [plan.left[i] for i in ids]},
    )
    # The feed's inbound figures (AvailabilityChanged) may have changed.
    await conn.execute(MARK_AVAILABILITY_CHANGED, {"s": skus})
    if reasons:
        keys = sorted(reasons)
        await conn.execute(
            text("UPDATE order_lines l SET backorder_reason = u.r FROM unnest(CAST(:o AS text[]), CAST(:l AS text[]),"
                 " CAST(:r AS text[])) AS u(o, l, r) WHERE l.order_id = u.o AND l.line_id = u.l"),
            {"o": [k[0] for k in keys], "l": [k[1] for k in keys], "r": [reasons[k] for k in keys]},
        )
    if details:
        await _publish(conn, details)
    return len(details)


async def _publish(conn: AsyncConnection, details: dict[str, list[str]]) -> None:
    """Each order's snapshot again, version +1, with its lines' pre-sales (an OrderBackordered)."""
    ids = sorted(details)
    orders = {r.order_id: r for r in await conn.execute(
        text("UPDATE orders SET version = version + 1, updated_at = now() WHERE order_id IN"
             " (SELECT order_id FROM orders WHERE order_id = ANY(:o) ORDER BY order_id FOR UPDATE)"
             " RETURNING order_id, version, ship_complete"), {"o": ids})}
    lines: dict[str, list[Any]] = {}
    for r in await conn.execute(
            text("SELECT order_id, line_id, sku, qty, allocated, backordered, packed, shipped, cancelled, on_hold,"
                 " backorder_reason FROM order_lines WHERE order_id = ANY(:o) ORDER BY order_id, line_id"), {"o": ids}):
        lines.setdefault(r.order_id, []).append(r)
    allocations: dict[str, list[Any]] = {}
    for r in await conn.execute(
            text("SELECT allocation_id, order_id, line_id, sku, location_id, bin, lot, qty, status, shipment_id, rule"
                 " FROM allocations WHERE order_id = ANY(:o) AND status IN ('allocated', 'packed')"
                 " ORDER BY allocation_id"), {"o": ids}):
        allocations.setdefault(r.order_id, []).append(r)
    promised: dict[tuple[str, str], list[Any]] = {}
    for r in await conn.execute(
            text("SELECT order_id, line_id, qty, promised_date FROM presales WHERE order_id = ANY(:o)"), {"o": ids}):
        promised.setdefault((r.order_id, r.line_id), []).append(r)
    now = datetime.now(UTC)
    messages = []
    for order_id in ids:
        order = orders.get(order_id)
        if order is None:
            continue
        data = {
            "order_id": order_id, "version": order.version,
            "change": "pre-sold" if any("no longer" not in d for d in details[order_id]) or not details[order_id]
            else "pre-sale ended",
            "detail": "; ".join(details[order_id]) or None, "shipment_id": None, "ship_complete": order.ship_complete,
            "lines": [
                {"line_id": ln.line_id, "sku": ln.sku, "qty": ln.qty, "allocated": ln.allocated,
                 "backordered": ln.backordered, "packed": ln.packed, "shipped": ln.shipped, "cancelled": ln.cancelled,
                 "on_hold": ln.on_hold, "backorder_reason": ln.backorder_reason,
                 "presold": sum(p.qty for p in promised.get((order_id, ln.line_id), ())),
                 "promised_date": max((p.promised_date for p in promised.get((order_id, ln.line_id), ())),
                                      default=None)}
                for ln in lines.get(order_id, [])
            ],
            "allocations": [
                {"allocation_id": a.allocation_id, "line_id": a.line_id, "sku": a.sku, "location_id": a.location_id,
                 "bin": a.bin, "lot": a.lot, "qty": a.qty, "status": a.status, "shipment_id": a.shipment_id,
                 "reason": a.rule}
                for a in allocations.get(order_id, [])
            ],
        }
        envelope = envelope_of(
            "OrderBackordered",
            {**data, "lines": [{**ln, "promised_date": ln["promised_date"] and ln["promised_date"].isoformat()}
                               for ln in data["lines"]]},
            source=SOURCE, correlation_id=order_id, occurred_at=now,
        )
        messages.append(OutboxMessage(Topic.ALLOCATIONS, order_id, envelope))
    await write_outbox(conn, SCHEMA, messages)


async def review_late_presales(conn: AsyncConnection, today: date) -> int:
    """Purchase orders that became late (expected before ``today``, not received) still holding
    promises: their SKUs are reviewed, so the lines say so and wait in the queue without a promise.
    Also picks up purchase orders pending review. (Run by the expiry sweep.)"""
    rows = await conn.execute(
        text("SELECT DISTINCT s.sku FROM inbound_supply s JOIN presales p USING (purchase_order_id)"
             " WHERE s.expected_date < :d"), {"d": today})
    late = [r.sku for r in rows]
    return await review_presales(conn, None, today=today, skus=late)


NO_INBOUND: dict[str, Any] = {"inbound_total": 0, "inbound_locations": [], "inbound_channels": {}}


async def inbound_availability(conn: AsyncConnection, skus: list[str], policies: dict[str, Any],
                               today: date) -> dict[str, dict[str, Any]]:
    """The AvailabilityChanged fields about inbound supply, for the SKUs that have any open:
    ``inbound_total`` and ``inbound_locations`` (units of open, not late purchase orders nobody in
    the queue takes yet, per location with the earliest expected date) and ``inbound_channels``
    (what each channel with a policy may still pre-sell: within its cap, at locations serving it)."""
    rows = (await conn.execute(
        text("SELECT sku, location_id, sum(available) AS available, min(expected_date) AS expected_date"
             " FROM inbound_supply WHERE sku = ANY(:s) AND status = 'open' AND expected_date >= :d"
             " GROUP BY sku, location_id ORDER BY sku, location_id"),
        {"s": skus, "d": today},
    )).all()
    if not rows:
        return {}
    by_sku: dict[str, list[Any]] = {}
    for r in rows:  # ordered by sku, location
        by_sku.setdefault(r.sku, []).append(r)
    locations = {r.location_id: Location(
        location_id=r.location_id, name=r.name, kind=r.kind, country=r.country, active=r.active,
        channels=None if r.channels is None else tuple(r.channels))
        for r in await conn.execute(text("SELECT location_id, name, kind, country, active, channels FROM locations"))}
    promised = {(r.sku, r.channel): int(r.qty) for r in await conn.execute(
        text("SELECT p.sku, o.channel, sum(p.qty) AS qty FROM presales p JOIN orders o USING (order_id)"
             " WHERE p.sku = ANY(:s) GROUP BY p.sku, o.channel"), {"s": list(by_sku)})}
    out: dict[str, dict[str, Any]] = {}
    for sku, mine in by_sku.items():
        left = {r.location_id: int(r.available) for r in mine}
        out[sku] = {
            "inbound_total": sum(left.values()),
            "inbound_locations": [{"location_id": r.location_id, "available": int(r.available),
                                   "expected_date": r.expected_date.isoformat()} for r in mine],
            "inbound_channels": {
                channel: inbound_for_channel(left, locations, policy.presell, sku, channel,
                                             promised.get((sku, channel), 0))
                for channel, policy in sorted(policies.items())
            },
        }
    return out
