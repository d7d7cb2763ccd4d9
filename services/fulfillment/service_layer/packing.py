"""Use cases of the packing floor: pick lists, pack requests, shipments, serialized SKUs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from libs.contracts.events import AllocationLine, LineState, OrderShipped, PackRequested, ShipmentLine
from libs.contracts.problems import Problem
from services.fulfillment.adapters.queries import shipment_lines
from services.fulfillment.domain.packing import (
    OrderedLine,
    PackRefused,
    check_pack,
    check_ship,
    new_shipment_id,
)
from services.fulfillment.domain.picking import AllocatedStock, build_pick_lists
from services.fulfillment.service_layer.publishing import publish_about_order


class OrderNotFound(LookupError):
    pass


class ShipmentNotFound(LookupError):
    pass


# What is allocated and not yet packed (at ``:loc``, or anywhere when NULL), from the snapshots'
# allocations: the first condition is the predicate of the partial index allocation_snapshots_pick_idx
# (migration 0005), so only the orders with units to pick are read.
PICK_ROWS = text(
    "SELECT s.order_id, x.line_id, x.allocation_id, x.sku, x.location_id, x.bin, x.lot, x.qty"
    " FROM allocation_snapshots s, jsonb_to_recordset(s.allocations) AS x(allocation_id bigint,"
    " line_id text, sku text, location_id text, bin text, lot text, qty int, status text)"
    """ WHERE s.allocations @? '$[*] ? (@.status == "allocated")'"""
    " AND x.status = 'allocated' AND (CAST(:loc AS text) IS NULL OR x.location_id = :loc)"
    # a dropship supplier ships those (service_layer/dropship.py), nobody picks them here
    " AND x.location_id NOT IN (SELECT location_id FROM dropship_locations)"
)


async def pick_lists(conn: AsyncConnection, location_id: str | None) -> list[dict[str, Any]]:
    """Per location, what is allocated and not yet packed, batched across orders, in bin order."""
    rows = await conn.execute(PICK_ROWS, {"loc": location_id})
    lists = build_pick_lists([AllocatedStock(**r) for r in rows.mappings()])
    return [
        {
            "location_id": pl.location_id,
            "total_qty": pl.total_qty,
            "rows": [
                {
                    "sku": row.sku,
                    "bin": row.bin,
                    "lot": row.lot,
                    "qty": row.qty,
                    "orders": [
                        {
                            "order_id": t.order_id,
                            "line_id": t.line_id,
                            "allocation_id": t.allocation_id,
                            "qty": t.qty,
                        }
                        for t in row.targets
                    ],
                }
                for row in pl.rows
            ],
        }
        for pl in lists
    ]


async def request_pack(
    conn: AsyncConnection, order_id: str, line_ids: list[str] | None, serials: dict[str, list[str]]
) -> str:
    """Validate a pack request, store a pending shipment and ask allocation (PackRequested).

    Returns the shipment id. Raises OrderNotFound or the domain's PackRefused.
    """
    # Lock the order's snapshot: pack requests of one order are checked one after the other, so
    # a second request sees the first one's pending shipment instead of the same allocated units.
    snapshot = (
        await conn.execute(
            text(
                "SELECT lines, ship_complete, allocations FROM allocation_snapshots WHERE order_id = :o"
                " FOR UPDATE"
            ),
            {"o": order_id},
        )
    ).first()
    if snapshot is None or not snapshot.lines:  # allocation has not answered for this order (yet)
        raise OrderNotFound(order_id)
    states = [LineState.model_validate(s) for s in snapshot.lines]
    lines = sorted(states, key=lambda ln: ln.line_id)
    # the live ones, as the mirror kept them before migration 0005 (the ``allocations`` view)
    allocations = [a for a in snapshot.allocations if a["status"] in ("allocated", "packed")]
    skus = sorted({ln.sku for ln in lines})
    serialized = set(
        (
            await conn.execute(
                text("SELECT sku FROM serialized_skus WHERE sku = ANY(CAST(:s AS text[]))"), {"s": skus}
            )
        ).scalars()
    )
    plan = check_pack(
        lines=[OrderedLine(ln.line_id, ln.sku, ln.qty) for ln in lines],
        ship_complete=snapshot.ship_complete,
        line_states=states,
        allocations=[AllocationLine.model_validate(a) for a in allocations],
        line_ids=line_ids,
        serials=serials,
        serialized_skus=serialized,
    )
    # A pack of the same lines still waiting for allocation's answer would take the same units:
    # allocation would reject this one, leaving a rejected shipment and a PackRequested behind.
    # Refused as a conflict instead (re-checked for a moment by request_pack_when_mirrored).
    pending = (
        await conn.execute(
            text(
                "SELECT shipment_id FROM shipments WHERE order_id = :o AND status = 'pending'"
                " AND (requested_line_ids IS NULL OR requested_line_ids && CAST(:l AS text[]))"
                " ORDER BY requested_at LIMIT 1"
            ),
            {"o": order_id, "l": plan.line_ids},
        )
    ).scalar()
    if pending is not None:
        raise PackRefused(
            "conflict",
            [Problem("order", f"shipment {pending} of these lines is still waiting for allocation's answer")],
        )
    shipment_id = new_shipment_id()
    # Name the validated lines explicitly: stock allocated after this check is not swept into
    # this shipment without its serial numbers.
    requested = plan.line_ids
    await conn.execute(
        text(
            "INSERT INTO shipments (shipment_id, order_id, status, requested_line_ids, serials)"
            " VALUES (:s, :o, 'pending', CAST(:l AS text[]), CAST(:sn AS jsonb))"
        ),
        {"s": shipment_id, "o": order_id, "l": requested, "sn": orjson.dumps(serials).decode()},
    )
    event = PackRequested(order_id=order_id, shipment_id=shipment_id, line_ids=requested, serials=serials)
    await publish_about_order(conn, order_id, event)
    return shipment_id


async def request_pack_when_mirrored(
    transaction: Callable[[], AbstractAsyncContextManager[AsyncConnection]],
    order_id: str,
    line_ids: list[str] | None,
    serials: dict[str, list[str]],
    *,
    grace_seconds: float = 2.0,
    interval: float = 0.05,
) -> str:
    """``request_pack`` in its own unit of work (``transaction()``, e.g. ``Runtime.transaction``,
    which wakes the relay for the PackRequested), allowing the mirror a moment to catch up.

    Our copy of the order's allocations (AllocationResult) comes through our own consumer, not
    through what an operator's screen reads from, so an operator can ask
    to pack an allocation we have not mirrored yet. An unknown order or a refusal because of
    the order's state (nothing allocated, ship-complete not whole) is therefore re-checked for
    ``grace_seconds`` before it is answered; bad input is answered at once.
    """
    deadline = time.monotonic() + grace_seconds
    while True:
        try:
            async with transaction() as conn:
                return await request_pack(conn, order_id, line_ids, serials)
        except (OrderNotFound, PackRefused) as exc:
            if isinstance(exc, PackRefused) and exc.kind != "conflict":
                raise
            if time.monotonic() >= deadline:
                raise
        await asyncio.sleep(interval)


async def shipment_view(conn: AsyncConnection, shipment_id: str) -> dict[str, Any]:
    row = (
        (await conn.execute(text("SELECT * FROM shipments WHERE shipment_id = :s"), {"s": shipment_id}))
        .mappings()
        .first()
    )
    if row is None:
        raise ShipmentNotFound(shipment_id)
    lines = await shipment_lines(conn, shipment_id)
    return {
        "shipment_id": row["shipment_id"],
        "order_id": row["order_id"],
        "status": row["status"],
        "detail": row["detail"],
        "requested_line_ids": row["requested_line_ids"],
        "carrier": row["carrier"],
        "tracking_number": row["tracking_number"],
        "requested_at": row["requested_at"],
        "packed_at": row["packed_at"],
        "rejected_at": row["rejected_at"],
        "shipped_at": row["shipped_at"],
        "total_qty": sum(ln["qty"] for ln in lines),
        "lines": [dict(ln) for ln in lines],
    }


async def await_pack_answer(
    engine: AsyncEngine, shipment_id: str, *, wait_seconds: float = 10.0, interval: float = 0.05
) -> dict[str, Any]:
    """Poll until allocation answered the pack request (packed or rejected) or ``wait_seconds`` passed;
    return the shipment as it stands then (still ``pending`` if not)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        async with engine.connect() as conn:
            status = (
                await conn.execute(
                    text("SELECT status FROM shipments WHERE shipment_id = :s"), {"s": shipment_id}
                )
            ).scalar()
            if status != "pending" or time.monotonic() >= deadline:
                return await shipment_view(conn, shipment_id)
        await asyncio.sleep(interval)


