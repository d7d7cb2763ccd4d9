"""A hold staff place by hand on an order allocation already knows (issue 11 part 1), on real
PostgreSQL: intake publishes OrderHeld and OrderHoldReleased on oms.orders.v1 and lets changes
through; allocation, reading them, allocates nothing more to the held order, keeps what it has
reserved but refuses to pack it, and on release refills it at its original queue place."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from allocation_support import env as message_of
from allocation_support import fresh_engine, location, order, outbox, stock
from http_support import runtime as http_runtime
from sqlalchemy import text
from staff_auth import OPERATOR, VIEWER, guarded_app

from libs.contracts import Topic
from libs.contracts.events import OrderHeld, OrderHoldReleased, PackRequested
from libs.database import create_engine, upgrade_schema
from libs.service_host.auth import ChannelKeys
from services.allocation.entrypoints.http import ACCESS as ALLOCATION_ACCESS
from services.allocation.entrypoints.http import build_router as allocation_router
from services.allocation.service_layer import allocating
from services.order_intake.adapters.tables import SCHEMA
from services.order_intake.entrypoints import http, shopify

pytestmark = pytest.mark.integration

VERSIONS = Path(__file__).parents[2] / "services" / "order_intake" / "adapters" / "migrations" / "versions"
CHANNEL = f"web-{uuid.uuid4().hex[:8]}"
KEY = {"X-API-Key": f"key-{CHANNEL}-0123456789"}


@pytest.fixture
async def intake(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    engine = create_engine(database_url, schema=SCHEMA)
    await upgrade_schema(engine, schema=SCHEMA, versions_dir=VERSIONS)
    keys = f"{CHANNEL}:{KEY['X-API-Key']}"
    runtime = http_runtime(engine)
    routers = [http.build_router(runtime, ChannelKeys(keys), shopify.ShopifyConnector("", {}))]  # type: ignore[arg-type]
    app = guarded_app("order_intake", http.ACCESS, routers, runtime=runtime, channel_keys=keys)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake",
                                 headers=OPERATOR) as client:
        client.engine = engine  # type: ignore[attr-defined]
        yield client
    await engine.dispose()


async def published(api: httpx.AsyncClient, order_id: str) -> list[tuple[str, dict[str, Any]]]:
    async with api.engine.connect() as conn:  # type: ignore[attr-defined]
        rows = await conn.execute(text("SELECT value FROM outbox_messages WHERE topic = :t AND key = :k ORDER BY id, position"),
                                  {"t": Topic.ORDERS.value, "k": order_id})
        return [(e["event_type"], e["data"]) for e in (orjson.loads(r.value) for r in rows)]


async def place(api: httpx.AsyncClient) -> str:
    body = {"channel": CHANNEL, "external_id": uuid.uuid4().hex, "placed_at": "2026-11-23T10:00:00Z",
            "currency": "EUR", "customer": {}, "ship_to": {"country": "DE"},
            "lines": [{"line_id": "1", "sku": "SKU-1", "qty": 2, "unit_price": "4.00"}]}
    resp = await api.post("/v1/orders", json=body, headers=KEY)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["order_id"])


async def test_a_hand_hold_of_an_announced_order_is_sent_to_allocation_and_released_the_same_way(intake) -> None:  # type: ignore[no-untyped-def]
    order_id = await place(intake)
    held = await intake.post(f"/v1/orders/{order_id}/hold", json={"reason": "call the customer"})
    assert held.json() == {"order_id": order_id, "status": "held"}
    events = await published(intake, order_id)
    assert [t for t, _ in events] == ["OrderPlaced", "OrderHeld"]
    assert events[1][1] == {"order_id": order_id, "reason": "call the customer", "held_by": "staff (operator)"}
    view = (await intake.get(f"/v1/orders/{order_id}", headers=VIEWER)).json()
    assert view["hold"]["announced"] is True and view["hold"]["reason"] == "call the customer"

    # changes are not kept back: allocation knows the order and holds it itself
    change = {"lines": [{"line_id": "1", "sku": "SKU-1", "qty": 3, "unit_price": "4.00"}]}
    assert (await intake.patch(f"/v1/orders/{order_id}", json=change)).status_code == 202
    again = await intake.post(f"/v1/orders/{order_id}/hold", json={"reason": "and check the address"})
    assert again.status_code == 200  # the reason is added; no second OrderHeld
    assert [t for t, _ in await published(intake, order_id)] == ["OrderPlaced", "OrderHeld", "OrderModified"]
    assert "and check the address" in (await intake.get(f"/v1/orders/{order_id}")).json()["hold"]["reason"]

    assert (await intake.post(f"/v1/orders/{order_id}/release-hold", headers=VIEWER)).status_code == 403
    released = await intake.post(f"/v1/orders/{order_id}/release-hold")
    assert released.json() == {"order_id": order_id, "announced_events": 1}
    assert (await published(intake, order_id))[-1] == (
        "OrderHoldReleased", {"order_id": order_id, "released_by": "staff (operator)"})
    assert (await intake.get(f"/v1/orders/{order_id}")).json()["hold"] is None
    assert (await intake.post(f"/v1/orders/{order_id}/release-hold")).status_code == 409

    # held again, then cancelled: the cancellation goes to allocation and the hold ends with it
    assert (await intake.post(f"/v1/orders/{order_id}/hold", json={"reason": "fraud?"})).status_code == 200
    assert (await intake.post(f"/v1/orders/{order_id}/cancel", json={"reason": "fraud"})).status_code == 202
    assert [t for t, _ in await published(intake, order_id)][-2:] == ["OrderHeld", "OrderCancelled"]
    assert (await intake.get(f"/v1/orders/{order_id}")).json()["hold"] is None


async def test_allocation_holds_the_order_refuses_its_pack_and_refills_it_on_release(database_url: str) -> None:
    engine = await fresh_engine(database_url)
    app = guarded_app("allocation", ALLOCATION_ACCESS, [allocation_router(http_runtime(engine))])  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://alloc",
                                 headers=VIEWER) as api:
        async def lines(order_id: str) -> list[tuple[int, int, bool]]:
            view = (await api.get(f"/v1/allocations/{order_id}")).json()
            return [(ln["allocated"], ln["backordered"], ln["on_hold"]) for ln in view["lines"]]

        async def apply(*events: Any) -> None:
            async with engine.begin() as conn:  # one transaction each: the order is loaded again every time
                await allocating.apply_events(conn, list(events))

        await apply(location("WH1"), stock("P1", 4, 4, 1), order("a", [("1", "P1", 6)], minutes=0),
                    order("b", [("1", "P1", 2)], minutes=5))
        await apply(message_of(OrderHeld(order_id="a", reason="call the customer", held_by="staff")))
        assert await lines("a") == [(4, 2, True)]
        await apply(stock("P1", 7, 3, 2))  # a's turn is skipped while it is held
        assert await lines("a") == [(4, 2, True)] and await lines("b") == [(2, 0, False)]
        await apply(message_of(PackRequested(order_id="a", shipment_id="S-1")))
        rejected = [e for e in await outbox(engine) if e["event_type"] == "PackRejected"]
        assert [e["data"]["detail"] for e in rejected] == ["order on hold: call the customer"]

        await apply(message_of(OrderHoldReleased(order_id="a", released_by="staff")))
        assert await lines("a") == [(5, 1, False)]  # the one free unit, at its original queue place
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT hold FROM orders WHERE order_id = 'a'"))).scalar() is None
        await apply(message_of(PackRequested(order_id="a", shipment_id="S-2")))
        assert [e["event_type"] for e in await outbox(engine) if e["key"] == "a"][-1] == "AllocationPacked"
    await engine.dispose()
