"""Fulfillment use cases on a real PostgreSQL: the allocation mirror, pack hand-over, shipping,
returns, and that a redelivered event has no second effect."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from sqlalchemy import text

from libs.contracts import Topic, new_envelope
from libs.contracts.events import (
    AllocationLine,
    AllocationPacked,
    Event,
    LineState,
    OrderAllocated,
    OrderBackordered,
    OrderLine,
    OrderPlaced,
    PackRejected,
)
from libs.contracts.orders import Address, Customer
from libs.database import create_engine, upgrade_schema
from libs.messaging.consumer import EventMessage
from services.fulfillment.adapters.tables import SCHEMA
from services.fulfillment.domain.packing import PackRefused, ShipRefused
from services.fulfillment.domain.returns import ReturnRefused, ReturnRequestLine
from services.fulfillment.service_layer.mirroring import apply_allocation_results
from services.fulfillment.service_layer.packing import (
    OrderNotFound,
    pick_lists,
    request_pack,
    set_serialized,
    ship_shipment,
    shipment_view,
)
from services.fulfillment.service_layer.prices import OrderPrices
from services.fulfillment.service_layer.returns import receive_return

pytestmark = pytest.mark.integration

VERSIONS = Path(__file__).parents[2] / "services" / "fulfillment" / "adapters" / "migrations" / "versions"


@pytest.fixture(scope="module")
async def engine(database_url: str):  # type: ignore[no-untyped-def]
    eng = create_engine(database_url, schema=SCHEMA)
    await upgrade_schema(eng, schema=SCHEMA, versions_dir=VERSIONS)
    yield eng
    await eng.dispose()


def message(event: Event) -> EventMessage:
    return EventMessage(new_envelope(event, source="test", correlation_id="test"), event)


def placed(order_id: str, *, ship_complete: bool = False, sku2: str = "PHONE") -> OrderPlaced:
    return OrderPlaced(
        order_id=order_id,
        channel="web",
        external_id=order_id,
        placed_at=datetime.now(UTC),
        currency="EUR",
        customer=Customer(),
        ship_to=Address(country="DE"),
        ship_complete=ship_complete,
        lines=[
            OrderLine(line_id="L1", sku="SCREW", qty=25, unit_price=Decimal("0.40")),
            OrderLine(line_id="L2", sku=sku2, qty=2, unit_price=Decimal("199.00")),
        ],
    )


def prices_of(order: OrderPlaced) -> OrderPrices:
    """What order intake's API answers for the order (currency, unit price per line)."""
    return OrderPrices(order.currency, {ln.line_id: ln.unit_price for ln in order.lines})


def alloc(
    aid: int,
    line_id: str,
    sku: str,
    qty: int,
    *,
    bin_: str = "A-1",
    lot: str = "A",
    status: str = "allocated",
    shipment_id: str | None = None,
) -> AllocationLine:
    return AllocationLine(
        allocation_id=aid,
        line_id=line_id,
        sku=sku,
        location_id="WH1",
        bin=bin_,
        lot=lot,
        qty=qty,
        status=status,
        shipment_id=shipment_id,
    )  # type: ignore[arg-type]


def result(
    cls,
    order_id: str,
    version: int,
    allocations: list[AllocationLine],
    *,
    shipment_id=None,
    detail=None,
    backordered: int = 0,
    ship_complete: bool = False,
    sku2: str = "PHONE",
):  # type: ignore[no-untyped-def]
    per_line: dict[str, int] = {}
    for a in allocations:
        per_line[a.line_id] = per_line.get(a.line_id, 0) + a.qty
    lines = [
        LineState(
            line_id="L1",
            sku="SCREW",
            qty=25,
            allocated=per_line.get("L1", 0),
            backordered=25 - per_line.get("L1", 0),
        ),
        LineState(
            line_id="L2",
            sku=sku2,
            qty=2,
            allocated=per_line.get("L2", 0),
            backordered=2 - per_line.get("L2", 0),
        ),
    ]
    return cls(
        order_id=order_id,
        version=version,
        change=cls.__name__,
        shipment_id=shipment_id,
        detail=detail,
        lines=lines,
        allocations=allocations,
        ship_complete=ship_complete,
    )


def new_order() -> str:
    return f"ord_{uuid.uuid4().hex}"


async def outbox(conn, order_id: str, event_type: str | None = None) -> list[dict]:  # type: ignore[no-untyped-def]
    rows = await conn.execute(
        text("SELECT topic, value FROM outbox_messages WHERE key = :k ORDER BY id, position"), {"k": order_id}
    )
    events = [orjson.loads(r.value) | {"_topic": r.topic} for r in rows]
    return [e for e in events if event_type is None or e["event_type"] == event_type]


