"""Inventory use cases on a real PostgreSQL: receipts, adjustments, concurrency, transfers, stock
takes (bad sheets, all-bins protection, submit once), and events applied exactly once."""

from __future__ import annotations

import asyncio
import io
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import orjson
import pytest
from allocation_support import fresh_engine
from allocation_support import location as alloc_location
from allocation_support import order as alloc_order
from allocation_support import stock as alloc_stock
from http_support import runtime as http_runtime
from openpyxl import load_workbook
from sqlalchemy import text
from staff_auth import ADMIN, guarded_app

from libs.contracts import decode_event, new_envelope
from libs.contracts.envelope import EventMessage
from libs.contracts.events import (
    Event,
    LocationChanged,
    OrderPacked,
    OrderShipped,
    ReturnLine,
    ReturnReceived,
    ShipmentLine,
)
from libs.database import create_engine, upgrade_schema
from services.allocation.entrypoints.http import ACCESS as ALLOCATION_ACCESS
from services.allocation.entrypoints.http import build_router as alloc_router
from services.allocation.service_layer.allocating import apply_events as apply_allocation_events
from services.inventory.adapters.allocation_api import AllocationReservations
from services.inventory.domain.stock import PositionKey, Transfer
from services.inventory.domain.stocktake import RawSheet
from services.inventory.entrypoints.http import ACCESS, build_router
from services.inventory.service_layer.events import apply_fulfillment_events
from services.inventory.service_layer.locations import save_location
from services.inventory.service_layer.stock import (
    DuplicateReceipt,
    ReceiptLine,
    StockRefused,
    adjust_stock,
    receive_goods,
    transfer_stock,
)
from services.inventory.service_layer.stocktakes import SheetRejected, submit_stocktake, upload_count

pytestmark = pytest.mark.integration

VERSIONS = Path(__file__).parents[2] / "services" / "inventory" / "adapters" / "migrations" / "versions"
# A schema of its own: a running inventory service on the same database (e2e runs) relays and
# deletes outbox rows of the "inventory" schema, which these tests read.
SCHEMA = "inventory_it"
HEADER = ["sku", "bin", "lot", "on_hand", "reserved", "counted"]


@pytest.fixture(scope="module")
async def engine(database_url: str):  # type: ignore[no-untyped-def]
    eng = create_engine(database_url, schema=SCHEMA)
    await upgrade_schema(eng, schema=SCHEMA, versions_dir=VERSIONS)
    yield eng
    await eng.dispose()


@pytest.fixture
async def location(engine) -> str:  # type: ignore[no-untyped-def]
    location_id = f"WH-{uuid.uuid4().hex[:8]}"
    async with engine.begin() as conn:
        await save_location(conn, LocationChanged(location_id=location_id, name="Main", country="DE"))
    return location_id


def sku() -> str:
    return f"SKU-{uuid.uuid4().hex[:10]}"


async def receive(engine, location_id: str, *lines: tuple[str, str, str, int]) -> None:  # type: ignore[no-untyped-def]
    async with engine.begin() as conn:
        await receive_goods(
            conn,
            location_id,
            f"GRN-{uuid.uuid4().hex[:8]}",
            [ReceiptLine(s, b, lot, q) for s, b, lot, q in lines],
            "tester",
        )


async def position(engine, sku_: str, location_id: str, bin_: str, lot: str = ""):  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        return (
            await conn.execute(
                text(
                    "SELECT on_hand, seq, sellable FROM positions"
                    " WHERE sku = :s AND location_id = :l AND bin = :b AND lot = :lot"
                ),
                {"s": sku_, "l": location_id, "b": bin_, "lot": lot},
            )
        ).first()


async def ledger_sum(engine, sku_: str) -> int:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        return (
            await conn.execute(text("SELECT COALESCE(sum(delta), 0) FROM ledger WHERE sku = :s"), {"s": sku_})
        ).scalar_one()


