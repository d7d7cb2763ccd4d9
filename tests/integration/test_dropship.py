"""Dropship locations through the four services' real HTTP routes and use cases on a real
PostgreSQL, joined by the events each writes to its outbox (as the broker would carry them):
a supplier's stated stock reaches allocation, a line no own location can fill goes to the
supplier, fulfillment sends it a dropship request with the ship-to address, and the supplier's
confirmation ships the lines (order view shows shipped, the stated stock falls) or its refusal
releases them to be allocated again. Bad input is refused naming the field, nothing changed."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from allocation_support import fresh_engine
from http_support import runtime as http_runtime
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from staff_auth import OPERATOR, guarded_app

from libs.contracts import decode_event, new_envelope
from libs.contracts.events import (
    AllocationLine,
    DropshipRequested,
    LineState,
    OrderAllocated,
    PackRejected,
    PackRequested,
)
from libs.database import create_engine, upgrade_schema
from libs.messaging.consumer import EventMessage
from libs.service_host.auth import ChannelKeys
from services.allocation.entrypoints.http import ACCESS as ALLOCATION_ACCESS
from services.allocation.entrypoints.http import build_router as allocation_router
from services.allocation.service_layer import allocating
from services.fulfillment.adapters.intake_ship_to import IntakeShipTo
from services.fulfillment.entrypoints import dropship_http
from services.fulfillment.entrypoints import http as fulfillment_http
from services.fulfillment.service_layer.mirroring import apply_allocation_results
from services.inventory.adapters.allocation_api import AllocationReservations
from services.inventory.entrypoints import http as inventory_http
from services.inventory.entrypoints import supplier_http
from services.inventory.service_layer.events import apply_fulfillment_events
from services.order_intake.entrypoints.http import ACCESS as INTAKE_ACCESS
from services.order_intake.entrypoints.http import build_router as intake_router
from services.order_intake.service_layer.tracking import apply_downstream_events

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2] / "services"
# Schemas of their own: the e2e system runs on the same database afterwards, and its services
# would relay what these tests left in the real schemas' outboxes to the shared broker.
ORDER_INTAKE, INVENTORY, FULFILLMENT = "order_intake_dropship_it", "inventory_dropship_it", "fulfillment_dropship_it"
ADMIN = {"Authorization": "Bearer dev-admin-token"}


class Outbox:
    """Reads what a service wrote to its outbox since the last read (the relay's view)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.seen = 0

    async def start(self) -> Outbox:
        async with self.engine.connect() as conn:
            self.seen = (await conn.execute(text("SELECT coalesce(max(id), 0) FROM outbox_messages"))).scalar() or 0
        return self

    async def take(self, topic: str | None = None) -> list[tuple[str, str, EventMessage]]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT id, topic, key, value FROM outbox_messages WHERE id > :s ORDER BY id, position"),
                                       {"s": self.seen})).all()
        if rows:
            self.seen = rows[-1].id
        return [(r.topic, r.key, decode_event(r.value.encode() if isinstance(r.value, str) else bytes(r.value)))
                for r in rows if topic is None or r.topic == topic]


@dataclass
class World:
    run: str
    intake_db: AsyncEngine
    inventory_db: AsyncEngine
    allocation_db: AsyncEngine
    fulfillment_db: AsyncEngine
    intake: httpx.AsyncClient
    inventory: httpx.AsyncClient
    fulfillment: httpx.AsyncClient
    allocation: httpx.AsyncClient
    ship_to: IntakeShipTo
    outboxes: dict[str, Outbox]
    history: list[tuple[str, str, EventMessage]] = field(default_factory=list)

    async def flow(self) -> list[tuple[str, str, EventMessage]]:
        """Carry every pending event to its consumers until nothing new is written; returns
        everything that was carried (topic, key, message)."""
        carried = []
        while True:
            moved = False
            for source in ("order_intake", "inventory", "allocation", "fulfillment"):
                for topic, key, m in await self.outboxes[source].take():
                    moved = True
                    carried.append((topic, key, m))
                    self.history.append((topic, key, m))
                    await self.deliver(topic, m)
            if not moved:
                return carried

    async def deliver(self, topic: str, m: EventMessage) -> None:
        if topic in ("oms.orders.v1", "oms.inventory.v1"):
            async with self.allocation_db.begin() as conn:
                await allocating.apply_events(conn, [m])
        elif topic == "oms.allocations.v1":
            async with self.fulfillment_db.begin() as conn:
                await apply_allocation_results(conn, [m], ship_to=self.ship_to)
            async with self.intake_db.begin() as conn:
                await apply_downstream_events(conn, [m])
        elif topic == "oms.fulfillment.v1":
            async with self.allocation_db.begin() as conn:
                await allocating.apply_events(conn, [m])
            async with self.inventory_db.begin() as conn:
                await apply_fulfillment_events(conn, [m])
            async with self.intake_db.begin() as conn:
                await apply_downstream_events(conn, [m])