async def mirrored(conn, order_id: str) -> list[tuple]:  # type: ignore[no-untyped-def]
    rows = await conn.execute(
        text("SELECT allocation_id, qty, status FROM allocations WHERE order_id = :o ORDER BY allocation_id"),
        {"o": order_id},
    )
    return [tuple(r) for r in rows]


async def given_allocated_order(
    engine, order_id: str, allocations: list[AllocationLine], *, ship_complete: bool = False
) -> None:  # type: ignore[no-untyped-def]
    async with engine.begin() as conn:
        await apply_allocation_results(
            conn, [message(result(OrderAllocated, order_id, 1, allocations, ship_complete=ship_complete))]
        )


async def test_newer_snapshot_replaces_the_mirror_and_an_older_one_is_ignored(engine) -> None:  # type: ignore[no-untyped-def]
    order_id = new_order()
    async with engine.begin() as conn:
        await apply_allocation_results(
            conn, [message(result(OrderAllocated, order_id, 2, [alloc(11, "L1", "SCREW", 5)]))]
        )
        await apply_allocation_results(
            conn, [message(result(OrderAllocated, order_id, 1, [alloc(10, "L1", "SCREW", 9)]))]
        )
        assert await mirrored(conn, order_id) == [(11, 5, "allocated")]
        # Within one batch the newest wins too, whatever the order of arrival.
        await apply_allocation_results(
            conn,
            [
                message(result(OrderAllocated, order_id, 4, [alloc(13, "L1", "SCREW", 7)])),
                message(result(OrderAllocated, order_id, 3, [alloc(12, "L1", "SCREW", 6)])),
            ],
        )
        assert await mirrored(conn, order_id) == [(13, 7, "allocated")]


async def test_pick_list_batches_orders_per_location_sorted_by_bin(engine) -> None:  # type: ignore[no-untyped-def]
    o1, o2 = new_order(), new_order()
    sku = f"SKU-{uuid.uuid4().hex[:8]}"
    async with engine.begin() as conn:
        await apply_allocation_results(
            conn,
            [
                message(
                    result(
                        OrderAllocated,
                        o1,
                        1,
                        [alloc(1, "L1", sku, 3, bin_="B-10"), alloc(2, "L2", sku, 1, bin_="B-2")],
                    )
                ),
                message(
                    result(
                        OrderAllocated,
                        o2,
                        1,
                        [
                            alloc(3, "L1", sku, 4, bin_="B-10"),
                            alloc(4, "L2", sku, 2, bin_="B-3", status="packed", shipment_id="x"),
                        ],
                    )
                ),
            ],
        )
        lists = await pick_lists(conn, "WH1")
    rows = [r for r in lists[0]["rows"] if r["sku"] == sku]
    assert [(r["bin"], r["qty"]) for r in rows] == [("B-2", 1), ("B-10", 7)]
    assert sorted(o["order_id"] for o in rows[1]["orders"]) == sorted([o1, o2])


async def test_pack_request_stores_a_pending_shipment_and_writes_pack_requested(engine) -> None:  # type: ignore[no-untyped-def]
    order_id = new_order()
    await given_allocated_order(
        engine, order_id, [alloc(1, "L1", "SCREW", 15), alloc(2, "L1", "SCREW", 7, lot="B")]
    )
    async with engine.begin() as conn:
        shipment_id = await request_pack(conn, order_id, None, {})
        [event] = await outbox(conn, order_id, "PackRequested")
        shipment = await shipment_view(conn, shipment_id)
    assert event["_topic"] == Topic.FULFILLMENT
    assert event["data"]["shipment_id"] == shipment_id and event["data"]["line_ids"] == ["L1"]
    assert shipment["status"] == "pending"


async def test_pack_refusals_unknown_order_nothing_allocated_and_missing_serials(engine) -> None:  # type: ignore[no-untyped-def]
    order_id = new_order()
    async with engine.begin() as conn:
        with pytest.raises(OrderNotFound):
            await request_pack(conn, order_id, None, {})
        await apply_allocation_results(conn, [message(result(OrderBackordered, order_id, 1, [], sku2="PHONE-SER"))])
        with pytest.raises(PackRefused) as exc:
            await request_pack(conn, order_id, None, {})
        assert exc.value.kind == "conflict"
        await set_serialized(conn, "PHONE-SER", True)
        await apply_allocation_results(
            conn, [message(result(OrderAllocated, order_id, 2, [alloc(5, "L2", "PHONE-SER", 2)], sku2="PHONE-SER"))]
        )
        with pytest.raises(PackRefused) as exc:
            await request_pack(conn, order_id, None, {"L2": ["SN1"]})
        assert exc.value.kind == "invalid" and exc.value.problems[0].field == "serials.L2"
        assert await outbox(conn, order_id, "PackRequested") == []