async def stock_events(engine, sku_: str) -> list[dict]:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT value FROM outbox_messages WHERE topic = 'oms.inventory.v1' AND key = :k ORDER BY id, position"),
                {"k": sku_},
            )
        ).all()
    out = []
    for row in rows:
        envelope, event = decode_event(bytes(row.value))
        out.append({"type": envelope.event_type, **event.model_dump(mode="json")})
    return out


def delivered(event: Event, event_id: uuid.UUID | None = None):  # type: ignore[no-untyped-def]
    return EventMessage(new_envelope(event, source="test", correlation_id="corr-1", event_id=event_id), event)


# --- receipts, adjustments, transfers -----------------------------------------------------------


async def test_receipt_writes_ledger_position_and_stock_adjusted_in_the_outbox(engine, location):
    s = sku()
    async with engine.begin() as conn:
        entries = await receive_goods(
            conn,
            location,
            "GRN-1",
            [ReceiptLine(s, "A-01", "L1", 12), ReceiptLine(s, "A-01", "L1", 3)],
            "alice",
        )
    assert [(e.on_hand_after, e.seq) for e in entries] == [(12, 1), (15, 2)]
    pos = await position(engine, s, location, "A-01", "L1")
    assert (pos.on_hand, pos.seq, pos.sellable) == (15, 2, True)
    assert await ledger_sum(engine, s) == 15
    events = await stock_events(engine, s)
    assert [
        (e["type"], e["delta"], e["on_hand"], e["seq"], e["reason"], e["actor"], e["reference"])
        for e in events
    ] == [
        ("StockAdjusted", 12, 12, 1, "receipt", "alice", "GRN-1"),
        ("StockAdjusted", 3, 15, 2, "receipt", "alice", "GRN-1"),
    ]


async def test_the_same_receipt_reference_is_booked_once(engine, location):
    s = sku()
    async with engine.begin() as conn:
        await receive_goods(conn, location, "GRN-dup", [ReceiptLine(s, "A-01", "", 5)], None)
    with pytest.raises(DuplicateReceipt):
        async with engine.begin() as conn:
            await receive_goods(conn, location, "GRN-dup", [ReceiptLine(s, "A-01", "", 5)], None)
    assert (await position(engine, s, location, "A-01")).on_hand == 5


async def test_receipt_to_an_unknown_location_is_refused(engine):
    with pytest.raises(StockRefused) as refused:
        async with engine.begin() as conn:
            await receive_goods(
                conn, "NOWHERE", f"GRN-{uuid.uuid4().hex}", [ReceiptLine(sku(), "A", "", 1)], None
            )
    assert refused.value.problems[0].field == "lines.0"


async def test_receipt_of_a_lot_expired_before_its_receipt_date_is_refused(engine, location, client):
    s, reference = sku(), f"GRN-{uuid.uuid4().hex}"
    received = datetime(2026, 11, 20, tzinfo=UTC)
    lines = [
        ReceiptLine(s, "A-01", "GOOD", 5, received, received + timedelta(days=30)),
        ReceiptLine(s, "A-01", "BAD", 5, received, received - timedelta(days=1)),
    ]
    with pytest.raises(StockRefused) as refused:
        async with engine.begin() as conn:
            await receive_goods(conn, location, reference, lines, None)
    assert [p.field for p in refused.value.problems] == ["lines.1.expires_at"]
    assert await position(engine, s, location, "A-01", "GOOD") is None  # nothing of the receipt is booked
    r = await client.post(
        "/v1/receipts",
        headers={"Authorization": "Bearer dev-admin-token"},
        json={"location_id": location, "reference": reference, "lines": [
            {"sku": s, "bin": "A-01", "lot": "BAD", "qty": 5, "received_at": "2026-11-20T00:00:00Z",
             "expires_at": "2026-11-19T00:00:00Z"}]},
    )
    assert r.status_code == 422 and [d["field"] for d in r.json()["detail"]] == ["lines.0.expires_at"]