async def ship_shipment(conn: AsyncConnection, shipment_id: str, carrier: str, tracking_number: str) -> bool:
    """Hand a packed shipment to the carrier and publish OrderShipped with its lines.

    Returns False when it already shipped with the same carrier and tracking number (nothing
    new is published). Raises ShipmentNotFound or the domain's ShipRefused.
    """
    row = (
        await conn.execute(
            text(
                "SELECT order_id, status, carrier, tracking_number FROM shipments"
                " WHERE shipment_id = :s FOR UPDATE"
            ),
            {"s": shipment_id},
        )
    ).first()
    if row is None:
        raise ShipmentNotFound(shipment_id)
    if not check_ship(
        status=row.status,
        carrier=carrier,
        tracking_number=tracking_number,
        shipped_carrier=row.carrier,
        shipped_tracking=row.tracking_number,
    ):
        return False
    lines = await shipment_lines(conn, shipment_id)
    await conn.execute(
        text(
            "UPDATE shipments SET status = 'shipped', carrier = :c, tracking_number = :t, shipped_at = now()"
            " WHERE shipment_id = :s"
        ),
        {"s": shipment_id, "c": carrier, "t": tracking_number},
    )
    event = OrderShipped(
        order_id=row.order_id,
        shipment_id=shipment_id,
        carrier=carrier,
        tracking_number=tracking_number,
        lines=[ShipmentLine.model_validate(dict(ln)) for ln in lines],
    )
    await publish_about_order(conn, row.order_id, event)
    return True


async def set_serialized(conn: AsyncConnection, sku: str, serialized: bool) -> None:
    """Flag a SKU as needing serial numbers at packing (or clear the flag)."""
    if serialized:
        await conn.execute(
            text(
                "INSERT INTO serialized_skus (sku) VALUES (:s)"
                " ON CONFLICT (sku) DO UPDATE SET updated_at = now()"
            ),
            {"s": sku},
        )
    else:
        await conn.execute(text("DELETE FROM serialized_skus WHERE sku = :s"), {"s": sku})