async def test_allocation_packed_marks_the_shipment_packed_and_publishes_order_packed(engine) -> None:  # type: ignore[no-untyped-def]
    order_id = new_order()
    await given_allocated_order(engine, order_id, [alloc(1, "L1", "SCREW", 25), alloc(2, "L2", "PHONE", 2)])
    async with engine.begin() as conn:
        shipment_id = await request_pack(conn, order_id, None, {"L2": ["SN1", "SN2"]})
    packed = message(
        result(
            AllocationPacked,
            order_id,
            2,
            [
                alloc(1, "L1", "SCREW", 25, status="packed", shipment_id=shipment_id),
                alloc(2, "L2", "PHONE", 2, status="packed", shipment_id=shipment_id),
            ],
            shipment_id=shipment_id,
        )
    )
    async with engine.begin() as conn:
        await apply_allocation_results(conn, [packed])
        # The same event delivered again (a crash before the offset commit) changes nothing.
        await apply_allocation_results(conn, [packed])
        shipment = await shipment_view(conn, shipment_id)
        events = await outbox(conn, order_id, "OrderPacked")
        picks = [
            r
            for pl in await pick_lists(conn, "WH1")
            for r in pl["rows"]
            for o in r["orders"]
            if o["order_id"] == order_id
        ]
    assert shipment["status"] == "packed" and shipment["total_qty"] == 27
    assert [(ln["line_id"], ln["qty"], ln["serials"]) for ln in shipment["lines"]] == [
        ("L1", 25, []),
        ("L2", 2, ["SN1", "SN2"]),
    ]
    assert len(events) == 1 and events[0]["data"]["shipment_id"] == shipment_id
    assert picks == []


async def test_pack_rejected_marks_the_shipment_rejected_with_the_detail(engine) -> None:  # type: ignore[no-untyped-def]
    order_id = new_order()
    await given_allocated_order(engine, order_id, [alloc(1, "L1", "SCREW", 25)])
    async with engine.begin() as conn:
        shipment_id = await request_pack(conn, order_id, None, {})
        await apply_allocation_results(
            conn,
            [
                message(
                    result(
                        PackRejected,
                        order_id,
                        2,
                        [],
                        shipment_id=shipment_id,
                        detail="nothing allocated on L1",
                    )
                )
            ],
        )
        shipment = await shipment_view(conn, shipment_id)
    assert (shipment["status"], shipment["detail"]) == ("rejected", "nothing allocated on L1")


async def test_ship_only_after_packed_then_returns_within_what_shipped(engine) -> None:  # type: ignore[no-untyped-def]
    order_id = new_order()
    await given_allocated_order(engine, order_id, [alloc(1, "L1", "SCREW", 25)])
    async with engine.begin() as conn:
        shipment_id = await request_pack(conn, order_id, None, {})
    async with engine.begin() as conn:
        with pytest.raises(ShipRefused) as exc:
            await ship_shipment(conn, shipment_id, "UPS", "1Z1")
        assert exc.value.kind == "conflict"
    async with engine.begin() as conn:
        await apply_allocation_results(
            conn,
            [
                message(
                    result(
                        AllocationPacked,
                        order_id,
                        2,
                        [alloc(1, "L1", "SCREW", 25, status="packed", shipment_id=shipment_id)],
                        shipment_id=shipment_id,
                    )
                )
            ],
        )
        assert await ship_shipment(conn, shipment_id, "UPS", "1Z1") is True
        assert await ship_shipment(conn, shipment_id, "UPS", "1Z1") is False  # idempotent
        [shipped] = await outbox(conn, order_id, "OrderShipped")
    assert shipped["data"]["lines"][0]["allocation_id"] == 1 and shipped["data"]["lines"][0]["qty"] == 25
    assert shipped["data"]["carrier"] == "UPS"

    def line(qty: int, condition: str = "sellable") -> ReturnRequestLine:
        return ReturnRequestLine("L1", qty, condition, "WH1", "R-1")

    prices = prices_of(placed(order_id))

    async with engine.begin() as conn:
        first = await receive_return(conn, order_id, [line(20), line(3, "damaged")], prices)
    assert Decimal(first["refund_total"]) == Decimal("9.20")
    async with engine.begin() as conn:
        with pytest.raises(ReturnRefused) as refused:
            await receive_return(conn, order_id, [line(3)], prices)
        assert "at most 2" in refused.value.problems[0].problem
        with pytest.raises(ReturnRefused):  # L2 never shipped
            await receive_return(conn, order_id, [ReturnRequestLine("L2", 1, "sellable", "WH1", "R-1")], prices)
        # Inventory could not book units at a location they never left (it may not even exist):
        # refused at the door, nothing stored, no refund.
        with pytest.raises(ReturnRefused) as elsewhere:
            await receive_return(conn, order_id, [ReturnRequestLine("L1", 1, "sellable", "NOWHERE", "R-1")], prices)
        assert [p.field for p in elsewhere.value.problems] == ["lines.0.location_id"]
        [received] = await outbox(conn, order_id, "ReturnReceived")
    assert [ln["refund"] for ln in received["data"]["lines"]] == ["8.0000", "1.2000"]


