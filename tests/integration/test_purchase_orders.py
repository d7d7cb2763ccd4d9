"""Purchase orders (expected receipts) in inventory over HTTP on a real PostgreSQL: created,
changed, cancelled and received, each published as PurchaseOrderChanged (key sku) in the
outbox; bad input refused naming the field with nothing changed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from http_support import fields
from http_support import runtime as http_runtime
from sqlalchemy import text
from staff_auth import ADMIN, VIEWER, guarded_app

from libs.contracts import decode_event
from libs.contracts.events import LocationChanged
from libs.database import create_engine, upgrade_schema
from services.inventory.entrypoints.http import ACCESS, build_router
from services.inventory.service_layer.locations import save_location

pytestmark = pytest.mark.integration

VERSIONS = Path(__file__).parents[2] / "services" / "inventory" / "adapters" / "migrations" / "versions"
SCHEMA = "inventory_po_it"
TODAY = datetime.now(UTC).date()


@pytest.fixture(scope="module")
async def engine(database_url: str):  # type: ignore[no-untyped-def]
    eng = create_engine(database_url, schema=SCHEMA)
    await upgrade_schema(eng, schema=SCHEMA, versions_dir=VERSIONS)
    yield eng
    await eng.dispose()


@pytest.fixture
async def client(engine):  # type: ignore[no-untyped-def]
    app = guarded_app("inventory", ACCESS, [build_router(http_runtime(engine))])  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://inventory",
                                 headers=ADMIN) as c:
        yield c


@pytest.fixture
async def location(engine) -> str:  # type: ignore[no-untyped-def]
    location_id = f"WH-{uuid.uuid4().hex[:8]}"
    async with engine.begin() as conn:
        await save_location(conn, LocationChanged(location_id=location_id, name="Main", country="DE"))
    return location_id


@pytest.fixture
async def sku(client, location) -> str:  # type: ignore[no-untyped-def]
    """A SKU inventory knows: it has had stock (here 1 unit) at the location."""
    s = f"SKU-{uuid.uuid4().hex[:10]}"
    r = await client.post("/v1/receipts", json={"location_id": location, "reference": f"GRN-{s}",
                                                "lines": [{"sku": s, "bin": "A-01", "qty": 1}]})
    assert r.status_code == 201, r.text
    return s


async def po_events(engine, sku_: str) -> list[dict]:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        rows = (await conn.execute(
            text("SELECT value FROM outbox_messages WHERE topic = 'oms.inventory.v1' AND key = :k ORDER BY id, position"), {"k": sku_},
        )).all()
    out = []
    for row in rows:
        envelope, event = decode_event(bytes(row.value))
        out.append({"type": envelope.event_type, **event.model_dump(mode="json")})
    return out


async def po_rows(engine) -> int:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        return (await conn.execute(text("SELECT count(*) FROM purchase_orders"))).scalar_one()


async def test_purchase_order_is_created_changed_received_short_and_published(client, engine, location, sku):
    later = (TODAY + timedelta(days=10)).isoformat()
    r = await client.post("/v1/purchase-orders", json={
        "sku": sku, "location_id": location, "qty": 10, "expected_date": later, "supplier_reference": "SUP-77"})
    assert r.status_code == 201, r.text
    po = r.json()
    assert (po["status"], po["qty"], po["expected_date"], po["supplier_reference"], po["version"]) == (
        "open", 10, later, "SUP-77", 1)
    po_id = po["purchase_order_id"]

    r = await client.patch(f"/v1/purchase-orders/{po_id}", json={"qty": 12})
    assert r.status_code == 200, r.text
    assert (r.json()["qty"], r.json()["expected_date"], r.json()["version"]) == (12, later, 2)

    r = await client.post(f"/v1/purchase-orders/{po_id}/receipts",
                          json={"reference": f"GRN-{po_id}", "bin": "A-02", "qty": 8})
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["purchase_order"]["status"], body["purchase_order"]["received_qty"]) == ("received", 8)
    assert [(c["delta"], c["on_hand"], c["reason"]) for c in body["changes"]] == [(8, 8, "receipt")]

    events = await po_events(engine, sku)
    assert [(e["type"], e.get("change"), e.get("qty"), e.get("status"), e.get("received_qty"), e.get("delta"))
            for e in events[1:]] == [
        ("PurchaseOrderChanged", "created", 10, "open", 0, None),
        ("PurchaseOrderChanged", "changed", 12, "open", 0, None),
        ("StockAdjusted", None, None, None, None, 8),  # the receipt's stock comes before "received"
        ("PurchaseOrderChanged", "received", 12, "received", 8, None),
    ]
    r = await client.get("/v1/purchase-orders", params={"sku": sku}, headers=VIEWER)
    assert [(p["purchase_order_id"], p["status"]) for p in r.json()] == [(po_id, "received")]


async def test_cancelled_purchase_order_takes_no_receipt_and_nothing_changes(client, engine, location, sku):
    r = await client.post("/v1/purchase-orders", json={
        "sku": sku, "location_id": location, "qty": 5, "expected_date": TODAY.isoformat()})
    po_id = r.json()["purchase_order_id"]
    r = await client.post(f"/v1/purchase-orders/{po_id}/cancel")
    assert (r.status_code, r.json()["status"], r.json()["version"]) == (200, "cancelled", 2)
    before = await po_events(engine, sku)

    r = await client.post(f"/v1/purchase-orders/{po_id}/receipts", json={"reference": "GRN-X", "bin": "A-01", "qty": 5})
    assert r.status_code == 422
    assert fields(r) == {"purchase_order_id"}
    assert "cancelled" in r.json()["detail"][0]["problem"]
    r = await client.patch(f"/v1/purchase-orders/{po_id}", json={"qty": 7})
    assert (r.status_code, fields(r)) == (422, {"purchase_order_id"})
    assert await po_events(engine, sku) == before  # no stock, no event
    async with engine.connect() as conn:
        on_hand = (await conn.execute(text("SELECT sum(on_hand) FROM positions WHERE sku = :s"), {"s": sku})).scalar()
    assert on_hand == 1


@pytest.mark.parametrize(("change", "field"), [
    ({"sku": "NO-SUCH-SKU"}, "sku"),
    ({"location_id": "NO-SUCH-WH"}, "location_id"),
    ({"qty": 0}, "qty"),
    ({"qty": -3}, "qty"),
    ({"expected_date": (TODAY - timedelta(days=1)).isoformat()}, "expected_date"),
])
async def test_bad_purchase_order_is_refused_naming_the_field(client, engine, location, sku, change, field):
    before = await po_rows(engine)
    body = {"sku": sku, "location_id": location, "qty": 5, "expected_date": TODAY.isoformat(), **change}
    r = await client.post("/v1/purchase-orders", json=body)
    assert r.status_code == 422, r.text
    assert fields(r) == {field}
    assert await po_rows(engine) == before


async def test_changing_the_expected_date_into_the_past_is_refused(client, location, sku):
    r = await client.post("/v1/purchase-orders", json={
        "sku": sku, "location_id": location, "qty": 5, "expected_date": TODAY.isoformat()})
    po_id = r.json()["purchase_order_id"]
    r = await client.patch(f"/v1/purchase-orders/{po_id}",
                           json={"expected_date": (TODAY - timedelta(days=2)).isoformat(), "qty": 9})
    assert (r.status_code, fields(r)) == (422, {"expected_date"})
    r = await client.get(f"/v1/purchase-orders/{po_id}")
    assert (r.json()["qty"], r.json()["version"]) == (5, 1)
    assert (await client.get("/v1/purchase-orders/po_nope")).status_code == 404


async def test_viewer_may_read_but_not_create_purchase_orders(client, location, sku):
    body = {"sku": sku, "location_id": location, "qty": 5, "expected_date": TODAY.isoformat()}
    assert (await client.post("/v1/purchase-orders", json=body, headers=VIEWER)).status_code == 403
    assert (await client.get("/v1/purchase-orders", headers=VIEWER)).status_code == 200