async def test_adjustment_below_zero_is_refused_and_nothing_is_written(engine, location):
    s = sku()
    await receive(engine, location, (s, "A-01", "", 4))
    with pytest.raises(StockRefused) as refused:
        async with engine.begin() as conn:
            await adjust_stock(conn, PositionKey(s, location, "A-01", ""), -5, "damage", None, "bob")
    assert refused.value.problems[0].field == "delta"
    assert (await position(engine, s, location, "A-01")).on_hand == 4
    assert await ledger_sum(engine, s) == 4
    assert len(await stock_events(engine, s)) == 1  # only the receipt


async def test_adjustment_records_reason_code_and_actor(engine, location):
    s = sku()
    await receive(engine, location, (s, "A-01", "", 4))
    async with engine.begin() as conn:
        entry = await adjust_stock(conn, PositionKey(s, location, "A-01", ""), -1, "damage", "case 7", "bob")
    assert (entry.on_hand_after, entry.seq) == (3, 2)
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT reason, reason_code, actor FROM ledger WHERE sku = :s AND seq = 2"), {"s": s}
            )
        ).one()
    assert tuple(row) == ("adjustment", "damage", "bob")


async def test_concurrent_receipts_to_one_position_are_all_counted(engine, location):
    s = sku()

    async def one(i: int) -> None:
        async with engine.begin() as conn:
            await receive_goods(conn, location, f"GRN-c{i}-{s}", [ReceiptLine(s, "A-01", "", 1)], None)

    await asyncio.gather(*(one(i) for i in range(8)))
    pos = await position(engine, s, location, "A-01")
    assert (pos.on_hand, pos.seq) == (8, 8)
    assert await ledger_sum(engine, s) == 8
    assert sorted(e["seq"] for e in await stock_events(engine, s)) == list(range(1, 9))


async def test_transfer_books_out_and_in_in_one_transaction(engine, location):
    s = sku()
    other = f"WH-{uuid.uuid4().hex[:8]}"
    async with engine.begin() as conn:
        await save_location(conn, LocationChanged(location_id=other, name="Second", country="FR"))
    await receive(engine, location, (s, "A-01", "L1", 10))
    async with engine.begin() as conn:
        await transfer_stock(conn, Transfer(s, location, "A-01", "L1", other, "B-01", 4, "TR-1", "carl"))
    assert (await position(engine, s, location, "A-01", "L1")).on_hand == 6
    assert (await position(engine, s, other, "B-01", "L1")).on_hand == 4
    assert [e["reason"] for e in await stock_events(engine, s)] == ["receipt", "transfer_out", "transfer_in"]
    with pytest.raises(StockRefused):
        async with engine.begin() as conn:
            await transfer_stock(conn, Transfer(s, location, "A-01", "L1", other, "B-01", 7))
    assert (await position(engine, s, other, "B-01", "L1")).on_hand == 4


async def test_ledger_rows_cannot_be_changed_or_deleted(engine, location):
    s = sku()
    await receive(engine, location, (s, "A-01", "", 1))
    with pytest.raises(Exception, match="append-only"):
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE ledger SET delta = 5 WHERE sku = :s"), {"s": s})


# --- events from fulfillment and allocation ------------------------------------------------------


