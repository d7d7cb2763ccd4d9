"""Pre-selling against inbound supply end to end on a real PostgreSQL (issue 10 part 1):
purchase orders created, received and cancelled over inventory's HTTP API; their events
(PurchaseOrderChanged, the receipt's StockAdjusted) carried to allocation as its consumer gets
them; the policy's pre-sell cap set over allocation's HTTP API. Exact figures throughout."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from allocation_support import env, fresh_engine, line_state, location, order, stock
from http_support import runtime as http_runtime
from sqlalchemy import text
from staff_auth import ADMIN, guarded_app

from libs.contracts import decode_event
from libs.contracts.envelope import EventMessage
from libs.contracts.events import LocationChanged, PackRequested
from libs.database import create_engine, upgrade_schema
from services.allocation.entrypoints.http import ACCESS as ALLOCATION_ACCESS
from services.allocation.entrypoints.http import build_router as allocation_router
from services.allocation.service_layer import allocating
from services.allocation.service_layer.availability import publish_dirty
from services.allocation.service_layer.presales import review_late_presales
from services.inventory.entrypoints.http import ACCESS as INVENTORY_ACCESS
from services.inventory.entrypoints.http import build_router as inventory_router
from services.inventory.service_layer.locations import save_location

pytestmark = pytest.mark.integration

INVENTORY_VERSIONS = Path(__file__).parents[2] / "services" / "inventory" / "adapters" / "migrations" / "versions"
TODAY = datetime.now(UTC).date()
SOON = TODAY + timedelta(days=3)


class World:
    """Inventory and allocation on one database, inventory's events carried to allocation."""

    def __init__(self, inventory: httpx.AsyncClient, inventory_engine: Any, allocation: httpx.AsyncClient,
                 allocation_engine: Any) -> None:
        self.inventory, self.inventory_engine = inventory, inventory_engine
        self.allocation, self.allocation_engine = allocation, allocation_engine
        self.sku = f"SKU-{uuid.uuid4().hex[:8]}"
        self.carried = (0, 0)  # the last inventory event carried to allocation (outbox id, position)

    async def feed(self, *messages: EventMessage) -> None:
        async with self.allocation_engine.begin() as conn:
            await allocating.apply_events(conn, list(messages))

    async def carry(self, *, one_by_one: bool = False) -> list[str]:
        """Deliver inventory's new events of our SKU to allocation in one batch (as its consumer
        would), or each in a batch of its own."""
        async with self.inventory_engine.begin() as conn:
            rows = (await conn.execute(text(
                "SELECT id, position, value FROM outbox_messages WHERE topic = 'oms.inventory.v1' AND key = :k"
                " AND (id, position) > (:i, :p) ORDER BY id, position"), {"k": self.sku, "i": self.carried[0],
                                                                      "p": self.carried[1]})).all()
        if rows:
            self.carried = (rows[-1].id, rows[-1].position)
        messages = [EventMessage(*decode_event(bytes(r.value))) for r in rows]
        for batch in ([m] for m in messages) if one_by_one else [messages]:
            await self.feed(*batch)
        return [m.envelope.event_type for m in messages]

    async def purchase_order(self, qty: int, expected: Any = SOON) -> str:
        r = await self.inventory.post("/v1/purchase-orders", json={
            "sku": self.sku, "location_id": "WH1", "qty": qty, "expected_date": expected.isoformat(),
            "supplier_reference": "SUP-1"})
        assert r.status_code == 201, r.text
        return str(r.json()["purchase_order_id"])

    async def cap(self, channel: str, cap: int) -> None:
        r = await self.allocation.put("/v1/policy", json={"channel": channel, "presell": [{"sku": self.sku, "cap": cap}]})
        assert r.status_code == 200, r.text

    async def presales(self) -> list[tuple[str, int]]:
        async with self.allocation_engine.connect() as conn:
            rows = await conn.execute(text("SELECT order_id, qty FROM presales WHERE sku = :s ORDER BY order_id"),
                                      {"s": self.sku})
            return [(r.order_id, r.qty) for r in rows]

    async def line(self, order_id: str) -> tuple[int, int, str | None]:
        ln = (await line_state(self.allocation_engine, order_id))["1"]
        assert ln["allocated"] + ln["backordered"] + ln["packed"] + ln["shipped"] + ln["cancelled"] == ln["qty"]
        return ln["allocated"], ln["backordered"], ln["backorder_reason"]

    async def results(self, order_id: str) -> list[dict[str, Any]]:
        async with self.allocation_engine.connect() as conn:
            rows = (await conn.execute(text(
                "SELECT value FROM outbox_messages WHERE topic = 'oms.allocations.v1' AND key = :k ORDER BY id, position"),
                {"k": order_id})).all()
        return [dict(orjson.loads(r.value)) for r in rows]

    async def last_result(self, order_id: str) -> dict[str, Any]:
        async with self.allocation_engine.connect() as conn:
            row = (await conn.execute(text(
                "SELECT value FROM outbox_messages WHERE topic = 'oms.allocations.v1' AND key = :k ORDER BY id DESC, position DESC LIMIT 1"),
                {"k": order_id})).one()
        return dict(orjson.loads(row.value))

    def order(self, order_id: str, qty: int, minutes: int, **kw: Any) -> EventMessage:
        return order(order_id, [("1", self.sku, qty)], minutes=minutes, **kw)


