"""Dropship requests: lines allocated to a dropship supplier (allocation marks them
``dropship: true``) are not picked here; the supplier is asked to ship them.

1. An allocation result shows dropship allocations not yet requested: a request is stored
   (``pending``, also a pending shipment of the same id) and PackRequested with the supplier's
   ``location_id`` asks allocation to lock those units (the race-free hand-over of packing).
2. Allocation answers AllocationPacked: the request becomes ``requested`` and DropshipRequested
   (lines, ship-to from order intake, reference) goes to the supplier on ``oms.dropship.v1``.
   PackRejected (the units left meanwhile): the request is ``rejected``; the next result that
   shows dropship allocations asks again.
3. The supplier confirms with carrier and tracking (``confirm``): the shipment ships as any
   other (OrderShipped: inventory deducts the stated stock, allocation closes the allocations,
   the order shows shipped). Or it refuses (``refuse``): DropshipRefused with the units; inventory
   lowers the stated stock by them and allocation releases them to be allocated again.

Each step runs in the caller's transaction; every transition starts from one status, so a
redelivered event or a repeated request changes nothing a second time.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.contracts import Topic, new_envelope
from libs.contracts.envelope import EventMessage
from libs.contracts.events import (
    AllocationResult,
    DropshipLine,
    DropshipRefused,
    DropshipRequested,
    PackRequested,
    ShipmentLine,
)
from libs.contracts.problems import Problem
from libs.messaging import OutboxMessage, write_outbox
from services.fulfillment.adapters.tables import SCHEMA
from services.fulfillment.service_layer.publishing import SOURCE, publish_about_order
from services.fulfillment.service_layer.ship_to import ShipTo


class RequestNotFound(LookupError):
    pass


class RequestAnswered(ValueError):
    """The request cannot take this answer (already answered, or not sent yet); nothing changed."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(f"{problem.field}: {problem.problem}")
        self.problem = problem


REQUEST_PREFIX = "dsr_"


def new_request_id() -> str:
    return f"{REQUEST_PREFIX}{uuid.uuid4().hex}"


async def request_dropships(conn: AsyncConnection, results: Sequence[AllocationResult]) -> None:
    """Step 1: ask allocation to lock dropship allocations no request covers yet."""
    with_dropship = [r for r in results if any(a.dropship and a.status == "allocated" for a in r.allocations)]
    if not with_dropship:
        return
    suppliers = sorted({a.location_id for r in with_dropship for a in r.allocations if a.dropship})
    await conn.execute(
        text("INSERT INTO dropship_locations (location_id) SELECT unnest(CAST(:l AS text[])) ON CONFLICT DO NOTHING"),
        {"l": suppliers},
    )
    # Only the newest snapshot counts: an older one redelivered after a newer one would ask
    # for units already requested (allocation would reject it, but noisily).
    mirrored = {
        r.order_id: r.version
        for r in await conn.execute(
            text("SELECT order_id, version FROM allocation_snapshots WHERE order_id = ANY(CAST(:o AS text[]))"),
            {"o": [r.order_id for r in with_dropship]},
        )
    }
    waiting = {
        (r.order_id, r.location_id)
        for r in await conn.execute(
            text(
                "SELECT order_id, location_id FROM dropship_requests"
                " WHERE order_id = ANY(CAST(:o AS text[])) AND status = 'pending'"
            ),
            {"o": [r.order_id for r in with_dropship]},
        )
    }
    outbox = []
    for r in with_dropship:
        if mirrored.get(r.order_id) != r.version:
            continue
        lines: dict[str, set[str]] = {}
        for a in r.allocations:
            if a.dropship and a.status == "allocated" and a.shipment_id is None:
                lines.setdefault(a.location_id, set()).add(a.line_id)
        for location_id, line_ids in sorted(lines.items()):
            if (r.order_id, location_id) in waiting:
                continue  # allocation has not answered the last request yet
            request_id = new_request_id()
            ids = sorted(line_ids)
            await conn.execute(
                text(
                    "INSERT INTO shipments (shipment_id, order_id, status, requested_line_ids, detail)"
                    " VALUES (:s, :o, 'pending', CAST(:l AS text[]), :d)"
                ),
                {"s": request_id, "o": r.order_id, "l": ids, "d": f"dropship request to {location_id}"},
            )
            await conn.execute(
                text(
                    "INSERT INTO dropship_requests (request_id, order_id, location_id, status, line_ids)"
                    " VALUES (:s, :o, :loc, 'pending', CAST(:l AS text[]))"
                ),
                {"s": request_id, "o": r.order_id, "loc": location_id, "l": ids},
            )
            event = PackRequested(order_id=r.order_id, shipment_id=request_id, line_ids=ids, location_id=location_id)
            outbox.append(OutboxMessage(Topic.FULFILLMENT, r.order_id,
                                        new_envelope(event, source=SOURCE, correlation_id=r.order_id)))
    await write_outbox(conn, SCHEMA, outbox)