async def test_shipment_is_applied_once_even_if_delivered_twice(engine, location):
    s = sku()
    await receive(engine, location, (s, "A-01", "L1", 10))
    shipped = OrderShipped(
        order_id="ord-1",
        shipment_id="shp-1",
        carrier="DHL",
        tracking_number="T1",
        lines=[
            ShipmentLine(
                allocation_id=77, line_id="1", sku=s, location_id=location, bin="A-01", lot="L1", qty=3
            )
        ],
    )
    first = delivered(shipped)
    packed = delivered(OrderPacked(order_id="ord-1", shipment_id="shp-1", lines=[]))
    async with engine.begin() as conn:
        await apply_fulfillment_events(conn, [first, packed, first])  # twice in one batch
    async with engine.begin() as conn:
        await apply_fulfillment_events(conn, [first, packed])  # and redelivered later
    assert (await position(engine, s, location, "A-01", "L1")).on_hand == 7
    events = await stock_events(engine, s)
    assert [(e["reason"], e["delta"], e["order_id"], e["allocation_id"]) for e in events] == [
        ("receipt", 10, None, None),
        ("shipment", -3, "ord-1", 77),
    ]


async def test_shipment_beyond_recorded_stock_is_booked_with_a_correction_first(engine, location):
    s = sku()
    await receive(engine, location, (s, "A-01", "", 1))
    shipped = OrderShipped(
        order_id="ord-9",
        shipment_id="shp-9",
        carrier="DHL",
        tracking_number="T9",
        lines=[
            ShipmentLine(allocation_id=5, line_id="1", sku=s, location_id=location, bin="A-01", lot="", qty=3)
        ],
    )
    async with engine.begin() as conn:
        await apply_fulfillment_events(conn, [delivered(shipped)])
    assert (await position(engine, s, location, "A-01")).on_hand == 0
    assert await ledger_sum(engine, s) == 0
    events = await stock_events(engine, s)
    assert [(e["reason"], e["delta"], e["on_hand"], e["seq"]) for e in events] == [
        ("receipt", 1, 1, 1),
        ("adjustment", 2, 3, 2),
        ("shipment", -3, 0, 3),
    ]


async def test_returns_go_back_to_stock_or_into_quarantine(engine, location):
    s = sku()
    await receive(engine, location, (s, "A-01", "", 2))
    returned = ReturnReceived(
        order_id="ord-2",
        return_id="ret-1",
        refund_total=Decimal("0"),
        lines=[
            ReturnLine(
                line_id="1",
                sku=s,
                qty=1,
                condition="sellable",
                location_id=location,
                bin="A-01",
                refund=Decimal("0"),
            ),
            ReturnLine(
                line_id="1",
                sku=s,
                qty=2,
                condition="damaged",
                location_id=location,
                bin="A-01",
                refund=Decimal("0"),
            ),
        ],
    )
    async with engine.begin() as conn:
        await apply_fulfillment_events(conn, [delivered(returned)])
    assert (await position(engine, s, location, "A-01")).on_hand == 3
    quarantine = await position(engine, s, location, "QUARANTINE")
    assert (quarantine.on_hand, quarantine.sellable) == (2, False)
    events = await stock_events(engine, s)
    assert [(e["reason"], e["delta"], e["sellable"]) for e in events[1:]] == [
        ("return", 1, True),
        ("quarantine", 2, False),
    ]


# --- stock take ----------------------------------------------------------------------------------


@pytest.fixture
async def allocation(database_url: str):  # type: ignore[no-untyped-def]
    """The real allocation service's HTTP API on the same database, as inventory reaches it."""
    engine = await fresh_engine(database_url)
    runtime = http_runtime(engine)
    app = guarded_app("allocation", ALLOCATION_ACCESS, [alloc_router(runtime)])  # type: ignore[arg-type]
    # inventory presents its configured token (the development viewer token by default)
    source = AllocationReservations("http://allocation", transport=httpx.ASGITransport(app=app))
    source.engine = engine  # type: ignore[attr-defined]
    yield source
    await engine.dispose()


async def reserve(allocation, sku_: str, location_id: str, bin_: str, on_hand: int, qty: int) -> None:  # type: ignore[no-untyped-def]
    """Let allocation reserve ``qty`` of ``on_hand`` at the position: the way it really happens,
    an order allocated against stock it heard of from inventory."""
    async with allocation.engine.begin() as conn:
        await apply_allocation_events(conn, [
            alloc_location(location_id), alloc_stock(sku_, on_hand, on_hand, 1, location_id=location_id, bin=bin_),
            alloc_order(f"o-{uuid.uuid4().hex[:8]}", [("1", sku_, qty)]),
        ])