@pytest.fixture
async def world(database_url: str):  # type: ignore[no-untyped-def]
    inventory_engine = create_engine(database_url, schema="inventory_presell_it")
    await upgrade_schema(inventory_engine, schema="inventory_presell_it", versions_dir=INVENTORY_VERSIONS)
    async with inventory_engine.begin() as conn:
        await save_location(conn, LocationChanged(location_id="WH1", name="Main", country="DE"))
    allocation_engine = await fresh_engine(database_url)
    inv_app = guarded_app("inventory", INVENTORY_ACCESS, [inventory_router(http_runtime(inventory_engine))])  # type: ignore[arg-type]
    alloc_app = guarded_app("allocation", ALLOCATION_ACCESS, [allocation_router(http_runtime(allocation_engine))])  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=inv_app), base_url="http://inventory",
                                 headers=ADMIN) as inv, \
            httpx.AsyncClient(transport=httpx.ASGITransport(app=alloc_app), base_url="http://allocation",
                              headers=ADMIN) as alloc:
        w = World(inv, inventory_engine, alloc, allocation_engine)
        # 2 units on the shelf at WH1, booked in inventory and heard by allocation.
        r = await inv.post("/v1/receipts", json={"location_id": "WH1", "reference": f"GRN-0-{w.sku}",
                                                 "lines": [{"sku": w.sku, "bin": "A1", "qty": 2}]})
        assert r.status_code == 201, r.text
        await w.feed(location("WH1"))
        await w.carry()
        yield w
    await allocation_engine.dispose()
    await inventory_engine.dispose()


async def test_lines_beyond_the_shelf_are_pre_sold_in_queue_order_up_to_the_inbound_quantity(world):
    w = world
    await w.cap("web", 100)
    po = await w.purchase_order(6)
    assert await w.carry() == ["PurchaseOrderChanged"]
    await w.feed(w.order("o1", 3, 1), w.order("o2", 4, 2), w.order("o3", 5, 3), w.order("o4", 2, 4))
    # shelf 2 -> o1; inbound 6 -> o1 1, o2 4, o3 1; o4 nothing (the purchase order is all promised)
    assert await w.presales() == [("o1", 1), ("o2", 4), ("o3", 1)]
    allocated, backordered, reason = await w.line("o2")
    assert (allocated, backordered) == (0, 4)
    assert reason == (f"pre-sold: 4 against purchase order {po} at WH1, promised {SOON.isoformat()}"
                      " (waits in the backorder queue; cannot be packed until the receipt is booked)")
    assert (await w.line("o1"))[:2] == (2, 1)
    assert not (await w.line("o4"))[2].startswith("pre-sold")
    result = await w.last_result("o2")
    assert (result["event_type"], result["data"]["change"]) == ("OrderBackordered", "pre-sold")
    assert [(ln["backordered"], ln["presold"], ln["promised_date"]) for ln in result["data"]["lines"]] == [
        (4, 4, SOON.isoformat())]
    # A pre-sold line cannot be packed: nothing of it is allocated.
    await w.feed(env(PackRequested(order_id="o2", shipment_id="s-o2")))
    rejected, restated = (await w.results("o2"))[-2:]
    assert (rejected["event_type"], rejected["data"]["detail"]) == ("PackRejected", "nothing allocated to pack")
    # ... and the snapshot is published again with its pre-sale (the book's results do not carry it).
    assert (restated["event_type"], restated["data"]["version"]) == ("OrderBackordered",
                                                                     rejected["data"]["version"] + 1)
    assert restated["data"]["lines"][0]["presold"] == 4
    # The order view shows the promise.
    view = (await w.allocation.get("/v1/allocations/o3")).json()
    assert [(p["purchase_order_id"], p["qty"], p["promised_date"]) for p in view["presales"]] == [
        (po, 1, SOON.isoformat())]


