"""Error answers shared by every service (libs/service_host/errors.py), over HTTP: 503 with
Retry-After while the database is away, 413 above the body limit, 422 in the project's
``{field, problem}`` shape for everything FastAPI validates itself, unknown nested fields refused."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from http_support import STAFF, channel_keys, fields, host_app, runtime
from infra import free_port

from libs.database import create_engine, upgrade_schema
from libs.service_host.errors import DEFAULT_MAX_BODY_BYTES
from services.inventory.entrypoints.http import build_router as inventory_router
from services.order_intake.adapters.tables import SCHEMA as ORDER_INTAKE
from services.order_intake.entrypoints.http import build_router as order_intake_router

pytestmark = pytest.mark.integration

VERSIONS = "services/order_intake/adapters/migrations/versions"


def order(**extra: object) -> dict:
    return {"channel": "web", "external_id": uuid.uuid4().hex, "placed_at": "2026-11-22T10:00:00Z",
            "currency": "EUR", "ship_to": {"country": "DE"},
            "lines": [{"line_id": "1", "sku": "SKU-1", "qty": 2, "unit_price": "1.50"}], **extra}


async def client_for(engine) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    app = host_app(order_intake_router(runtime(engine), channel_keys("*:channel-key")))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake",
                                 headers={**STAFF, "X-API-Key": "channel-key"}) as client:
        yield client


@pytest.fixture
async def intake(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    from pathlib import Path

    engine = create_engine(database_url, schema=ORDER_INTAKE, pool_size=2)
    await upgrade_schema(engine, schema=ORDER_INTAKE, versions_dir=Path(__file__).parents[2] / VERSIONS)
    async for client in client_for(engine):
        yield client
    await engine.dispose()


@pytest.fixture
async def intake_without_database() -> AsyncIterator[httpx.AsyncClient]:
    """Order intake whose PostgreSQL is down (nothing listens on its port)."""
    engine = create_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/oms", schema=ORDER_INTAKE)
    async for client in client_for(engine):
        yield client
    await engine.dispose()


async def test_database_outage_answers_503_with_retry_after(intake_without_database: httpx.AsyncClient) -> None:
    for r in (
        await intake_without_database.post("/v1/orders", json=order()),
        await intake_without_database.get("/v1/orders"),
        await intake_without_database.get("/v1/orders/ord_1"),
        await intake_without_database.patch("/v1/orders/ord_1", json={"priority": 1}),
    ):
        assert r.status_code == 503, r.text
        assert int(r.headers["Retry-After"]) > 0


async def test_a_json_array_as_order_is_422_not_401(intake: httpx.AsyncClient) -> None:
    r = await intake.post("/v1/orders", json=[order()])
    assert r.status_code == 422 and fields(r) == {"(body)"}, r.text


async def test_query_and_cancel_body_errors_use_the_project_shape(intake: httpx.AsyncClient) -> None:
    r = await intake.get("/v1/orders", params={"limit": "many", "offset": -1})
    assert r.status_code == 422
    assert r.json()["detail"] == [
        {"field": "limit", "problem": "Input should be a valid integer, unable to parse string as an integer"},
        {"field": "offset", "problem": "Input should be greater than or equal to 0"},
    ]
    order_id = (await intake.post("/v1/orders", json=order())).json()["order_id"]
    r = await intake.post(f"/v1/orders/{order_id}/cancel", json={"line_ids": "1"})
    assert r.status_code == 422 and fields(r) == {"line_ids"}, r.text
    r = await intake.post(f"/v1/orders/{order_id}/cancel", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and fields(r) == {"(body)"}, r.text


async def test_unknown_fields_inside_ship_to_and_customer_are_refused(intake: httpx.AsyncClient) -> None:
    r = await intake.post("/v1/orders", json=order(ship_to={"country": "DE", "stret": "Main St 1"},
                                                   customer={"name": "Jane", "emial": "jane@example.com"}))
    assert r.status_code == 422 and fields(r) == {"ship_to.stret", "customer.emial"}, r.text


async def test_a_body_above_the_limit_is_413(intake: httpx.AsyncClient) -> None:
    huge = b'{"channel": "web", "pad": "' + b"x" * (20 * 1024 * 1024) + b'"}'
    r = await intake.post("/v1/orders", content=huge, headers={"Content-Type": "application/json"})
    assert r.status_code == 413, r.text
    assert r.json()["detail"][0]["field"] == "(body)"

    async def chunks():  # type: ignore[no-untyped-def]  # no Content-Length: counted as it streams
        for _ in range(DEFAULT_MAX_BODY_BYTES // 65536 + 2):
            yield b"x" * 65536

    r = await intake.post("/v1/orders", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413, r.text
    assert (await intake.post("/v1/orders", json=order())).status_code == 201


async def test_stock_take_uploads_have_their_own_larger_limit(database_url: str) -> None:
    from pathlib import Path

    engine = create_engine(database_url, schema="inventory_it", pool_size=2)
    await upgrade_schema(engine, schema="inventory_it",
                         versions_dir=Path(__file__).parents[2] / "services/inventory/adapters/migrations/versions")
    app = host_app(inventory_router(runtime(engine)))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://inv",
                                     headers=STAFF) as client:
            sheet = b"sku,bin,lot,counted\n" + b"S,A,,1\n" * (DEFAULT_MAX_BODY_BYTES // 7 + 1)
            r = await client.post("/v1/stocktakes", data={"location_id": "NOPE", "mode": "specific_bins"},
                                  files={"file": ("count.csv", sheet, "text/csv")})
            assert r.status_code == 422 and fields(r) == {"location_id"}, r.text[:300]  # read, not cut
            r = await client.post("/v1/stocktakes", data={"location_id": "NOPE", "mode": "specific_bins"},
                                  files={"file": ("count.csv", b"x" * (22 * 1024 * 1024), "text/csv")})
            assert r.status_code == 413
    finally:
        await engine.dispose()
