"""Use cases driven by other services' events: shipments and returns from fulfillment. Each runs
in the caller's transaction together with the inbox claim, so a redelivered event has no second
effect. (Reserved quantities are not mirrored here: stock takes ask allocation, see
``reservations``.)"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from libs.contracts.envelope import EventMessage
from libs.contracts.events import DropshipRefused, Event, OrderShipped, ReturnReceived, ShipmentLine
from libs.messaging import claim_new_events
from services.inventory.domain.stock import QUARANTINE_BIN, PositionKey, StockChange
from services.inventory.service_layer.stock import Trace, book_changes


def changes_of(event: Event) -> list[StockChange]:
    """The stock changes a fulfillment event causes (none for the types inventory ignores)."""
    if isinstance(event, OrderShipped):
        return _outbound(event.lines, "shipment", event.shipment_id, event.order_id)
    if isinstance(event, ReturnReceived):
        # Sellable returns go back where they were shipped from; the rest into quarantine.
        return [
            StockChange(
                PositionKey(ln.sku, ln.location_id, ln.bin if ln.condition == "sellable" else QUARANTINE_BIN, ln.lot),
                ln.qty,
                "return" if ln.condition == "sellable" else "quarantine",
                reference=event.return_id,
                order_id=event.order_id,
            )
            for ln in event.lines
        ]
    if isinstance(event, DropshipRefused):
        # The supplier will not ship these: its stated stock falls by them, and the StockAdjusted
        # names the allocation, so allocation releases it to be allocated again. (A supplier that
        # meanwhile stated less than it was asked for is corrected up first: the ledger adds up.)
        return _outbound(event.lines, "dropship_refused", event.request_id, event.order_id)
    return []


def _outbound(lines: Sequence[ShipmentLine], reason: str, reference: str, order_id: str) -> list[StockChange]:
    """Allocated units leaving their position (shipped, or refused by a dropship supplier)."""
    return [
        StockChange(
            PositionKey(ln.sku, ln.location_id, ln.bin, ln.lot),
            -ln.qty,
            reason,
            reference=reference,
            order_id=order_id,
            allocation_id=ln.allocation_id,
            cover_shortfall=True,
        )
        for ln in lines
    ]


async def apply_fulfillment_events(conn: AsyncConnection, events: Sequence[EventMessage]) -> int:
    """Book shipments and returns of the events not seen before; return how many changes."""
    relevant = [(env, event) for env, event in events
                if isinstance(event, OrderShipped | ReturnReceived | DropshipRefused)]
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