async def test_ship_complete_order_with_a_backorder_is_not_packed(engine) -> None:  # type: ignore[no-untyped-def]
    order_id = new_order()
    await given_allocated_order(engine, order_id, [alloc(1, "L1", "SCREW", 25)], ship_complete=True)
    async with engine.begin() as conn:
        with pytest.raises(PackRefused) as exc:
            await request_pack(conn, order_id, None, {})
    assert exc.value.kind == "conflict" and "L2 has 2 backordered" in exc.value.problems[0].problem


async def test_concurrent_pack_requests_of_one_order_leave_one_shipment_and_one_pack_request(engine) -> None:  # type: ignore[no-untyped-def]
    order_id = new_order()
    await given_allocated_order(engine, order_id, [alloc(1, "L1", "SCREW", 25)])

    async def pack() -> str | PackRefused:
        try:
            async with engine.begin() as conn:
                return await request_pack(conn, order_id, None, {})
        except PackRefused as exc:
            return exc

    first, second = await asyncio.gather(pack(), pack())
    refused = [r for r in (first, second) if isinstance(r, PackRefused)]
    assert len(refused) == 1 and refused[0].kind == "conflict"
    assert "still waiting for allocation's answer" in refused[0].problems[0].problem
    async with engine.connect() as conn:
        shipments = (await conn.execute(
            text("SELECT status FROM shipments WHERE order_id = :o"), {"o": order_id})).scalars().all()
        assert shipments == ["pending"]
        assert len(await outbox(conn, order_id, "PackRequested")) == 1


async def test_every_http_answer_from_pick_list_to_return_is_the_documented_one(engine) -> None:  # type: ignore[no-untyped-def]
    # host_app checks each 2xx answer against the route's documented model (tests/documented_answers.py)
    import httpx
    from http_support import STAFF, host_app, runtime

    from services.fulfillment.entrypoints.http import build_router

    order_id = new_order()
    await given_allocated_order(engine, order_id, [alloc(1, "L1", "SCREW", 25)])
    class OrderedAt:  # the prices order intake's API answers for this order (test_return_prices asks the real one)
        async def of_order(self, wanted: str) -> OrderPrices | None:
            return prices_of(placed(order_id)) if wanted == order_id else None

    app = host_app(build_router(runtime(engine), pack_wait_seconds=0, prices=OrderedAt()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ff", headers=STAFF) as api:
        r = await api.get("/v1/picklists", params={"location_id": "WH1"})
        assert r.status_code == 200 and any(o["order_id"] == order_id for pl in r.json()
                                            for row in pl["rows"] for o in row["orders"]), r.text
        r = await api.post(f"/v1/orders/{order_id}/pack", json={})
        assert r.status_code == 202 and r.json()["status"] == "pending", r.text
        shipment_id = r.json()["shipment_id"]
        async with engine.begin() as conn:
            await apply_allocation_results(conn, [message(result(
                AllocationPacked, order_id, 2, [alloc(1, "L1", "SCREW", 25, status="packed", shipment_id=shipment_id)],
                shipment_id=shipment_id))])
        r = await api.get(f"/v1/shipments/{shipment_id}")
        assert r.status_code == 200 and r.json()["status"] == "packed", r.text
        r = await api.post(f"/v1/shipments/{shipment_id}/ship", json={"carrier": "UPS", "tracking_number": "1Z1"})
        assert r.status_code == 200 and r.json()["status"] == "shipped", r.text
        r = await api.post("/v1/returns", json={"order_id": order_id, "lines": [
            {"line_id": "L1", "qty": 2, "condition": "sellable", "location_id": "WH1", "bin": "R-1"}]})
        assert r.status_code == 201 and r.json()["refund_total"] == "0.8000", r.text
        r = await api.put("/v1/skus/SCREW", json={"serialized": False})
        assert r.status_code == 200 and r.json() == {"sku": "SCREW", "serialized": False}, r.text
