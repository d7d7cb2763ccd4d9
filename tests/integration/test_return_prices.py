"""A return is refunded at the price order intake says the line was sold at: fulfillment keeps
no copy of the orders and asks order intake's public API (real PostgreSQL, both services' real
routers joined over HTTP). When order intake cannot be asked, nothing is recorded (503)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from http_support import runtime as http_runtime
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from staff_auth import OPERATOR, guarded_app

from libs.contracts import new_envelope
from libs.contracts.events import AllocationLine, AllocationPacked, LineState, OrderAllocated
from libs.database import create_engine, upgrade_schema
from libs.messaging.consumer import EventMessage
from libs.service_host.auth import ChannelKeys
from services.fulfillment.adapters.intake_api import IntakePrices
from services.fulfillment.adapters.tables import SCHEMA as FULFILLMENT
from services.fulfillment.entrypoints.http import ACCESS as FULFILLMENT_ACCESS
from services.fulfillment.entrypoints.http import build_router as fulfillment_router
from services.fulfillment.service_layer.mirroring import apply_allocation_results
from services.fulfillment.service_layer.packing import request_pack, ship_shipment
from services.order_intake.adapters.tables import SCHEMA as ORDER_INTAKE
from services.order_intake.entrypoints.http import ACCESS as INTAKE_ACCESS
from services.order_intake.entrypoints.http import build_router as intake_router

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2] / "services"
RUN = uuid.uuid4().hex[:8]
KEYS = f"web-{RUN}:web-key-{RUN}-0123456789"


def _runtime(engine: AsyncEngine) -> Any:
    return http_runtime(engine)


@pytest.fixture
async def engines(database_url: str) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    intake = create_engine(database_url, schema=ORDER_INTAKE, pool_size=2)
    fulfillment = create_engine(database_url, schema=FULFILLMENT, pool_size=2)
    await upgrade_schema(intake, schema=ORDER_INTAKE, versions_dir=ROOT / "order_intake/adapters/migrations/versions")
    await upgrade_schema(fulfillment, schema=FULFILLMENT, versions_dir=ROOT / "fulfillment/adapters/migrations/versions")
    yield intake, fulfillment
    await intake.dispose()
    await fulfillment.dispose()


def _intake_app(engine: AsyncEngine) -> Any:
    runtime = _runtime(engine)
    return guarded_app("order_intake", INTAKE_ACCESS, [intake_router(runtime, ChannelKeys(KEYS))],
                       runtime=runtime, channel_keys=KEYS)


async def _shipped_order(intake_app: Any, fulfillment: AsyncEngine) -> str:
    """An order placed at order intake (unit price 12.35), allocated, packed and shipped in fulfillment."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=intake_app), base_url="http://intake",
                                 headers={"X-API-Key": f"web-key-{RUN}-0123456789"}) as intake:
        r = await intake.post("/v1/orders", json={
            "channel": f"web-{RUN}", "external_id": uuid.uuid4().hex, "placed_at": "2026-11-23T10:00:00Z",
            "currency": "CHF", "ship_to": {"country": "CH"},
            "lines": [{"line_id": "1", "sku": "MUG", "qty": 3, "unit_price": "12.35"}]})
        assert r.status_code == 201, r.text
        order_id: str = r.json()["order_id"]

    def snapshot(cls: Any, version: int, status: str, shipment_id: str | None = None) -> EventMessage:
        a = AllocationLine(allocation_id=1, line_id="1", sku="MUG", location_id="WH1", bin="A-1", lot="",
                           qty=3, status=status, shipment_id=shipment_id)  # type: ignore[arg-type]
        state = LineState(line_id="1", sku="MUG", qty=3, allocated=3 if status == "allocated" else 0,
                          packed=3 if status == "packed" else 0)
        event = cls(order_id=order_id, version=version, change="test", shipment_id=shipment_id,
                    lines=[state], allocations=[a])
        return EventMessage(new_envelope(event, source="allocation", correlation_id=order_id), event)

    async with fulfillment.begin() as conn:
        await apply_allocation_results(conn, [snapshot(OrderAllocated, 1, "allocated")])
        shipment_id = await request_pack(conn, order_id, None, {})
        await apply_allocation_results(conn, [snapshot(AllocationPacked, 2, "packed", shipment_id)])
        assert await ship_shipment(conn, shipment_id, "DHL", "JD1")
    return order_id


async def test_a_return_is_refunded_at_the_price_order_intake_holds(engines) -> None:  # type: ignore[no-untyped-def]
    intake, fulfillment = engines
    intake_app = _intake_app(intake)
    order_id = await _shipped_order(intake_app, fulfillment)
    # fulfillment asks order intake with a viewer token, as it does in production
    prices = IntakePrices("http://intake", "dev-viewer-token", transport=httpx.ASGITransport(app=intake_app))
    app = guarded_app("fulfillment", FULFILLMENT_ACCESS, [fulfillment_router(_runtime(fulfillment), prices=prices)])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://f", headers=OPERATOR) as f:
        r = await f.post("/v1/returns", json={"order_id": order_id, "lines": [
            {"line_id": "1", "qty": 2, "condition": "sellable", "location_id": "WH1", "bin": "A-1"}]})
        assert r.status_code == 201, r.text
        assert r.json()["currency"] == "CHF"
        assert Decimal(r.json()["refund_total"]) == Decimal("24.70")
        unknown = await f.post("/v1/returns", json={"order_id": "ord_nobody", "lines": [
            {"line_id": "1", "qty": 1, "condition": "sellable", "location_id": "WH1", "bin": "A-1"}]})
        assert unknown.status_code == 404, unknown.text


async def test_a_return_answers_503_and_records_nothing_when_order_intake_cannot_be_asked(engines) -> None:  # type: ignore[no-untyped-def]
    intake, fulfillment = engines
    order_id = await _shipped_order(_intake_app(intake), fulfillment)
    # nothing listens on port 9 of this machine: order intake is down
    app = guarded_app("fulfillment", FULFILLMENT_ACCESS,
                      [fulfillment_router(_runtime(fulfillment), prices=IntakePrices("http://127.0.0.1:9"))])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://f", headers=OPERATOR) as f:
        r = await f.post("/v1/returns", json={"order_id": order_id, "lines": [
            {"line_id": "1", "qty": 1, "condition": "sellable", "location_id": "WH1", "bin": "A-1"}]})
    assert r.status_code == 503 and r.headers["Retry-After"] == "5", r.text
    assert r.json()["detail"][0]["field"] == "(order_intake)"
    async with fulfillment.connect() as conn:
        stored = (await conn.execute(text("SELECT count(*) FROM returns WHERE order_id = :o"), {"o": order_id})).scalar()
        published = (await conn.execute(text("SELECT count(*) FROM outbox_messages WHERE key = :o AND headers->>'event_type' = 'ReturnReceived'"),
                                        {"o": order_id})).scalar()
    assert (stored, published) == (0, 0)