async def test_a_short_receipt_allocates_pre_sold_lines_in_queue_order_and_backorders_the_rest_saying_so(world):
    w = world
    await w.cap("web", 100)
    po = await w.purchase_order(6)
    await w.carry()
    await w.feed(w.order("o1", 3, 1), w.order("o2", 4, 2), w.order("o3", 5, 3))
    assert await w.presales() == [("o1", 1), ("o2", 4), ("o3", 1)]

    r = await w.inventory.post(f"/v1/purchase-orders/{po}/receipts", json={
        "reference": f"GRN-1-{w.sku}", "bin": "B1", "qty": 4})
    assert r.status_code == 201, r.text
    assert await w.carry() == ["StockAdjusted", "PurchaseOrderChanged"]
    # 4 arrive: o1 takes 1, o2 takes 3 (queue order); o2's last unit and o3 wait, and say why.
    assert (await w.line("o1"))[:2] == (3, 0)
    o2 = await w.line("o2")
    o3 = await w.line("o3")
    assert (o2[:2], o3[:2]) == ((3, 1), (0, 5))
    short = (f"no longer pre-sold: purchase order {po} received (short: 4 of 6), not enough for this line in"
             " queue order: waiting in the backorder queue")
    assert (o2[2], o3[2]) == (short, short)
    assert await w.presales() == []
    result = await w.last_result("o3")
    assert (result["data"]["change"], result["data"]["lines"][0]["presold"]) == ("pre-sale ended", 0)
    # Shelf stock never oversold: 6 on hand, 6 reserved.
    async with w.allocation_engine.connect() as conn:
        on_hand, reserved = (await conn.execute(text(
            "SELECT sum(on_hand), sum(reserved) FROM positions WHERE sku = :s"), {"s": w.sku})).one()
    assert (on_hand, reserved) == (6, 6)


async def test_a_cancelled_purchase_order_returns_its_pre_sold_lines_to_the_backorder_queue(world):
    w = world
    await w.cap("web", 100)
    po = await w.purchase_order(5)
    await w.carry()
    await w.feed(w.order("o1", 2, 1), w.order("o2", 3, 2))
    assert await w.presales() == [("o2", 3)]
    r = await w.inventory.post(f"/v1/purchase-orders/{po}/cancel")
    assert r.status_code == 200, r.text
    await w.carry()
    assert await w.presales() == []
    assert await w.line("o2") == (0, 3, f"no longer pre-sold: purchase order {po} cancelled: waiting in the"
                                        " backorder queue")
    # The receipt cannot be booked against it any more; allocation hears nothing.
    r = await w.inventory.post(f"/v1/purchase-orders/{po}/receipts", json={"reference": "GRN-late", "bin": "B1",
                                                                            "qty": 5})
    assert (r.status_code, r.json()["detail"][0]["field"]) == (422, "purchase_order_id")
    assert await w.carry() == []


async def test_the_cap_bounds_promises_per_channel_and_a_channel_without_one_does_not_pre_sell(world):
    w = world
    await w.cap("web", 3)
    await w.purchase_order(10)
    await w.carry()
    await w.feed(w.order("o1", 2, 1), w.order("s1", 2, 2, channel="shop"), w.order("o2", 4, 3),
                 w.order("o3", 1, 4))
    # shelf 2 -> o1; shop (no cap) is not promised but keeps its 2 of the receipt; o2 gets 3 (cap);
    # o3 none (cap reached), though 3 inbound units are still free.
    assert await w.presales() == [("o2", 3)]
    assert not (await w.line("s1"))[2].startswith("pre-sold")
    # Raising the cap promises the rest in queue order at once.
    await w.cap("web", 10)
    assert await w.presales() == [("o2", 4), ("o3", 1)]


async def test_a_late_purchase_order_promises_nothing_and_its_lines_say_so(world):
    w = world
    await w.cap("web", 100)
    po = await w.purchase_order(5, expected=TODAY)
    await w.carry()
    await w.feed(w.order("o1", 2, 1), w.order("o2", 3, 2))
    assert await w.presales() == [("o2", 3)]
    async with w.allocation_engine.begin() as conn:  # the expiry sweep, a day later
        await review_late_presales(conn, TODAY + timedelta(days=1))
    assert await w.presales() == []
    assert (await w.line("o2"))[2] == (f"no longer pre-sold: purchase order {po} late (expected"
                                       f" {TODAY.isoformat()}): waiting in the backorder queue")


async def test_shelf_stock_freed_for_a_pre_sold_line_moves_its_promise_to_the_next_line(world):
    w = world
    await w.cap("web", 100)
    await w.purchase_order(3)
    await w.carry()
    await w.feed(w.order("o1", 2, 1), w.order("o2", 3, 2), w.order("o3", 3, 3))
    assert await w.presales() == [("o2", 3)]
    await w.feed(stock(w.sku, 3, 3, 1, bin="Z9"))  # 3 more on the shelf (another bin)
    assert (await w.line("o2"))[:2] == (3, 0)
    assert await w.presales() == [("o3", 3)]