async def send_requested(conn: AsyncConnection, answers: Sequence[EventMessage], ship_to: ShipTo) -> None:
    """Step 2: allocation's answers to dropship pack requests (AllocationPacked / PackRejected)."""
    ids = [m.event.shipment_id for m in answers if isinstance(m.event, AllocationResult)
           and (m.event.shipment_id or "").startswith(REQUEST_PREFIX)]  # plain packs cost no query
    if not ids:
        return
    pending = {
        r.request_id: r
        for r in await conn.execute(
            text(
                "SELECT request_id, order_id, location_id FROM dropship_requests"
                " WHERE request_id = ANY(CAST(:s AS text[])) AND status = 'pending' FOR UPDATE"
            ),
            {"s": ids},
        )
    }
    outbox = []
    for m in answers:
        event = m.event
        assert isinstance(event, AllocationResult)
        row = pending.pop(event.shipment_id or "", None)
        if row is None:
            continue  # not a dropship request, or answered before (a redelivery)
        locked = [a for a in event.allocations if a.shipment_id == row.request_id and a.status == "packed"]
        if m.envelope.event_type == "PackRejected" or not locked:
            await conn.execute(
                text("UPDATE dropship_requests SET status = 'rejected', reason = :d, answered_at = now()"
                     " WHERE request_id = :s"),
                {"s": row.request_id, "d": event.detail},
            )
            continue
        address = await ship_to.of_order(row.order_id)
        await conn.execute(
            text(
                "UPDATE dropship_requests SET status = 'requested', requested_at = now(), ship_to = CAST(:a AS jsonb)"
                " WHERE request_id = :s"
            ),
            {"s": row.request_id, "a": None if address is None else address.model_dump_json()},
        )
        request = DropshipRequested(
            request_id=row.request_id, location_id=row.location_id, order_id=row.order_id, reference=row.request_id,
            lines=[DropshipLine(allocation_id=a.allocation_id, line_id=a.line_id, sku=a.sku, qty=a.qty)
                   for a in sorted(locked, key=lambda a: (a.line_id, a.allocation_id))],
            ship_to=address,
        )
        outbox.append(OutboxMessage(Topic.DROPSHIP, row.location_id, new_envelope(
            request, source=SOURCE, correlation_id=m.envelope.correlation_id, causation_id=m.envelope.event_id)))
    await write_outbox(conn, SCHEMA, outbox)


async def _answerable(conn: AsyncConnection, request_id: str) -> Any:
    row = (
        await conn.execute(
            text("SELECT request_id, order_id, location_id, status FROM dropship_requests"
                 " WHERE request_id = :s FOR UPDATE"),
            {"s": request_id},
        )
    ).first()
    if row is None:
        raise RequestNotFound(request_id)
    if row.status != "requested":
        problem = (
            "not sent to the supplier yet (allocation has not locked its units)" if row.status == "pending"
            else f"already answered: {row.status}"
        )
        raise RequestAnswered(Problem("request_id", problem))
    return row


