"""An order for pickup at a location nobody knows: order intake cannot check it (locations are
inventory's), so allocation backorders it with a reason naming the location, and the order's
own view shows that reason (real PostgreSQL; the two services' use cases joined by their events)."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from allocation_support import fresh_engine, location, order, outbox, stock
from http_support import STAFF, channel_keys, host_app, runtime

from libs.contracts import decode_event
from libs.database import create_engine, upgrade_schema
from libs.messaging.consumer import EventMessage
from services.allocation.service_layer import allocating
from services.order_intake.adapters.tables import SCHEMA as ORDER_INTAKE
from services.order_intake.entrypoints.http import build_router
from services.order_intake.service_layer.tracking import apply_downstream_events

pytestmark = pytest.mark.integration

VERSIONS = Path(__file__).parents[2] / "services" / "order_intake" / "adapters" / "migrations" / "versions"


async def test_an_unknown_pickup_location_is_shown_as_the_reason_the_order_waits(database_url: str) -> None:
    intake_db = create_engine(database_url, schema=ORDER_INTAKE, pool_size=2)
    await upgrade_schema(intake_db, schema=ORDER_INTAKE, versions_dir=VERSIONS)
    allocation_db = await fresh_engine(database_url)
    app = host_app(build_router(runtime(intake_db), channel_keys("*:channel-key")))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake",
                                     headers={**STAFF, "X-API-Key": "channel-key"}) as intake:
            r = await intake.post("/v1/orders", json={
                "channel": "web", "external_id": uuid.uuid4().hex, "placed_at": "2026-11-22T10:00:00Z",
                "currency": "EUR", "ship_to": {"country": "DE"}, "pickup_location_id": "NO-SUCH-STORE",
                "lines": [{"line_id": "1", "sku": "P1", "qty": 2, "unit_price": "1.00"}]})
            assert r.status_code == 201, r.text
            order_id = r.json()["order_id"]

            async with allocation_db.begin() as conn:
                await allocating.apply_events(conn, [
                    location("WH1"), stock("P1", 10, 10, 1),
                    order(order_id, [("1", "P1", 2)], pickup_location_id="NO-SUCH-STORE"),
                ])
            results = [decode_event(orjson_bytes(e)) for e in await outbox(allocation_db)
                       if e["key"] == order_id and e["topic"] == "oms.allocations.v1"]
            async with intake_db.begin() as conn:
                await apply_downstream_events(conn, [EventMessage(*r) for r in results])

            view = (await intake.get(f"/v1/orders/{order_id}")).json()
    finally:
        await intake_db.dispose()
        await allocation_db.dispose()
    assert view["status"] == "backordered"
    [line] = view["lines"]
    assert (line["allocated"], line["backordered"]) == (0, 2)
    assert "pickup location NO-SUCH-STORE is unknown" in line["backorder_reason"]


def orjson_bytes(event: dict) -> bytes:  # type: ignore[type-arg]
    import orjson

    return orjson.dumps({k: v for k, v in event.items() if k not in ("topic", "key")})