async def test_the_availability_feed_shows_on_hand_and_inbound_apart_per_channel(world):
    w = world
    await w.cap("web", 6)
    await w.cap("shop", 0)
    await w.purchase_order(10)
    await w.carry()
    await w.feed(w.order("o1", 1, 1), w.order("o2", 4, 2))  # shelf 2: o1 1, o2 1; o2 pre-sold 3
    async with w.allocation_engine.begin() as conn:
        await publish_dirty(conn)
    async with w.allocation_engine.connect() as conn:
        row = (await conn.execute(text(
            "SELECT value FROM outbox_messages WHERE topic = 'oms.availability.v1' AND key = :k ORDER BY id DESC, position DESC LIMIT 1"),
            {"k": w.sku})).one()
    data = orjson.loads(row.value)["data"]
    assert (data["total"], data["channels"]["web"]) == (0, 0)  # the shelf is all allocated
    assert data["inbound_total"] == 7  # 10 expected, 3 promised to o2
    assert data["inbound_locations"] == [{"location_id": "WH1", "available": 7, "expected_date": SOON.isoformat()}]
    assert data["inbound_channels"] == {"shop": 0, "web": 3}  # web: cap 6 less its 3 promised; shop does not pre-sell


async def test_a_smaller_purchase_order_shrinks_the_newest_promises_and_a_later_date_moves_them(world):
    w = world
    await w.cap("web", 100)
    po = await w.purchase_order(6)
    await w.carry()
    await w.feed(w.order("o1", 2, 1), w.order("o2", 4, 2), w.order("o3", 2, 3))
    assert await w.presales() == [("o2", 4), ("o3", 2)]
    later = SOON + timedelta(days=7)
    r = await w.inventory.patch(f"/v1/purchase-orders/{po}", json={"qty": 5, "expected_date": later.isoformat()})
    assert r.status_code == 200, r.text
    await w.carry()
    assert await w.presales() == [("o2", 4), ("o3", 1)]
    assert (await w.line("o3"))[2] == (f"pre-sold: 1 against purchase order {po} at WH1, promised {later.isoformat()}"
                                       " (waits in the backorder queue; cannot be packed until the receipt is booked)")
    result = await w.last_result("o2")
    assert result["data"]["lines"][0]["promised_date"] == later.isoformat()


async def test_a_bad_presell_cap_is_refused_naming_the_field_and_nothing_changes(world):
    w = world
    r = await w.allocation.put("/v1/policy", json={"channel": "web", "presell": [{"sku": w.sku, "cap": -2}]})
    assert r.status_code == 422
    assert {d["field"] for d in r.json()["detail"]} == {"presell.0.cap"}
    assert (await w.allocation.get("/v1/policy", params={"channel": "web"})).json()["presell"] == []


async def test_a_receipt_and_its_received_change_in_separate_batches_promise_nothing_twice(world):
    w = world
    await w.cap("web", 100)
    po = await w.purchase_order(6)
    await w.carry()
    await w.feed(w.order("o1", 3, 1), w.order("o2", 4, 2), w.order("o3", 5, 3))
    r = await w.inventory.post(f"/v1/purchase-orders/{po}/receipts", json={
        "reference": f"GRN-1-{w.sku}", "bin": "B1", "qty": 4})
    assert r.status_code == 201, r.text
    async with w.inventory_engine.connect() as conn:
        receipt = (await conn.execute(text(
            "SELECT value FROM outbox_messages WHERE topic = 'oms.inventory.v1' AND key = :k"
            " AND (id, position) > (:i, :p) ORDER BY id, position LIMIT 1"),  # the first not carried yet
            {"k": w.sku, "i": w.carried[0], "p": w.carried[1]})).one()
    _, stock_event = decode_event(bytes(receipt.value))
    assert stock_event.purchase_order_id == po  # type: ignore[attr-defined]
    assert await w.carry(one_by_one=True) == ["StockAdjusted", "PurchaseOrderChanged"]
    assert await w.presales() == []
    assert [(await w.line(o))[:2] for o in ("o1", "o2", "o3")] == [(3, 0), (3, 1), (0, 5)]
    # No snapshot ever promised the arrived units again.
    promised_after_receipt = [r for r in await w.results("o3") if r["data"]["lines"][0].get("presold")]
    assert [r["data"]["lines"][0]["presold"] for r in promised_after_receipt] == [1]
    assert (await w.line("o3"))[2].startswith(f"no longer pre-sold: purchase order {po} received (short: 4 of 6)")
