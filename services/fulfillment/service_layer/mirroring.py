"""Use cases fed by allocation's events: the allocation mirror (lines, allocations, the order's
ship_complete flag) and allocation's answers to pack requests. Each runs in the caller's
transaction with the inbox. Fulfillment reads no order events: what packing needs comes with
allocation's snapshots, and a return asks order intake for prices (service_layer/prices.py)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.contracts import Topic, new_envelope
from libs.contracts.envelope import EventMessage
from libs.contracts.events import (
    AllocationLine,
    AllocationPacked,
    AllocationResult,
    LineState,
    OrderPacked,
    PackRejected,
)
from libs.messaging import OutboxMessage, write_outbox
from services.fulfillment.adapters.intake_ship_to import IntakeShipTo
from services.fulfillment.adapters.queries import OrderShipmentLine
from services.fulfillment.adapters.tables import SCHEMA
from services.fulfillment.domain.packing import packed_lines
from services.fulfillment.service_layer.dropship import REQUEST_PREFIX, request_dropships, send_requested
from services.fulfillment.service_layer.publishing import SOURCE
from services.fulfillment.service_layer.ship_to import ShipTo


async def apply_allocation_results(
    conn: AsyncConnection, messages: Sequence[EventMessage], ship_to: ShipTo | None = None
) -> None:
    """Keep the newest allocation snapshot of each order; record allocation's pack answers.

    Every AllocationResult replaces the order's mirror when its version is newer than the one
    held (so fulfillment needs no inbox row per result). AllocationPacked marks its shipment packed with the snapshot's allocations tagged with
    that shipment and publishes OrderPacked; PackRejected marks it rejected with the detail.
    Dropship allocations are requested from their supplier (``dropship``; ``ship_to``: where the
    request's address comes from, order intake's API by default).
    """
    # No inbox: every effect here is decided by a natural key, so a redelivered or replayed
    # result changes nothing: the mirror takes only a higher version, a shipment turns packed or
    # rejected only from pending (OrderPacked is published on that transition, once).
    seen: set[uuid.UUID] = set()
    latest: dict[str, EventMessage] = {}
    packed: list[EventMessage] = []
    rejected: list[PackRejected] = []
    answers: list[EventMessage] = []  # to dropship requests among them
    for m in messages:
        event = m.event
        if m.envelope.event_id in seen or not isinstance(event, AllocationResult):
            continue
        seen.add(m.envelope.event_id)  # the same event twice in one batch counts once
        held = latest.get(event.order_id)
        if held is None or event.version > held.event.version:  # type: ignore[attr-defined]
            latest[event.order_id] = m
        if isinstance(event, AllocationPacked) and event.shipment_id:
            packed.append(m)
        elif isinstance(event, PackRejected) and event.shipment_id:
            rejected.append(event)
        if isinstance(event, AllocationPacked | PackRejected) and (event.shipment_id or "").startswith(REQUEST_PREFIX):
            answers.append(m)
    if latest:
        await _replace_mirrors(conn, list(latest.values()))
        await request_dropships(conn, [m.event for m in latest.values()])  # type: ignore[misc]
    if packed:
        await _record_packed(conn, packed)
    if answers:
        await send_requested(conn, answers, ship_to or IntakeShipTo())
    if rejected:
        await conn.execute(
            text(
                "UPDATE shipments s SET status = 'rejected', detail = r.d, rejected_at = now()"
                " FROM unnest(CAST(:s AS text[]), CAST(:d AS text[])) AS r(s, d)"
                " WHERE s.shipment_id = r.s AND s.status = 'pending'"
            ),
            {
                "s": [e.shipment_id for e in rejected],
                "d": [e.detail or "nothing allocated to pack" for e in rejected],
            },
        )


# A snapshot replaces the held one only when its version is higher; it carries the order's
# allocations (one JSONB document: readers take the live ones, the ``allocations``
# view or pick_lists), so an allocated order costs one row (migration 0005). The snapshots stay
# array parameters (sent as one JSON document, PostgreSQL spent ~40 % more on them:
# docs/benchmark.md).
_UPSERT_SNAPSHOTS = text(
    "INSERT INTO allocation_snapshots AS s (order_id, version, lines, ship_complete, allocations)"
    " SELECT * FROM unnest(CAST(:o AS text[]), CAST(:v AS int[]), CAST(:l AS jsonb[]), CAST(:sc AS bool[]),"
    " CAST(:a AS jsonb[]))"
    " ON CONFLICT (order_id) DO UPDATE SET version = EXCLUDED.version, lines = EXCLUDED.lines,"
    " ship_complete = EXCLUDED.ship_complete, allocations = EXCLUDED.allocations, updated_at = now()"
    " WHERE s.version < EXCLUDED.version"
)


# The run of keys at their model's default (LineState / AllocationLine field order, all
# defaults: the common line and allocation), cut from the stored JSON: readers validate with the
# model or read an absent key as NULL, so nothing changes for them, and PostgreSQL parses, stores
# and logs about a third fewer bytes per order. A plain replace of bytes (stripping the dicts in
# Python cost ~25 us an order): safe because a quote inside a JSON string is always escaped, so
# ',"' starts a key and nothing else, and each run ends in a complete literal (null / false). A
# line or allocation with another value among them is stored whole.
_LINE_DEFAULTS = b',"packed":0,"shipped":0,"cancelled":0,"on_hold":false,"backorder_reason":null,"presold":0,"promised_date":null'
_ALLOCATION_DEFAULTS = b',"shipment_id":null,"reason":null,"dropship":false'


def stored_json(items: Sequence[LineState] | Sequence[AllocationLine], defaults: bytes) -> str:
    """Lines or allocations of a result as stored: the models' own JSON (every key in field
    order, so the runs above are always whole; tests/unit pins it to pydantic's dump) less the
    run of defaults. orjson over the instance dicts (str, int, bool, None, date: all its own
    types) costs half of pydantic's ``dump_json``; a decoded envelope keeps no JSON payload."""
    return orjson.dumps([item.__dict__ for item in items]).replace(defaults, b"").decode()