async def _engine(url: str, schema: str, service: str) -> AsyncEngine:
    engine = create_engine(url, schema=schema, pool_size=2)
    await upgrade_schema(engine, schema=schema, versions_dir=ROOT / service / "adapters/migrations/versions")
    return engine


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    run = uuid.uuid4().hex[:8]
    keys = f"web-{run}:key-{run}-0123456789"
    intake_db = await _engine(database_url, ORDER_INTAKE, "order_intake")
    inventory_db = await _engine(database_url, INVENTORY, "inventory")
    fulfillment_db = await _engine(database_url, FULFILLMENT, "fulfillment")
    allocation_db = await fresh_engine(database_url)
    intake_rt = http_runtime(intake_db)
    intake_app = guarded_app("order_intake", INTAKE_ACCESS, [intake_router(intake_rt, ChannelKeys(keys))],
                             runtime=intake_rt, channel_keys=keys)
    allocation_app = guarded_app("allocation", ALLOCATION_ACCESS, [allocation_router(http_runtime(allocation_db))])  # type: ignore[arg-type]
    reservations = AllocationReservations("http://allocation", transport=httpx.ASGITransport(app=allocation_app))
    inventory_rt = http_runtime(inventory_db)
    inventory_app = guarded_app(
        "inventory", {**inventory_http.ACCESS, **supplier_http.ACCESS},
        [inventory_http.build_router(inventory_rt, reservations), supplier_http.build_router(inventory_rt, reservations)])
    fulfillment_rt = http_runtime(fulfillment_db)
    fulfillment_app = guarded_app("fulfillment", {**fulfillment_http.ACCESS, **dropship_http.ACCESS},
                                  [fulfillment_http.build_router(fulfillment_rt), dropship_http.build_router(fulfillment_rt)])
    ship_to = IntakeShipTo("http://intake", "dev-viewer-token", transport=httpx.ASGITransport(app=intake_app))
    outboxes = {name: await Outbox(db).start() for name, db in (
        ("order_intake", intake_db), ("inventory", inventory_db), ("allocation", allocation_db),
        ("fulfillment", fulfillment_db))}

    def client(app: Any, headers: dict[str, str]) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc", headers=headers)

    async with client(intake_app, {**ADMIN, "X-API-Key": f"key-{run}-0123456789"}) as intake, \
            client(inventory_app, ADMIN) as inventory, client(fulfillment_app, OPERATOR) as fulfillment, \
            client(allocation_app, ADMIN) as allocation:
        yield World(run, intake_db, inventory_db, allocation_db, fulfillment_db, intake, inventory, fulfillment,
                    allocation, ship_to, outboxes)
    for db in (intake_db, inventory_db, allocation_db, fulfillment_db):
        await db.dispose()


async def _setup(w: World, *, own: int, stated: int) -> tuple[str, str, str]:
    """A warehouse with ``own`` units of a SKU and a dropship supplier stating ``stated``."""
    sku, wh, sup = f"DS-{w.run}", f"WH-{w.run}", f"SUP-{w.run}"
    r = await w.inventory.post("/v1/locations", json={"location_id": wh, "name": "own", "country": "DE", "priority": 9})
    assert r.status_code == 201, r.text
    r = await w.inventory.post("/v1/locations", json={"location_id": sup, "name": "supplier", "country": "DE",
                                                      "kind": "dropship"})
    assert r.status_code == 201, r.text
    assert r.json()["kind"] == "dropship"
    if own:
        r = await w.inventory.post("/v1/receipts", json={"location_id": wh, "reference": f"GRN-{w.run}",
                                                         "lines": [{"sku": sku, "bin": "A-1", "qty": own}]})
        assert r.status_code == 201, r.text
    r = await w.inventory.put(f"/v1/locations/{sup}/supplier-stock", json={"lines": [{"sku": sku, "qty": stated}]})
    assert r.status_code == 200, r.text
    assert r.json()["lines"] == [{"sku": sku, "on_hand": stated, "requested": 0, "changed": True}]
    await w.flow()
    return sku, wh, sup


