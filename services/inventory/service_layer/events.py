"""Use cases driven by other services' events: shipments and returns from fulfillment, and the
reservation mirror from allocation's AvailabilityChanged. Each runs in the caller's transaction
together with the inbox claim, so a redelivered event has no second effect."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.contracts.envelope import Envelope
from libs.contracts.events import AvailabilityChanged, Event, OrderShipped, ReturnReceived
from libs.messaging import claim_new_events
from services.inventory.domain.stock import QUARANTINE_BIN, PositionKey, StockChange
from services.inventory.service_layer.stock import Trace, book_changes, lock_positions


def changes_of(event: Event) -> list[StockChange]:
    """The stock changes a fulfillment event causes (none for the types inventory ignores)."""
    if isinstance(event, OrderShipped):
        return [
            StockChange(
                PositionKey(ln.sku, ln.location_id, ln.bin, ln.lot),
                -ln.qty,
                "shipment",
                reference=event.shipment_id,
                order_id=event.order_id,
                allocation_id=ln.allocation_id,
                cover_shortfall=True,
            )
            for ln in event.lines
        ]
    if isinstance(event, ReturnReceived):
        out = []
        for ln in event.lines:
            if ln.condition == "sellable":
                out.append(
                    StockChange(
                        PositionKey(ln.sku, ln.location_id, ln.bin, ln.lot),
                        ln.qty,
                        "return",
                        reference=event.return_id,
                        order_id=event.order_id,
                    )
                )
            else:
                out.append(
                    StockChange(
                        PositionKey(ln.sku, ln.location_id, QUARANTINE_BIN, ln.lot),
                        ln.qty,
                        "quarantine",
                        reference=event.return_id,
                        order_id=event.order_id,
                    )
                )
        return out
    return []


async def apply_fulfillment_events(conn: AsyncConnection, events: Sequence[tuple[Envelope, Event]]) -> int:
    """Book shipments and returns of the events not seen before; return how many changes."""
    relevant = [(env, event) for env, event in events if isinstance(event, OrderShipped | ReturnReceived)]
    fresh = await claim_new_events(conn, [env.event_id for env, _ in relevant])
    changes: list[StockChange] = []
    traces: list[Trace] = []
    fields: list[str] = []
    for env, event in relevant:
        if env.event_id not in fresh:
            continue
        fresh.discard(env.event_id)  # the same event twice in one batch counts once
        for i, change in enumerate(changes_of(event)):
            changes.append(change)
            traces.append(Trace(env.correlation_id, env.event_id))
            fields.append(f"{env.event_type} {env.event_id} lines.{i}")
    await book_changes(conn, changes, traces, fields=fields)
    return len(changes)


async def mirror_reservations(conn: AsyncConnection, events: Sequence[tuple[Envelope, Event]]) -> int:
    """Keep ``positions.reserved`` equal to what allocation last said it reserves there."""
    fresh = await claim_new_events(conn, [env.event_id for env, _ in events])
    latest: dict[tuple[str, str, str, str], tuple[int, datetime]] = {}
    for env, event in events:
        if env.event_id not in fresh or not isinstance(event, AvailabilityChanged):
            continue
        fresh.discard(env.event_id)
        for p in event.positions:
            key = (event.sku, p.location_id, p.bin, p.lot)
            if key not in latest or latest[key][1] <= event.as_of:
                latest[key] = (p.reserved, event.as_of)
    if not latest:
        return 0
    keys = sorted(latest)
    # Lock in key order first, as every stock change does, so the two never deadlock.
    await lock_positions(conn, [PositionKey(*k) for k in keys])
    result = await conn.execute(
        text(
            "UPDATE positions p SET reserved = u.r, reserved_as_of = u.at"
            " FROM unnest(CAST(:s AS text[]), CAST(:l AS text[]), CAST(:b AS text[]), CAST(:lot AS text[]),"
            " CAST(:r AS int[]), CAST(:at AS timestamptz[])) AS u(s, l, b, lot, r, at)"
            " WHERE p.sku = u.s AND p.location_id = u.l AND p.bin = u.b AND p.lot = u.lot"
            " AND (p.reserved_as_of IS NULL OR p.reserved_as_of <= u.at)"
            " AND p.reserved IS DISTINCT FROM u.r"  # most positions of a SKU did not change: no dead rows
        ),
        {
            "s": [k[0] for k in keys],
            "l": [k[1] for k in keys],
            "b": [k[2] for k in keys],
            "lot": [k[3] for k in keys],
            "r": [latest[k][0] for k in keys],
            "at": [latest[k][1] for k in keys],
        },
    )
    return result.rowcount or 0