def raw(*rows: list) -> RawSheet:
    return RawSheet(HEADER, 1, [(i + 2, r) for i, r in enumerate(rows)])


async def test_bad_sheet_is_rejected_with_row_numbers_and_nothing_is_applied(engine, location, allocation):
    s = sku()
    await receive(engine, location, (s, "A-01", "", 5))
    with pytest.raises(SheetRejected) as rejected:
        async with engine.begin() as conn:
            await upload_count(
                conn,
                location,
                "all_bins",
                False,
                raw(
                    [s, "A-01", "", 5, 0, 4],
                    ["UNKNOWN", "A-01", "", 0, 0, 1],
                    [s, "Z-99", "", 0, 0, 1],
                    [s, "A-01", "", 5, 0, "x"],
                ),
                "count.csv",
                "dana",
                allocation,
            )
    assert {(p.row, p.column) for p in rejected.value.problems} == {
        (3, "sku"),
        (4, "bin"),
        (5, "counted"),
        (5, None),
    }
    assert (await position(engine, s, location, "A-01")).on_hand == 5
    async with engine.connect() as conn:
        stored = (
            await conn.execute(
                text("SELECT count(*) FROM stocktakes WHERE location_id = :l"), {"l": location}
            )
        ).scalar_one()
    assert stored == 0


async def test_all_bins_zeroes_missing_bins_protects_reserved_and_submits_once(engine, location, allocation):
    a, b = sku(), sku()
    await receive(engine, location, (a, "A-01", "", 10), (a, "A-02", "", 6), (b, "B-01", "", 4))
    await reserve(allocation, b, location, "B-01", 4, 3)
    async with engine.begin() as conn:
        preview = await upload_count(
            conn, location, "all_bins", False, raw([a, "A-01", "", 10, 0, 9]), "count.csv", "dana", allocation
        )
    rows = {(ln["sku"], ln["bin"]): ln for ln in preview["lines"]}
    assert rows[a, "A-01"]["delta"] == -1
    assert rows[a, "A-02"]["delta"] == -6 and rows[a, "A-02"]["row"] is None
    assert rows[b, "B-01"]["new_on_hand"] == 3 and rows[b, "B-01"]["problems"]
    for _ in range(2):
        async with engine.begin() as conn:
            result = await submit_stocktake(conn, preview["stocktake_id"], "erin", allocation)
    assert result["already_submitted"] is True
    assert (await position(engine, a, location, "A-01")).on_hand == 9
    assert (await position(engine, a, location, "A-02")).on_hand == 0
    assert (await position(engine, b, location, "B-01")).on_hand == 3
    assert await ledger_sum(engine, a) == 9 and await ledger_sum(engine, b) == 3
    counts = [
        e for e in await stock_events(engine, a) + await stock_events(engine, b) if e["reason"] == "count"
    ]
    assert sorted((e["delta"], e["release_shortfall"]) for e in counts) == [
        (-6, False),
        (-1, False),
        (-1, False),
    ]


async def test_all_bins_with_release_shortfall_goes_below_reserved_and_says_so(engine, location, allocation):
    b = sku()
    await receive(engine, location, (b, "B-01", "", 4))
    await reserve(allocation, b, location, "B-01", 4, 3)
    async with engine.begin() as conn:
        preview = await upload_count(
            conn, location, "all_bins", True, raw([b, "B-01", "", 4, 3, 1]), None, None, allocation
        )
        await submit_stocktake(conn, preview["stocktake_id"], None, allocation)
    [count] = [e for e in await stock_events(engine, b) if e["reason"] == "count"]
    assert (count["delta"], count["on_hand"], count["release_shortfall"]) == (-3, 1, True)


