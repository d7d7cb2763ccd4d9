"""Inputs PostgreSQL cannot store are refused at the door with a 422 naming the field, on every
service's HTTP API (real PostgreSQL behind it): NUL characters in strings and in path and query
parameters, times outside the years 1..9999 in UTC, integers beyond int32/int64, and an order
change beyond what a new order may be."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from allocation_support import fresh_engine
from http_support import STAFF, channel_keys, fields, host_app, runtime
from sqlalchemy import text

from libs.database import create_engine, upgrade_schema
from services.allocation.entrypoints.http import build_router as allocation_router
from services.fulfillment.entrypoints.http import build_router as fulfillment_router
from services.inventory.entrypoints.http import build_router as inventory_router
from services.order_intake.adapters.tables import SCHEMA as ORDER_INTAKE
from services.order_intake.entrypoints.http import build_router as order_intake_router

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
INT64_PLUS_ONE = 2**63
NUL = "a\x00b"


async def _migrated(database_url: str, service: str, schema: str):  # type: ignore[no-untyped-def]
    engine = create_engine(database_url, schema=schema, pool_size=2)
    await upgrade_schema(engine, schema=schema,
                         versions_dir=ROOT / "services" / service / "adapters" / "migrations" / "versions")
    return engine


@pytest.fixture
async def intake(database_url: str):  # type: ignore[no-untyped-def]
    engine = await _migrated(database_url, "order_intake", ORDER_INTAKE)
    app = host_app(order_intake_router(runtime(engine), channel_keys("*:channel-key")))
    headers = {**STAFF, "X-API-Key": "channel-key"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake",
                                 headers=headers) as client:
        client.engine = engine  # type: ignore[attr-defined]
        yield client
    await engine.dispose()


def order(**extra: object) -> dict:
    return {"channel": "web", "external_id": uuid.uuid4().hex, "placed_at": "2026-11-22T10:00:00Z",
            "currency": "EUR", "customer": {"name": "Jane Doe"}, "ship_to": {"country": "DE", "city": "Berlin"},
            "lines": [{"line_id": "1", "sku": "SKU-1", "qty": 2, "unit_price": "1.50"}], **extra}


async def test_nul_characters_in_any_order_string_are_refused_naming_the_field(intake: httpx.AsyncClient) -> None:
    base = order()
    cases = {
        "external_id": order(external_id=NUL),
        "customer.name": order(customer={"name": NUL}),
        "ship_to.city": order(ship_to={"country": "DE", "city": NUL}),
        "lines.0.sku": order(lines=[{**base["lines"][0], "sku": NUL}]),
        "lines.0.line_id": order(lines=[{**base["lines"][0], "line_id": NUL}]),
        "pickup_location_id": order(pickup_location_id=NUL),
    }
    for field, body in cases.items():
        r = await intake.post("/v1/orders", json=body)
        assert r.status_code == 422, (field, r.status_code, r.text)
        assert fields(r) == {field}, r.text


async def test_times_outside_the_years_1_to_9999_in_utc_are_refused(intake: httpx.AsyncClient) -> None:
    for placed_at in ("9999-12-31T23:00:00-05:00", "0001-01-01T00:30:00+01:00"):
        r = await intake.post("/v1/orders", json=order(placed_at=placed_at))
        assert r.status_code == 422 and fields(r) == {"placed_at"}, r.text
    assert (await intake.post("/v1/orders", json=order(placed_at="9999-12-31T23:00:00Z"))).status_code == 201


async def test_nul_and_out_of_range_path_and_query_parameters_are_refused(intake: httpx.AsyncClient) -> None:
    r = await intake.get("/v1/orders/ord%00x")
    assert r.status_code == 422 and fields(r) == {"order_id"}, r.text
    r = await intake.get("/v1/orders", params={"channel": NUL})
    assert r.status_code == 422 and fields(r) == {"channel"}, r.text
    r = await intake.get("/v1/orders", params={"offset": INT64_PLUS_ONE})
    assert r.status_code == 422 and fields(r) == {"offset"}, r.text
    r = await intake.post("/v1/orders/ord%00x/cancel", json={})
    assert r.status_code == 422 and fields(r) == {"order_id"}, r.text


async def test_cancel_body_with_nul_is_refused_in_the_project_shape(intake: httpx.AsyncClient) -> None:
    r = await intake.post("/v1/orders", json=order())
    order_id = r.json()["order_id"]
    r = await intake.post(f"/v1/orders/{order_id}/cancel", json={"line_ids": [NUL], "reason": NUL})
    assert r.status_code == 422, r.text
    assert fields(r) == {"line_ids.0", "reason"}


async def test_an_order_change_is_held_to_the_rules_of_a_new_order(intake: httpx.AsyncClient) -> None:
    r = await intake.post("/v1/orders", json=order())
    order_id = r.json()["order_id"]
    line = {"line_id": "1", "sku": "SKU-1", "qty": 1, "unit_price": "1.50"}
    cases = [
        ({"priority": 5000}, {"priority"}),
        ({"lines": [{**line, "qty": 2_000_000}]}, {"lines.0.qty"}),
        ({"lines": [{**line, "line_id": "2", "sku": NUL}]}, {"lines.0.sku"}),
        ({"lines": [{**line, "unit_price": "-1"}]}, {"lines.0.unit_price"}),
        ({"lines": [{**line, "qty": 1.5}]}, {"lines.0.qty"}),
        ({"lines": [line, line]}, {"lines"}),
        ({"lines": [{**line, "colour": "red"}]}, {"lines.0.colour"}),
        ({"lines": [{**line, "line_id": f"n{i}", "sku": f"S{i}"} for i in range(500)]}, {"lines"}),
    ]
    for body, expected in cases:
        r = await intake.patch(f"/v1/orders/{order_id}", json=body)
        assert r.status_code == 422, (body if len(str(body)) < 200 else "500 lines", r.text)
        assert fields(r) == expected, r.text
    async with intake.engine.connect() as conn:  # type: ignore[attr-defined]
        modified = (await conn.execute(text(
            "SELECT count(*) FROM outbox_messages WHERE key = :o AND headers->>'event_type' = 'OrderModified'"),
            {"o": order_id})).scalar()
    assert modified == 0
    r = await intake.patch(f"/v1/orders/{order_id}", json={"priority": 1000, "lines": [{**line, "qty": 0}]})
    assert r.status_code == 202, r.text


# --- inventory --------------------------------------------------------------------------------


@pytest.fixture
async def inventory(database_url: str):  # type: ignore[no-untyped-def]
    engine = await _migrated(database_url, "inventory", "inventory_it")
    app = host_app(inventory_router(runtime(engine)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://inventory",
                                 headers=STAFF) as client:
        location_id = f"WH-{uuid.uuid4().hex[:8]}"
        r = await client.post("/v1/locations", json={"location_id": location_id, "name": "Main", "country": "DE"})
        assert r.status_code == 201, r.text
        client.location_id = location_id  # type: ignore[attr-defined]
        yield client
    await engine.dispose()


async def test_inventory_refuses_what_it_could_not_store(inventory: httpx.AsyncClient) -> None:
    loc = inventory.location_id  # type: ignore[attr-defined]
    line = {"sku": "SKU-1", "bin": "A-01", "qty": 1}
    cases = [
        ("/v1/receipts", {"location_id": loc, "reference": NUL, "lines": [line]}, {"reference"}),
        ("/v1/receipts", {"location_id": loc, "reference": "G1", "lines": [{**line, "lot": NUL}]}, {"lines.0.lot"}),
        ("/v1/receipts", {"location_id": loc, "reference": "G1", "lines": [{**line, "sku": NUL}]}, {"lines.0.sku"}),
        ("/v1/receipts", {"location_id": loc, "reference": "G1",
                          "lines": [{**line, "expires_at": "9999-12-31T23:59:00-01:00"}]}, {"lines.0.expires_at"}),
        ("/v1/receipts", {"location_id": loc, "reference": "G1",
                          "lines": [{**line, "received_at": "0001-01-01T00:00:00+00:01"}]}, {"lines.0.received_at"}),
        ("/v1/adjustments", {"sku": "S", "location_id": loc, "bin": "A", "delta": 1, "reason_code": "found",
                             "reference": NUL}, {"reference"}),
        ("/v1/transfers", {"sku": "S", "from_location_id": loc, "from_bin": "A", "to_location_id": loc,
                           "to_bin": NUL, "qty": 1}, {"to_bin"}),
        ("/v1/locations", {"location_id": "L1", "name": NUL, "country": "DE", "channels": [NUL]},
         {"name", "channels.0"}),
    ]
    for path, body, expected in cases:
        r = await inventory.post(path, json=body)
        assert r.status_code == 422, (path, body, r.text)
        assert fields(r) == expected, r.text
    r = await inventory.patch(f"/v1/locations/{loc}", json={"name": NUL})
    assert r.status_code == 422 and fields(r) == {"name"}, r.text
    for path, params, expected in [
        ("/v1/ledger", {"before_id": INT64_PLUS_ONE}, {"before_id"}),
        ("/v1/ledger", {"sku": NUL}, {"sku"}),
        ("/v1/stock/a%00b", {}, {"sku"}),
        ("/v1/locations/a%00b", {}, {"location_id"}),
        ("/v1/stocktakes/export", {"location_id": NUL}, {"location_id"}),
        ("/v1/stocktakes/st%00x", {}, {"stocktake_id"}),
    ]:
        r = await inventory.get(path, params=params)
        assert r.status_code == 422 and fields(r) == expected, (path, r.text)
    r = await inventory.post("/v1/stocktakes", data={"location_id": NUL, "mode": "specific_bins"},
                             files={"file": ("count.csv", b"sku,bin,lot,counted\n", "text/csv")})
    assert r.status_code == 422 and fields(r) == {"location_id"}, r.text


async def test_a_stock_count_beyond_what_a_position_holds_is_refused_at_upload(inventory: httpx.AsyncClient) -> None:
    loc = inventory.location_id  # type: ignore[attr-defined]
    r = await inventory.post("/v1/receipts", json={"location_id": loc, "reference": "G-big",
                                                   "lines": [{"sku": "SKU-BIG", "bin": "A-01", "qty": 5}]})
    assert r.status_code == 201, r.text
    sheet = "sku,bin,lot,counted\nSKU-BIG,A-01,,3000000000\n"
    r = await inventory.post("/v1/stocktakes", data={"location_id": loc, "mode": "specific_bins"},
                             files={"file": ("count.csv", sheet.encode(), "text/csv")})
    assert r.status_code == 422, r.text
    assert fields(r) == {"row 2.counted"} and "at most 2147483647" in r.json()["detail"][0]["problem"]


# --- allocation -------------------------------------------------------------------------------


@pytest.fixture
async def allocation(database_url: str):  # type: ignore[no-untyped-def]
    engine = await fresh_engine(database_url)
    app = host_app(allocation_router(runtime(engine)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://allocation",
                                 headers=STAFF) as client:
        yield client
    await engine.dispose()


async def test_allocation_refuses_what_it_could_not_store(allocation: httpx.AsyncClient) -> None:
    for body, expected in [
        ({"channel": 5}, {"channel"}),
        ({"channel": ["web"]}, {"channel"}),
        ({"channel": NUL}, {"channel"}),
        ({"channel": "web", "buffer": INT64_PLUS_ONE}, {"buffer"}),
        ({"channel": "web", "safety_stock": [{"sku": NUL, "location_id": "*", "qty": 1}]}, {"safety_stock.0.sku"}),
    ]:
        r = await allocation.put("/v1/policy", json=body)
        assert r.status_code == 422 and fields(r) == expected, (body, r.text)
    r = await allocation.post("/v1/transfers", json={"from_order_id": NUL, "to_order_id": "o2", "sku": "S",
                                                     "qty": 3_000_000_000})
    assert r.status_code == 422 and fields(r) == {"from_order_id", "qty"}, r.text
    r = await allocation.post("/v1/orders/o1/deallocate", json={"line_ids": [NUL]})
    assert r.status_code == 422 and fields(r) == {"line_ids.0"}, r.text
    r = await allocation.post("/v1/orders/o1/reallocate", json={"location_id": NUL})
    assert r.status_code == 422 and fields(r) == {"location_id"}, r.text
    for path, params, expected in [
        ("/v1/allocations/a%00b", {}, {"order_id"}),
        ("/v1/policy", {"channel": NUL}, {"channel"}),
        ("/v1/backorders", {"offset": INT64_PLUS_ONE}, {"offset"}),
        ("/v1/backorders", {"sku": NUL}, {"sku"}),
        ("/v1/reports/stock", {"offset": INT64_PLUS_ONE}, {"offset"}),
    ]:
        r = await allocation.get(path, params=params)
        assert r.status_code == 422 and fields(r) == expected, (path, r.text)


# --- fulfillment ------------------------------------------------------------------------------


@pytest.fixture
async def fulfillment(database_url: str):  # type: ignore[no-untyped-def]
    engine = await _migrated(database_url, "fulfillment", "fulfillment")
    app = host_app(fulfillment_router(runtime(engine), pack_wait_seconds=0))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fulfillment",
                                 headers=STAFF) as client:
        yield client
    await engine.dispose()


async def test_fulfillment_refuses_what_it_could_not_store(fulfillment: httpx.AsyncClient) -> None:
    return_line = {"line_id": "1", "qty": 1, "condition": "sellable", "location_id": "WH1", "bin": "A"}
    for path, body, expected in [
        ("/v1/shipments/sh1/ship", {"carrier": "DHL", "tracking_number": NUL}, {"tracking_number"}),
        ("/v1/orders/o1/pack", {"serials": {"1": [NUL]}}, {"serials.1.0"}),
        ("/v1/orders/o1/pack", {"line_ids": [NUL]}, {"line_ids.0"}),
        ("/v1/returns", {"order_id": "o1", "lines": [{**return_line, "lot": NUL}]}, {"lines.0.lot"}),
        ("/v1/returns", {"order_id": NUL, "lines": [{**return_line, "qty": 3_000_000_000}]},
         {"order_id", "lines.0.qty"}),
    ]:
        r = await fulfillment.post(path, json=body)
        assert r.status_code == 422 and fields(r) == expected, (path, r.text)
    r = await fulfillment.put("/v1/skus/a%00b", json={"serialized": True})
    assert r.status_code == 422 and fields(r) == {"sku"}, r.text
    for path, params, expected in [
        ("/v1/picklists", {"location_id": NUL}, {"location_id"}),
        ("/v1/shipments/a%00b", {}, {"shipment_id"}),
    ]:
        r = await fulfillment.get(path, params=params)
        assert r.status_code == 422 and fields(r) == expected, (path, r.text)