async def confirm(conn: AsyncConnection, request_id: str, carrier: str, tracking_number: str) -> None:
    """Step 3: the supplier shipped the request's lines; they ship like any shipment."""
    from services.fulfillment.service_layer.packing import ship_shipment  # (packing -> mirroring -> here)

    await _answerable(conn, request_id)
    await ship_shipment(conn, request_id, carrier, tracking_number)
    await conn.execute(
        text("UPDATE dropship_requests SET status = 'confirmed', answered_at = now() WHERE request_id = :s"),
        {"s": request_id},
    )


async def refuse(conn: AsyncConnection, request_id: str, reason: str) -> None:
    """Step 3: the supplier will not ship the request's lines: publish DropshipRefused with them."""
    row = await _answerable(conn, request_id)
    lines = (
        await conn.execute(
            text("SELECT allocation_id, line_id, sku, location_id, bin, lot, qty FROM shipment_lines"
                 " WHERE shipment_id = :s ORDER BY line_id, allocation_id"),
            {"s": request_id},
        )
    ).mappings().all()
    await conn.execute(
        text("UPDATE dropship_requests SET status = 'refused', reason = :r, answered_at = now() WHERE request_id = :s"),
        {"s": request_id, "r": reason},
    )
    await conn.execute(
        text("UPDATE shipments SET status = 'rejected', detail = :d, rejected_at = now() WHERE shipment_id = :s"),
        {"s": request_id, "d": f"dropship request refused by the supplier: {reason}"},
    )
    event = DropshipRefused(
        request_id=request_id, location_id=row.location_id, order_id=row.order_id, reason=reason,
        lines=[ShipmentLine.model_validate(dict(ln)) for ln in lines],
    )
    await publish_about_order(conn, row.order_id, event)


_VIEW = ("SELECT d.request_id, d.order_id, d.location_id, d.status, d.line_ids, d.ship_to, d.reason, d.created_at,"
         " d.requested_at, d.answered_at, s.carrier, s.tracking_number FROM dropship_requests d"
         " JOIN shipments s ON s.shipment_id = d.request_id")


async def request_view(conn: AsyncConnection, request_id: str) -> dict[str, Any]:
    row = (await conn.execute(text(_VIEW + " WHERE d.request_id = :s"), {"s": request_id})).mappings().first()
    if row is None:
        raise RequestNotFound(request_id)
    return (await _with_lines(conn, [dict(row)]))[0]


async def list_requests(conn: AsyncConnection, location_id: str | None, status: str | None,
                        limit: int) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text(_VIEW + " WHERE (CAST(:l AS text) IS NULL OR d.location_id = :l)"
             " AND (CAST(:st AS text) IS NULL OR d.status = :st) ORDER BY d.created_at DESC, d.request_id LIMIT :n"),
        {"l": location_id, "st": status, "n": limit},
    )
    return await _with_lines(conn, [dict(r) for r in rows.mappings()])


async def _with_lines(conn: AsyncConnection, views: list[dict[str, Any]]) -> list[dict[str, Any]]:
    lines: dict[str, list[dict[str, Any]]] = {}
    for ln in (await conn.execute(
        text("SELECT shipment_id, allocation_id, line_id, sku, qty FROM shipment_lines"
             " WHERE shipment_id = ANY(CAST(:s AS text[])) ORDER BY line_id, allocation_id"),
        {"s": [v["request_id"] for v in views]},
    )).mappings():
        lines.setdefault(ln["shipment_id"], []).append(
            {k: ln[k] for k in ("allocation_id", "line_id", "sku", "qty")})
    for v in views:
        v["lines"] = lines.get(v["request_id"], [])
        if isinstance(v["ship_to"], str | bytes):
            v["ship_to"] = orjson.loads(v["ship_to"])
    return views
