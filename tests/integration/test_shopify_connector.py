"""The Shopify connector on a real PostgreSQL, fed Shopify's recorded webhook payloads
(tests/fixtures/shopify, signed here as Shopify signs them): orders placed, edited and
cancelled once however often and in whatever order Shopify delivers; bad signatures and bad
payloads refused with nothing stored; availability turned into inventory levels."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from http_support import runtime as http_runtime
from sqlalchemy import text
from staff_auth import guarded_app

from libs.contracts import Topic, new_envelope
from libs.contracts.events import AvailabilityChanged, LocationAvailability
from libs.database import create_engine, upgrade_schema
from libs.messaging.consumer import EventMessage
from libs.service_host.auth import ChannelKeys
from services.order_intake.adapters.tables import SCHEMA
from services.order_intake.domain.shopify import ShopMapping, sign
from services.order_intake.entrypoints import http, shopify
from services.order_intake.service_layer.shopify import ShopConfig, publish_inventory_levels

pytestmark = pytest.mark.integration

VERSIONS = Path(__file__).parents[2] / "services" / "order_intake" / "adapters" / "migrations" / "versions"
SAMPLES = Path(__file__).parents[1] / "fixtures" / "shopify"
SECRET = "shpss_" + uuid.uuid4().hex
PATH = shopify.WEBHOOK_PATH


@pytest.fixture(scope="module")
async def engine(database_url: str):  # type: ignore[no-untyped-def]
    eng = create_engine(database_url, schema=SCHEMA)
    await upgrade_schema(eng, schema=SCHEMA, versions_dir=VERSIONS)
    yield eng
    await eng.dispose()


@pytest.fixture
def shop() -> str:
    """A shop of this test alone (its orders carry Shopify's sample ids, so channels keep tests apart)."""
    return f"t{uuid.uuid4().hex[:10]}.myshopify.com"


@pytest.fixture
async def api(engine, shop: str) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    runtime = http_runtime(engine)
    connector = shopify.ShopifyConnector(f"{shop}:{SECRET}", {})
    routers = [http.build_router(runtime, ChannelKeys("*:dev-key"), connector)]  # type: ignore[arg-type]
    app = guarded_app("order_intake", http.ACCESS, routers, runtime=runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as client:
        yield client


def raw(name: str) -> bytes:
    return (SAMPLES / f"{name}.json").read_bytes()


async def deliver(api: httpx.AsyncClient, shop: str, topic: str, body: bytes, secret: str = SECRET) -> httpx.Response:
    return await api.post(PATH, content=body, headers={
        "Content-Type": "application/json", "X-Shopify-Topic": topic, "X-Shopify-Shop-Domain": shop,
        "X-Shopify-Hmac-Sha256": sign(secret, body), "X-Shopify-Webhook-Id": str(uuid.uuid4()),
        "X-Shopify-API-Version": "2024-10"})


async def events_of(engine, channel: str) -> list[tuple[str, dict[str, Any]]]:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        order_id = (await conn.execute(text("SELECT order_id FROM orders WHERE channel = :c"), {"c": channel})).scalar()
        rows = await conn.execute(text("SELECT value FROM outbox_messages WHERE topic = :t AND key = :k ORDER BY id, position"),
                                  {"t": Topic.ORDERS.value, "k": order_id or ""})
        return [(e["event_type"], e["data"]) for e in (orjson.loads(r.value) for r in rows)]


def channel_of(shop: str) -> str:
    return "shopify-" + shop.removesuffix(".myshopify.com")


async def test_create_edit_payment_update_and_cancel_each_take_effect_once(api, engine, shop: str) -> None:  # type: ignore[no-untyped-def]
    created = await deliver(api, shop, "orders/create", raw("orders_create"))
    assert created.status_code == 200, created.text
    assert created.json()["did"] == ["placed"]
    order_id = created.json()["order_id"]
    again = await deliver(api, shop, "orders/create", raw("orders_create"))  # Shopify retries
    assert again.json() == {"order_id": order_id, "did": []}

    edited = await deliver(api, shop, "orders/updated", raw("orders_updated_edit"))
    assert edited.json() == {"order_id": order_id, "did": ["modified"]}
    paid = await deliver(api, shop, "orders/updated", raw("orders_updated_payment"))
    assert paid.json() == {"order_id": order_id, "did": []}
    cancelled = await deliver(api, shop, "orders/cancelled", raw("orders_cancelled"))
    assert cancelled.json() == {"order_id": order_id, "did": ["cancelled"]}
    # orders/updated fires for the cancellation too: nothing new
    assert (await deliver(api, shop, "orders/updated", raw("orders_cancelled"))).json()["did"] == []

    events = await events_of(engine, channel_of(shop))
    assert [t for t, _ in events] == ["OrderPlaced", "OrderModified", "OrderCancelled"]
    placed, modified, cancel = (d for _, d in events)
    assert placed["external_id"] == "820982911946154508" and placed["customer"]["tags"] == ["tag1", "tag2"]
    assert [(ln["sku"], ln["qty"]) for ln in placed["lines"]] == [("IPOD2008PINK", 1), ("IPOD2008BLACK", 1)]
    assert [(ln["line_id"], ln["qty"]) for ln in modified["lines"]] == [
        ("866550311766439020", 3), ("141249953214522974", 0), ("998877665544332211", 2)]
    assert cancel["line_ids"] is None and "customer" in cancel["reason"]


async def test_deliveries_out_of_order_leave_the_newest_state(api, engine, shop: str) -> None:  # type: ignore[no-untyped-def]
    first = await deliver(api, shop, "orders/updated", raw("orders_updated_edit"))
    assert first.json()["did"] == ["placed"]  # the update came first: it carries the whole order
    late_create = await deliver(api, shop, "orders/create", raw("orders_create"))
    assert late_create.json()["did"] == []  # older than what was applied: no conflict, no change
    events = await events_of(engine, channel_of(shop))
    assert [t for t, _ in events] == ["OrderPlaced"]
    assert [(ln["sku"], ln["qty"]) for ln in events[0][1]["lines"]] == [("IPOD2008PINK", 3), ("IPOD2008GREEN", 2)]


async def test_a_cancellation_before_the_create_places_and_cancels_once(api, engine, shop: str) -> None:  # type: ignore[no-untyped-def]
    assert (await deliver(api, shop, "orders/cancelled", raw("orders_cancelled"))).json()["did"] == ["placed", "cancelled"]
    assert (await deliver(api, shop, "orders/create", raw("orders_create"))).json()["did"] == []
    assert (await deliver(api, shop, "orders/cancelled", raw("orders_cancelled"))).json()["did"] == []
    assert [t for t, _ in await events_of(engine, channel_of(shop))] == ["OrderPlaced", "OrderCancelled"]


async def stored_for(engine, shop: str) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        orders = (await conn.execute(text("SELECT count(*) FROM orders WHERE channel = :c"),
                                     {"c": channel_of(shop)})).scalar()
        states = (await conn.execute(text("SELECT count(*) FROM connector_orders WHERE channel = :c"),
                                     {"c": channel_of(shop)})).scalar()
    return orders, states


async def test_a_bad_signature_is_refused_with_nothing_stored(api, engine, shop: str) -> None:  # type: ignore[no-untyped-def]
    body = raw("orders_create")
    forged = await deliver(api, shop, "orders/create", body, secret="not-the-shops-secret")
    assert forged.status_code == 401 and forged.json()["detail"][0]["field"] == "X-Shopify-Hmac-Sha256"
    tampered = await api.post(PATH, content=body.replace(b'"quantity": 1', b'"quantity": 9', 1), headers={
        "X-Shopify-Topic": "orders/create", "X-Shopify-Shop-Domain": shop, "X-Shopify-Hmac-Sha256": sign(SECRET, body)})
    assert tampered.status_code == 401
    unsigned = await api.post(PATH, content=body, headers={"X-Shopify-Topic": "orders/create", "X-Shopify-Shop-Domain": shop})
    assert unsigned.status_code == 401
    other_shop = await deliver(api, "stranger.myshopify.com", "orders/create", body)
    assert other_shop.status_code == 401  # a shop without a configured secret
    no_shop = await api.post(PATH, content=body, headers={"X-Shopify-Hmac-Sha256": sign(SECRET, body)})
    assert no_shop.status_code == 401 and no_shop.json()["detail"][0]["field"] == "X-Shopify-Shop-Domain"
    assert await stored_for(engine, shop) == (0, 0)


async def test_a_payload_shopify_would_never_send_is_refused_naming_the_field(api, engine, shop: str) -> None:  # type: ignore[no-untyped-def]
    payload = json.loads(raw("orders_create"))
    payload["line_items"][1]["sku"] = None
    payload["currency"] = "XYZ"
    refused = await deliver(api, shop, "orders/create", json.dumps(payload).encode())
    assert refused.status_code == 422
    assert {d["field"] for d in refused.json()["detail"]} == {"line_items.1.sku"}
    payload["line_items"][1]["sku"] = "IPOD2008BLACK"
    refused = await deliver(api, shop, "orders/create", json.dumps(payload).encode())
    assert refused.status_code == 422 and {d["field"] for d in refused.json()["detail"]} == {"currency"}
    not_json = await deliver(api, shop, "orders/create", b"{not json")
    assert not_json.status_code == 422 and not_json.json()["detail"][0]["field"] == "(body)"
    other_topic = await deliver(api, shop, "products/create", raw("orders_create"))
    assert other_topic.status_code == 422 and other_topic.json()["detail"][0]["field"] == "X-Shopify-Topic"
    assert await stored_for(engine, shop) == (0, 0)


def availability_delivery(sku: str, locations: dict[str, int], channels: dict[str, int]) -> EventMessage:
    event = AvailabilityChanged(
        sku=sku, total=sum(locations.values()), channels=channels, as_of=datetime.now(UTC),
        locations=[LocationAvailability(location_id=k, available=v) for k, v in locations.items()])
    return EventMessage(new_envelope(event, source="allocation", correlation_id=sku), event)


async def test_availability_becomes_inventory_levels_once(engine) -> None:  # type: ignore[no-untyped-def]
    sku, shop = f"SKU-{uuid.uuid4().hex[:8]}", f"inv{uuid.uuid4().hex[:8]}.myshopify.com"
    config = ShopConfig(shop, "shopify-inv", ShopMapping(locations={"WH-1": 11, "WH-2": 12}, inventory_items={sku: 99}))
    deliveries = [availability_delivery(sku, {"WH-1": 3, "WH-2": 4}, {"*": 7}),
                  availability_delivery(sku, {"WH-1": 5}, {"*": 5, "shopify-inv": 4})]  # newer, same batch
    async with engine.begin() as conn:
        assert await publish_inventory_levels(conn, [config], deliveries) == 2
        assert await publish_inventory_levels(conn, [config], deliveries) == 0  # redelivered: inbox
        rows = (await conn.execute(text("SELECT key, value FROM outbox_messages WHERE topic = :t AND key = :k ORDER BY id, position"),
                                   {"t": Topic.SHOPIFY_INVENTORY_LEVELS.value, "k": f"{shop}:99"})).all()
        await conn.rollback()
    levels = [orjson.loads(r.value) for r in rows]
    assert [(e["event_type"], e["data"]["location_id"], e["data"]["available"]) for e in levels] == [
        ("ShopifyInventoryLevel", 11, 4), ("ShopifyInventoryLevel", 12, 0)]
    assert levels[0]["data"]["inventory_item_id"] == 99 and levels[0]["data"]["shop"] == shop


async def test_order_intake_turns_the_availability_feed_into_shopify_levels_on_the_topic(
    infra, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    """The wiring as the host runs it: configured mapping, subscriber, outbox, relay."""
    from aiokafka import AIOKafkaConsumer

    from libs.contracts.envelope import encode_event
    from libs.messaging import KafkaSettings
    from libs.messaging.kafka import create_producer
    from libs.service_host import HostSettings, build_app
    from services.order_intake.service import SERVICE

    run = uuid.uuid4().hex[:8]
    sku, shop = f"SKU-{run}", f"feed{run}.myshopify.com"
    config = tmp_path / "shopify.json"
    config.write_text(json.dumps({"shops": {shop: {"locations": {"WH-1": 655441491},
                                                   "inventory_items": {sku: 808950810}}}}))
    monkeypatch.setenv("OMS_SHOPIFY_CONFIG", str(config))
    kafka = KafkaSettings(bootstrap=infra.kafka_bootstrap, idempotence=infra.kafka_idempotence,
                          group_suffix=f".t{run}")
    app = build_app(SERVICE, HostSettings(database_url=infra.database_url, db_pool_size=2), kafka)
    event = AvailabilityChanged(sku=sku, total=9, channels={"*": 9}, as_of=datetime.now(UTC),
                                locations=[LocationAvailability(location_id="WH-1", available=9)])
    async with app.router.lifespan_context(app):
        producer = create_producer(kafka, "test")
        await producer.start()
        try:
            await producer.send_and_wait(Topic.AVAILABILITY.value, encode_event(
                new_envelope(event, source="allocation", correlation_id=f"sku:{sku}")), key=sku.encode())
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(Topic.SHOPIFY_INVENTORY_LEVELS.value, bootstrap_servers=infra.kafka_bootstrap,
                                    group_id=f"t-{run}", auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        try:
            found = None
            for _ in range(240):  # up to a minute; returns as soon as the level arrives
                for msgs in (await consumer.getmany(timeout_ms=250)).values():
                    found = found or next((m for m in msgs if m.key == f"{shop}:808950810".encode()), None)
                if found:
                    break
        finally:
            await consumer.stop()
    assert found is not None
    level = orjson.loads(found.value)
    assert level["event_type"] == "ShopifyInventoryLevel"
    assert {k: level["data"][k] for k in ("shop", "sku", "inventory_item_id", "location_id", "available")} == {
        "shop": shop, "sku": sku, "inventory_item_id": 808950810, "location_id": 655441491, "available": 9}