async def _replace_mirrors(conn: AsyncConnection, results: list[EventMessage]) -> None:
    o, v, ln, sc, al = [], [], [], [], []
    for m in results:
        event = m.event
        assert isinstance(event, AllocationResult)
        o.append(event.order_id)
        v.append(event.version)
        ln.append(stored_json(event.lines, _LINE_DEFAULTS))
        sc.append(event.ship_complete)
        al.append(stored_json(event.allocations, _ALLOCATION_DEFAULTS))
    await conn.execute(_UPSERT_SNAPSHOTS, {"o": o, "v": v, "l": ln, "sc": sc, "a": al})


async def _record_packed(conn: AsyncConnection, messages: list[EventMessage]) -> None:
    unique: dict[str, EventMessage] = {}
    for m in messages:  # one answer per shipment counts; a repeat in the same batch is ignored
        unique.setdefault(m.event.shipment_id, m)  # type: ignore[attr-defined]
    messages = list(unique.values())
    events: list[AllocationPacked] = [m.event for m in messages]  # type: ignore[misc]
    # Pending -> packed exactly once; a shipment we never requested (e.g. restored database) is
    # recorded as packed too, so what allocation packed is never invisible here.
    rows = await conn.execute(
        text(
            "INSERT INTO shipments AS s (shipment_id, order_id, status, packed_at)"
            " SELECT sid, o, 'packed', now() FROM unnest(CAST(:s AS text[]), CAST(:o AS text[])) AS t(sid, o)"
            " ON CONFLICT (shipment_id) DO UPDATE SET status = 'packed', packed_at = now()"
            " WHERE s.status = 'pending' RETURNING s.shipment_id, s.serials"
        ),
        {"s": [e.shipment_id for e in events], "o": [e.order_id for e in events]},
    )
    serials = {row.shipment_id: row.serials or {} for row in rows}
    lines: list[OrderShipmentLine] = []
    outbox = []
    for m, event in zip(messages, events, strict=True):
        assert event.shipment_id is not None
        if event.shipment_id not in serials:
            continue  # already packed, rejected or shipped: this answer changes nothing
        shipment_lines = packed_lines(event.allocations, event.shipment_id, serials.pop(event.shipment_id))
        lines += [OrderShipmentLine(event.shipment_id, event.order_id, ln) for ln in shipment_lines]
        outbox.append(
            OutboxMessage(
                Topic.FULFILLMENT,
                event.order_id,
                new_envelope(
                    OrderPacked(order_id=event.order_id, shipment_id=event.shipment_id, lines=shipment_lines),
                    source=SOURCE,
                    correlation_id=m.envelope.correlation_id,
                    causation_id=m.envelope.event_id,
                ),
            )
        )
    if lines:
        await conn.execute(
            text(
                "INSERT INTO shipment_lines (shipment_id, allocation_id, order_id, line_id, sku, location_id,"
                " bin,"
                " lot, qty, serials) SELECT * FROM unnest(CAST(:sh AS text[]), CAST(:a AS bigint[]),"
                " CAST(:o AS text[]), CAST(:l AS text[]), CAST(:s AS text[]), CAST(:loc AS text[]),"
                " CAST(:b AS text[]), CAST(:lot AS text[]), CAST(:q AS int[]), CAST(:sn AS jsonb[]))"
            ),
            {
                "sh": [r.shipment_id for r in lines],
                "a": [r.line.allocation_id for r in lines],
                "o": [r.order_id for r in lines],
                "l": [r.line.line_id for r in lines],
                "s": [r.line.sku for r in lines],
                "loc": [r.line.location_id for r in lines],
                "b": [r.line.bin for r in lines],
                "lot": [r.line.lot for r in lines],
                "q": [r.line.qty for r in lines],
                "sn": [orjson.dumps(r.line.serials).decode() for r in lines],
            },
        )
    await write_outbox(conn, SCHEMA, outbox)