async def test_specific_bins_changes_only_the_listed_rows(engine, location, allocation):
    a = sku()
    await receive(engine, location, (a, "A-01", "", 10), (a, "A-02", "", 6))
    async with engine.begin() as conn:
        preview = await upload_count(
            conn, location, "specific_bins", False, raw([a, "A-02", "", 6, 0, 8]), None, None, allocation
        )
        await submit_stocktake(conn, preview["stocktake_id"], None, allocation)
    assert (await position(engine, a, location, "A-01")).on_hand == 10
    assert (await position(engine, a, location, "A-02")).on_hand == 8


# --- over HTTP: export, upload (multipart), preview, submit ---------------------------------------


@pytest.fixture
async def client(engine, allocation):  # type: ignore[no-untyped-def]
    runtime = http_runtime(engine)
    app = guarded_app("inventory", ACCESS, [build_router(runtime, allocation)])  # type: ignore[arg-type]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://inventory", headers=ADMIN
    ) as c:
        yield c


async def test_http_stock_take_round_trip_with_xlsx_export_and_csv_upload(client, engine, location):
    s = sku()
    r = await client.post(
        "/v1/receipts",
        headers={"X-Actor": "fay"},
        json={
            "location_id": location,
            "reference": "GRN-http",
            "lines": [{"sku": s, "bin": "A-01", "qty": 5}],
        },
    )
    assert r.status_code == 201, r.text
    r = await client.get("/v1/stocktakes/export", params={"location_id": location, "format": "xlsx"})
    assert r.status_code == 200
    ws = load_workbook(io.BytesIO(r.content)).active
    assert [c.value for c in ws[1]] == HEADER and ws[2][0].value == s and ws[2][3].value == 5
    csv_export = (await client.get("/v1/stocktakes/export", params={"location_id": location})).text
    assert csv_export.splitlines()[1] == f"{s},A-01,,5,0,"

    bad = f"sku,bin,lot,counted\n{s},A-01,,-1\n{s},NOPE,,2\n"
    r = await client.post(
        "/v1/stocktakes",
        data={"location_id": location, "mode": "specific_bins"},
        files={"file": ("count.csv", bad.encode(), "text/csv")},
    )
    assert r.status_code == 422
    assert [(d["row"], d["field"]) for d in r.json()["detail"]] == [(2, "row 2.counted"), (3, "row 3.bin")]

    good = csv_export.replace(f"{s},A-01,,5,0,", f"{s},A-01,,5,0,7")
    r = await client.post(
        "/v1/stocktakes",
        data={"location_id": location, "mode": "specific_bins"},
        files={"file": ("count.csv", good.encode(), "text/csv")},
    )
    assert r.status_code == 201, r.text
    take = r.json()
    assert [(ln["row"], ln["current"], ln["counted"], ln["delta"]) for ln in take["lines"]] == [(2, 5, 7, 2)]
    assert (await client.get(f"/v1/stocktakes/{take['stocktake_id']}")).json()["status"] == "previewed"

    # The exported workbook, counted and uploaded back as XLSX, is read the same way.
    ws["F2"] = 6
    counted = io.BytesIO()
    ws.parent.save(counted)
    r = await client.post(
        "/v1/stocktakes",
        data={"location_id": location, "mode": "all_bins", "release_shortfall": "false"},
        files={"file": ("count.xlsx", counted.getvalue(), "application/octet-stream")},
    )
    assert r.status_code == 201, r.text
    assert [(ln["row"], ln["counted"], ln["delta"]) for ln in r.json()["lines"]] == [(2, 6, 1)]
    r = await client.post(f"/v1/stocktakes/{take['stocktake_id']}/submit")
    assert r.status_code == 200 and r.json()["already_submitted"] is False
    stock = (await client.get(f"/v1/stock/{s}")).json()
    assert (stock["on_hand"], stock["available"]) == (7, 7)
    ledger = (await client.get("/v1/ledger", params={"sku": s})).json()
    assert [(row["reason"], row["delta"]) for row in ledger] == [("count", 2), ("receipt", 5)]


