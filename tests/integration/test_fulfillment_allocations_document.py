"""Migration 0005 on a real PostgreSQL: an order's allocations move from one ``allocations`` row
each into its snapshot row. A fulfillment upgraded with rows from before keeps its mirror (pick
lists, pack checks, the ``allocations`` view), and a mirrored order is one row from then on."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import orjson
import pytest
from sqlalchemy import text

from libs.contracts import new_envelope
from libs.contracts.events import AllocationLine, Event, LineState, OrderAllocated, OrderReallocated
from libs.database import create_engine, upgrade_schema
from libs.messaging.consumer import EventMessage
from services.fulfillment.service_layer.mirroring import apply_allocation_results
from services.fulfillment.service_layer.packing import PICK_ROWS, pick_lists, request_pack

pytestmark = pytest.mark.integration

VERSIONS = Path(__file__).parents[2] / "services" / "fulfillment" / "adapters" / "migrations" / "versions"
BEFORE = ("0001_initial.py", "0002_no_order_feed.py", "0003_dropship_requests.py", "0004_packed_outbox.py")


def message(event: Event) -> EventMessage:
    return EventMessage(new_envelope(event, source="test", correlation_id="test"), event)


def alloc(aid: int, line_id: str, sku: str, qty: int, location: str, *, status: str = "allocated",
          shipment_id: str | None = None) -> AllocationLine:
    return AllocationLine(allocation_id=aid, line_id=line_id, sku=sku, location_id=location, bin="B-1", lot="",
                          qty=qty, status=status, shipment_id=shipment_id)  # type: ignore[arg-type]


async def test_rows_of_before_0005_become_documents_and_the_mirror_keeps_working(
    database_url: str, tmp_path: Path
) -> None:
    schema = f"fulfillment_m5_{uuid.uuid4().hex[:8]}"
    for name in BEFORE:
        shutil.copy(VERSIONS / name, tmp_path / name)
    engine = create_engine(database_url, schema=schema)
    try:
        await upgrade_schema(engine, schema=schema, versions_dir=tmp_path)  # the schema as 0004 left it
        sku = f"SKU-{uuid.uuid4().hex[:8]}"
        loc = f"WH-{uuid.uuid4().hex[:6]}"
        lines = orjson.dumps([{"line_id": "L1", "sku": sku, "qty": 3, "allocated": 3, "backordered": 0}]).decode()
        async with engine.begin() as conn:
            await conn.execute(
                text("INSERT INTO allocation_snapshots (order_id, version, lines, ship_complete)"
                     " VALUES ('old-1', 1, CAST(:l AS jsonb), false), ('old-2', 2, CAST(:l AS jsonb), false),"
                     " ('old-3', 1, CAST(:l AS jsonb), false)"),
                {"l": lines},
            )
            await conn.execute(
                text("INSERT INTO allocations (order_id, allocation_id, line_id, sku, location_id, bin, lot, qty,"
                     " status, shipment_id) VALUES"
                     " ('old-1', 11, 'L1', :s, :loc, 'B-2', '', 2, 'allocated', NULL),"
                     " ('old-1', 10, 'L1', :s, :loc, 'B-1', 'A', 1, 'allocated', NULL),"
                     " ('old-2', 20, 'L1', :s, :loc, 'B-1', '', 3, 'packed', 'shp-old')"),
                {"s": sku, "loc": loc},
            )
        await upgrade_schema(engine, schema=schema, versions_dir=VERSIONS)

        async with engine.begin() as conn:
            kinds = dict((await conn.execute(text(
                "SELECT table_name, table_type FROM information_schema.tables WHERE table_schema = :s"
                " AND table_name IN ('allocations', 'allocation_snapshots')"), {"s": schema})).all())
            assert kinds == {"allocations": "VIEW", "allocation_snapshots": "BASE TABLE"}
            # the old rows, column for column, through the view that replaced the table
            view = (await conn.execute(text(
                "SELECT order_id, allocation_id, line_id, location_id, bin, lot, qty, status, shipment_id"
                " FROM allocations ORDER BY order_id, allocation_id"))).all()
            assert [tuple(r) for r in view] == [
                ("old-1", 10, "L1", loc, "B-1", "A", 1, "allocated", None),
                ("old-1", 11, "L1", loc, "B-2", "", 2, "allocated", None),
                ("old-2", 20, "L1", loc, "B-1", "", 3, "packed", "shp-old"),
            ]
            docs = dict((await conn.execute(text(
                "SELECT order_id, jsonb_array_length(allocations) FROM allocation_snapshots"))).all())
            assert docs == {"old-1": 2, "old-2": 1, "old-3": 0}

            # pick lists and packing read the moved allocations
            [pick] = await pick_lists(conn, loc)
            assert [(r["bin"], r["qty"], [o["allocation_id"] for o in r["orders"]]) for r in pick["rows"]] == [
                ("B-1", 1, [10]), ("B-2", 2, [11])
            ]
            await request_pack(conn, "old-1", None, {})
            shipped = (await conn.execute(text(
                "SELECT requested_line_ids FROM shipments WHERE order_id = 'old-1'"))).scalar()
            assert shipped == ["L1"]

            # a newer snapshot of an old order replaces its allocations; a new order is one row
            moved = [alloc(30, "L1", sku, 3, loc)]
            states = [LineState(line_id="L1", sku=sku, qty=3, allocated=3)]
            await apply_allocation_results(conn, [
                message(OrderReallocated(order_id="old-2", version=3, change="reallocated", lines=states,
                                         allocations=moved)),
                message(OrderAllocated(order_id="new-1", version=1, change="placed", lines=states,
                                       allocations=[alloc(40, "L1", sku, 3, loc),
                                                    alloc(41, "L1", sku, 1, loc, status="released")])),
            ])
            view = (await conn.execute(text(
                "SELECT order_id, allocation_id, status FROM allocations WHERE order_id IN ('old-2', 'new-1')"
                " ORDER BY order_id, allocation_id"))).all()
            assert [tuple(r) for r in view] == [("new-1", 40, "allocated"), ("old-2", 30, "allocated")]
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await engine.dispose()


async def test_pick_lists_find_the_orders_with_units_to_pick_by_the_partial_index(database_url: str) -> None:
    schema = f"fulfillment_pick_{uuid.uuid4().hex[:8]}"
    engine = create_engine(database_url, schema=schema)
    try:
        await upgrade_schema(engine, schema=schema, versions_dir=VERSIONS)
        async with engine.begin() as conn:
            await conn.execute(text("SET LOCAL enable_seqscan = off"))
            plan = "\n".join((await conn.execute(text("EXPLAIN " + PICK_ROWS.text), {"loc": "WH1"})).scalars())
        assert "allocation_snapshots_pick_idx" in plan
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await engine.dispose()


async def test_the_snapshot_row_leaves_out_keys_at_their_default_and_reads_back_the_same(database_url: str) -> None:
    schema = f"fulfillment_doc_{uuid.uuid4().hex[:8]}"
    engine = create_engine(database_url, schema=schema)
    # a SKU holding the very text that is cut: inside a JSON string its quotes are escaped, so it stays
    odd_sku = 'SKU,"shipment_id":null,"reason":null,"dropship":false,"packed":0'
    lines = [
        LineState(line_id="L1", sku="PLAIN", qty=2, allocated=2),
        LineState(line_id="L2", sku=odd_sku, qty=3, allocated=1, backordered=2, backorder_reason="no stock"),
    ]
    allocations = [
        alloc(1, "L1", "PLAIN", 2, "WH1"),
        alloc(2, "L2", odd_sku, 1, "WH1", status="packed", shipment_id="shp-1"),
    ]
    event = OrderAllocated(order_id="o-1", version=1, change="placed", lines=lines, allocations=allocations)
    try:
        await upgrade_schema(engine, schema=schema, versions_dir=VERSIONS)
        async with engine.begin() as conn:
            await apply_allocation_results(conn, [message(event)])
            stored = (await conn.execute(text(
                "SELECT lines, allocations FROM allocation_snapshots WHERE order_id = 'o-1'"))).one()
            view = (await conn.execute(text(
                "SELECT allocation_id, sku, status, shipment_id FROM allocations ORDER BY allocation_id"))).all()
        assert stored.lines[0] == {"line_id": "L1", "sku": "PLAIN", "qty": 2, "allocated": 2, "backordered": 0}
        assert "presold" in stored.lines[1]  # a line off its defaults is stored whole
        assert "dropship" not in stored.allocations[0] and "dropship" in stored.allocations[1]
        assert [LineState.model_validate(s) for s in stored.lines] == lines
        assert [AllocationLine.model_validate(a) for a in stored.allocations] == allocations
        assert [tuple(r) for r in view] == [(1, "PLAIN", "allocated", None), (2, odd_sku, "packed", "shp-1")]
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await engine.dispose()