async def _order(w: World, sku: str, qty: int) -> str:
    r = await w.intake.post("/v1/orders", json={
        "channel": f"web-{w.run}", "external_id": uuid.uuid4().hex, "placed_at": "2026-11-23T10:00:00Z",
        "currency": "EUR", "ship_to": {"country": "DE", "postal_code": "10115", "city": "Berlin"},
        "lines": [{"line_id": "1", "sku": sku, "qty": qty, "unit_price": "9.00"}]})
    assert r.status_code == 201, r.text
    return str(r.json()["order_id"])


async def _line(w: World, order_id: str) -> dict[str, Any]:
    r = await w.intake.get(f"/v1/orders/{order_id}")
    [line] = r.json()["lines"]
    return dict(line)


async def _on_hand(w: World, sku: str, location_id: str) -> int:
    async with w.inventory_db.connect() as conn:
        return int((await conn.execute(text("SELECT coalesce(sum(on_hand), 0) FROM positions"
                                            " WHERE sku = :s AND location_id = :l"), {"s": sku, "l": location_id}))
                   .scalar() or 0)


async def _ledger_rows(w: World, sku: str) -> int:
    async with w.inventory_db.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM ledger WHERE sku = :s"), {"s": sku})).scalar() or 0)


async def _requested(w: World, order_id: str, location_id: str) -> DropshipRequested:
    carried = await w.flow()
    [request] = [m.event for topic, key, m in carried if topic == "oms.dropship.v1" and key == location_id
                 and isinstance(m.event, DropshipRequested) and m.event.order_id == order_id]
    assert isinstance(request, DropshipRequested)
    return request


async def test_a_line_own_stock_cannot_fill_is_requested_from_the_supplier_and_its_confirmation_ships_it(
    world: World,
) -> None:
    w = world
    sku, wh, sup = await _setup(w, own=2, stated=5)
    order_id = await _order(w, sku, 4)
    request = await _requested(w, order_id, sup)

    # Two units from our warehouse, the two it cannot give from the supplier, asked to ship them.
    assert [(ln.line_id, ln.sku, ln.qty) for ln in request.lines] == [("1", sku, 2)]
    assert request.ship_to is not None and (request.ship_to.country, request.ship_to.city) == ("DE", "Berlin")
    assert request.reference == request.request_id
    # Nobody picks what the supplier ships: our warehouse's pick list has our two units only.
    picklists = (await w.fulfillment.get("/v1/picklists")).json()
    mine = {pl["location_id"]: pl["total_qty"] for pl in picklists if pl["location_id"] in (wh, sup)}
    assert mine == {wh: 2}
    view = (await w.fulfillment.get(f"/v1/dropship-requests/{request.request_id}")).json()
    assert (view["status"], view["location_id"], view["lines"][0]["qty"]) == ("requested", sup, 2)
    line = await _line(w, order_id)
    assert (line["allocated"], line["packed"], line["backordered"]) == (2, 2, 0)

    # The supplier cannot state less than is requested from it: refused naming the field, nothing booked.
    rows = await _ledger_rows(w, sku)
    r = await w.inventory.put(f"/v1/locations/{sup}/supplier-stock", json={"lines": [{"sku": sku, "qty": 1}]})
    assert r.status_code == 422, r.text
    assert [d["field"] for d in r.json()["detail"]] == ["lines.0.qty"]
    assert (await _ledger_rows(w, sku), await _on_hand(w, sku, sup)) == (rows, 5)

    r = await w.fulfillment.post(f"/v1/dropship-requests/{request.request_id}/confirm",
                                 json={"carrier": "DHL", "tracking_number": f"JD{w.run}"})
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["carrier"]) == ("confirmed", "DHL")
    await w.flow()

    line = await _line(w, order_id)
    assert (line["allocated"], line["packed"], line["shipped"], line["backordered"]) == (2, 0, 2, 0)
    assert await _on_hand(w, sku, sup) == 3  # the supplier's stated stock fell by what it shipped
    assert await _on_hand(w, sku, wh) == 2

    # An answer to an answered request: refused naming the request, nothing changes.
    r = await w.fulfillment.post(f"/v1/dropship-requests/{request.request_id}/refuse", json={"reason": "late"})
    assert r.status_code == 409, r.text
    assert [d["field"] for d in r.json()["detail"]] == ["request_id"]
    assert await w.flow() == []