async def test_http_bad_requests_list_every_problem(client, location):
    r = await client.post(
        "/v1/adjustments",
        json={"sku": "X", "location_id": location, "bin": "A", "delta": 0, "reason_code": "oops"},
    )
    assert r.status_code == 422 and {d["field"] for d in r.json()["detail"]} == {"delta", "reason_code"}
    r = await client.post(
        "/v1/locations", json={"location_id": "L", "name": "", "country": "XX", "kind": "shed"}
    )
    assert r.status_code == 422 and {d["field"] for d in r.json()["detail"]} == {"name", "country", "kind"}
    r = await client.post("/v1/stocktakes", data={"location_id": location, "mode": "some"})
    assert r.status_code == 422 and {d["field"] for d in r.json()["detail"]} == {"file", "mode"}
    assert (await client.get("/v1/stock/NO-SUCH-SKU")).status_code == 404


async def test_http_location_can_be_deactivated_with_patch(client, engine):
    location_id = f"ST-{uuid.uuid4().hex[:6]}"
    r = await client.post(
        "/v1/locations",
        json={
            "location_id": location_id,
            "name": "Store",
            "kind": "store",
            "country": "de",
            "ships_to": ["DE", "at"],
            "pickup": True,
        },
    )
    assert r.status_code == 201, r.text
    r = await client.patch(f"/v1/locations/{location_id}", json={"active": False})
    assert r.status_code == 200 and r.json()["active"] is False and r.json()["ships_to"] == ["AT", "DE"]
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT value FROM outbox_messages WHERE key = :k ORDER BY id, position"), {"k": location_id}
            )
        ).all()
    events = [orjson.loads(bytes(r.value)) for r in rows]
    assert [(e["event_type"], e["data"]["active"]) for e in events] == [
        ("LocationChanged", True),
        ("LocationChanged", False),
    ]
    assert (await client.patch("/v1/locations/NOPE", json={"active": False})).status_code == 404


async def test_stock_view_and_stock_take_read_reserved_from_allocation(client, engine, allocation, location):
    s = sku()
    await receive(engine, location, (s, "A-01", "", 5))
    await reserve(allocation, s, location, "A-01", 5, 2)
    stock = (await client.get(f"/v1/stock/{s}")).json()
    assert (stock["on_hand"], stock["reserved"], stock["available"]) == (5, 2, 3)
    csv_export = (await client.get("/v1/stocktakes/export", params={"location_id": location})).text
    assert f"{s},A-01,,5,2," in csv_export.splitlines()


async def test_stock_take_answers_503_and_changes_nothing_when_allocation_cannot_be_asked(engine, location):
    s = sku()
    await receive(engine, location, (s, "A-01", "", 5))
    runtime = http_runtime(engine)
    # nothing listens on port 9 of this machine: allocation is down
    app = guarded_app("inventory", ACCESS, [build_router(runtime, AllocationReservations("http://127.0.0.1:9"))])  # type: ignore[arg-type]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://inventory", headers=ADMIN
    ) as c:
        r = await c.post(
            "/v1/stocktakes",
            data={"location_id": location, "mode": "all_bins"},
            files={"file": ("count.csv", f"sku,bin,lot,counted\n{s},A-01,,0\n".encode(), "text/csv")},
        )
        assert r.status_code == 503 and r.headers["Retry-After"] == "5", r.text
        assert r.json()["detail"][0]["field"] == "(allocation)"
    assert (await position(engine, s, location, "A-01")).on_hand == 5
    async with engine.connect() as conn:
        stored = (await conn.execute(text("SELECT count(*) FROM stocktakes WHERE location_id = :l"),
                                     {"l": location})).scalar_one()
    assert stored == 0