async def test_a_refusal_lowers_the_stated_stock_and_the_line_is_allocated_again(world: World) -> None:
    w = world
    sku, wh, sup = await _setup(w, own=0, stated=3)
    order_id = await _order(w, sku, 2)
    request = await _requested(w, order_id, sup)
    assert [(ln.sku, ln.qty) for ln in request.lines] == [(sku, 2)]

    # Own stock arrives meanwhile; the supplier then refuses.
    r = await w.inventory.post("/v1/receipts", json={"location_id": wh, "reference": f"GRN2-{w.run}",
                                                     "lines": [{"sku": sku, "bin": "A-1", "qty": 5}]})
    assert r.status_code == 201, r.text
    await w.flow()
    r = await w.fulfillment.post(f"/v1/dropship-requests/{request.request_id}/refuse",
                                 json={"reason": "out of stock"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "refused"
    await w.flow()

    line = await _line(w, order_id)
    assert (line["allocated"], line["packed"], line["shipped"], line["backordered"]) == (2, 0, 0, 0)
    async with w.allocation_db.connect() as conn:
        live = (await conn.execute(text(
            "SELECT location_id, sum(qty) AS q FROM allocations WHERE order_id = :o AND status IN ('allocated', 'packed')"
            " GROUP BY location_id"), {"o": order_id})).all()
    assert [(r.location_id, r.q) for r in live] == [(wh, 2)]
    assert await _on_hand(w, sku, sup) == 1  # 3 stated, 2 refused
    # The refused request cannot be confirmed afterwards.
    r = await w.fulfillment.post(f"/v1/dropship-requests/{request.request_id}/confirm",
                                 json={"carrier": "DHL", "tracking_number": "X"})
    assert r.status_code == 409
    assert [d["field"] for d in r.json()["detail"]] == ["request_id"]

    # Every event of the story delivered again (invariant 5): no state changes, nothing new published.
    for topic, _, m in list(w.history):
        await w.deliver(topic, m)
    assert await w.flow() == []
    assert await _line(w, order_id) == line
    assert (await _on_hand(w, sku, sup), await _on_hand(w, sku, wh)) == (1, 5)
    view = (await w.fulfillment.get(f"/v1/dropship-requests/{request.request_id}")).json()
    assert view["status"] == "refused"


async def test_bad_supplier_stock_updates_and_answers_are_refused_naming_the_field(world: World) -> None:
    w = world
    sku, wh, sup = await _setup(w, own=1, stated=1)
    rows = await _ledger_rows(w, sku)
    r = await w.inventory.put(f"/v1/locations/NOPE-{w.run}/supplier-stock", json={"lines": [{"sku": sku, "qty": 1}]})
    assert r.status_code == 404
    assert [d["field"] for d in r.json()["detail"]] == ["location_id"]
    r = await w.inventory.put(f"/v1/locations/{wh}/supplier-stock", json={"lines": [{"sku": sku, "qty": 1}]})
    assert r.status_code == 422
    assert [d["field"] for d in r.json()["detail"]] == ["location_id"]
    r = await w.inventory.put(f"/v1/locations/{sup}/supplier-stock", json={"lines": [{"sku": sku, "qty": -1}]})
    assert r.status_code == 422
    assert [d["field"] for d in r.json()["detail"]] == ["lines.0.qty"]
    r = await w.inventory.put(f"/v1/locations/{sup}/supplier-stock",
                              json={"lines": [{"sku": sku, "qty": 2}, {"sku": sku, "qty": 3}]})
    assert r.status_code == 422
    assert [d["field"] for d in r.json()["detail"]] == ["lines.1.sku"]
    assert await _ledger_rows(w, sku) == rows
    r = await w.fulfillment.post(f"/v1/dropship-requests/dsr_nope{w.run}/confirm",
                                 json={"carrier": "DHL", "tracking_number": "X"})
    assert r.status_code == 404
    assert [d["field"] for d in r.json()["detail"]] == ["request_id"]
    r = await w.fulfillment.post(f"/v1/dropship-requests/dsr_nope{w.run}/confirm", json={"carrier": ""})
    assert r.status_code == 422
    assert {d["field"] for d in r.json()["detail"]} == {"carrier", "tracking_number"}
    assert await w.flow() == []


async def test_the_policy_decides_whether_lines_may_go_to_a_supplier(world: World) -> None:
    w = world
    r = await w.allocation.put("/v1/policy", json={"dropship_mode": "sometimes", "dropship_skus": "all"})
    assert r.status_code == 422
    assert {d["field"] for d in r.json()["detail"]} == {"dropship_mode", "dropship_skus"}
    r = await w.allocation.put("/v1/policy", json={"dropship_mode": "never"})
    assert r.status_code == 200, r.text
    assert r.json()["dropship_mode"] == "never"
    sku, wh, sup = await _setup(w, own=1, stated=5)
    order_id = await _order(w, sku, 3)
    carried = await w.flow()
    assert not [m for topic, _, m in carried if topic == "oms.dropship.v1"]
    line = await _line(w, order_id)
    assert (line["allocated"], line["backordered"]) == (1, 2)

    # Always for this SKU: the supplier first, even with own stock.
    r = await w.allocation.put("/v1/policy", json={"dropship_mode": "always", "dropship_skus": [sku]})
    assert r.status_code == 200, r.text
    second = await _order(w, sku, 2)
    request = await _requested(w, second, sup)
    assert [(ln.sku, ln.qty) for ln in request.lines] == [(sku, 2)]


def _snapshot(cls: Any, order_id: str, version: int, sup: str, *, status: str = "allocated",
              shipment_id: str | None = None, detail: str | None = None) -> EventMessage:
    allocations = [
        AllocationLine(allocation_id=1, line_id="1", sku="S", location_id="WH", bin="A-1", lot="", qty=1,
                       status="allocated"),
        AllocationLine(allocation_id=2, line_id="1", sku="S", location_id=sup, bin="SUPPLIER", lot="", qty=2,
                       status=status, shipment_id=shipment_id, dropship=True),  # type: ignore[arg-type]
    ]
    line = LineState(line_id="1", sku="S", qty=3, allocated=3 if status == "allocated" else 1,
                     packed=2 if status == "packed" else 0)
    event = cls(order_id=order_id, version=version, change="test", detail=detail, shipment_id=shipment_id,
                lines=[line], allocations=allocations)
    return EventMessage(new_envelope(event, source="allocation", correlation_id=order_id), event)


async def test_fulfillment_asks_allocation_once_and_a_rejected_request_is_asked_again(world: World) -> None:
    w = world
    order_id, sup = f"ord_{w.run}", f"SUP-{w.run}"
    box = w.outboxes["fulfillment"]
    async with w.fulfillment_db.begin() as conn:
        await apply_allocation_results(conn, [_snapshot(OrderAllocated, order_id, 1, sup)])
    # Not on a pick list while it waits to be locked for the supplier; our warehouse's unit is.
    picklists = (await w.fulfillment.get("/v1/picklists")).json()
    assert {pl["location_id"] for pl in picklists} >= {"WH"}
    assert sup not in {pl["location_id"] for pl in picklists}
    [(topic, key, m)] = await box.take()
    assert (topic, key) == ("oms.fulfillment.v1", order_id)
    asked = m.event
    assert isinstance(asked, PackRequested)
    assert (asked.location_id, asked.line_ids) == (sup, ["1"])
    # The same snapshot again, or an older one: no second request while the first waits.
    async with w.fulfillment_db.begin() as conn:
        await apply_allocation_results(conn, [_snapshot(OrderAllocated, order_id, 1, sup)])
    assert await box.take() == []
    # Allocation had nothing to lock: the request is rejected; the next snapshot asks again.
    async with w.fulfillment_db.begin() as conn:
        await apply_allocation_results(conn, [_snapshot(PackRejected, order_id, 2, sup, shipment_id=asked.shipment_id,
                                                        detail="nothing allocated at dropship location")])
    view = (await w.fulfillment.get(f"/v1/dropship-requests/{asked.shipment_id}")).json()
    assert view["status"] == "rejected"
    assert await box.take() == []
    async with w.fulfillment_db.begin() as conn:
        await apply_allocation_results(conn, [_snapshot(OrderAllocated, order_id, 3, sup)])
    [(_, _, m2)] = await box.take()
    assert isinstance(m2.event, PackRequested) and m2.event.shipment_id != asked.shipment_id


async def test_a_dropship_location_takes_no_receipts_adjustments_or_transfers(world: World) -> None:
    w = world
    sku, wh, sup = await _setup(w, own=3, stated=2)
    rows = await _ledger_rows(w, sku)
    r = await w.inventory.post("/v1/receipts", json={"location_id": sup, "reference": f"X-{w.run}",
                                                     "lines": [{"sku": sku, "bin": "A-1", "qty": 5}]})
    assert r.status_code == 422 and [d["field"] for d in r.json()["detail"]] == ["lines.0"]
    r = await w.inventory.post("/v1/adjustments", json={"sku": sku, "location_id": sup, "bin": "SUPPLIER",
                                                        "delta": 1, "reason_code": "found"})
    assert r.status_code == 422 and [d["field"] for d in r.json()["detail"]] == ["delta"]
    r = await w.inventory.post("/v1/transfers", json={"sku": sku, "from_location_id": wh, "from_bin": "A-1",
                                                      "to_location_id": sup, "to_bin": "A-1", "qty": 1})
    assert r.status_code == 422, r.text
    assert (await _ledger_rows(w, sku), await _on_hand(w, sku, sup), await _on_hand(w, sku, wh)) == (rows, 2, 3)
