"""Channel rules that restrict or prefer locations (issue 11 part 1) on real PostgreSQL: a rule
names only locations inventory knows (asked over inventory's real HTTP API), its choice travels
on OrderPlaced as ``locations`` and shows in the order view; allocation stores it with the order
and honours it when it places the order and when stock arrives later, and its explanation names
the rule."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import orjson
import pytest
from allocation_support import env as envelope_of
from allocation_support import fresh_engine, location, stock
from http_support import runtime as http_runtime
from sqlalchemy import text
from staff_auth import ADMIN, VIEWER, guarded_app

from libs.contracts import Topic
from libs.contracts.events import LocationChanged, LocationChoice, OrderLine, OrderPlaced
from libs.contracts.orders import Address, Customer
from libs.database import create_engine, upgrade_schema
from libs.service_host.auth import ChannelKeys
from services.allocation.entrypoints.http import ACCESS as ALLOCATION_ACCESS
from services.allocation.entrypoints.http import build_router as allocation_router
from services.allocation.service_layer import allocating
from services.inventory.entrypoints import http as inventory_http
from services.inventory.service_layer.locations import save_location
from services.order_intake.adapters.inventory_api import InventoryLocations
from services.order_intake.adapters.tables import SCHEMA
from services.order_intake.entrypoints import http, shopify

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
INTAKE_VERSIONS = ROOT / "services" / "order_intake" / "adapters" / "migrations" / "versions"
INVENTORY_VERSIONS = ROOT / "services" / "inventory" / "adapters" / "migrations" / "versions"
INVENTORY_SCHEMA = "inventory_locrules"  # its own: a running inventory (e2e) would relay its outbox


@pytest.fixture
async def known(database_url: str) -> AsyncIterator[SimpleNamespace]:
    """Two locations in a real inventory, reached over its HTTP API as intake reaches it."""
    run = uuid.uuid4().hex[:6].upper()
    engine = create_engine(database_url, schema=INVENTORY_SCHEMA)
    await upgrade_schema(engine, schema=INVENTORY_SCHEMA, versions_dir=INVENTORY_VERSIONS)
    ids = [f"BER-{run}", f"HAM-{run}"]
    async with engine.begin() as conn:
        for lid in ids:
            await save_location(conn, LocationChanged(location_id=lid, name=lid, country="DE"))
    app = guarded_app("inventory", inventory_http.ACCESS, [inventory_http.build_router(http_runtime(engine))])  # type: ignore[arg-type]
    yield SimpleNamespace(ids=ids, source=InventoryLocations("http://inventory", transport=httpx.ASGITransport(app=app)))
    await engine.dispose()


async def intake(database_url: str, locations: InventoryLocations, channel: str) -> tuple[httpx.AsyncClient, Any]:
    engine = create_engine(database_url, schema=SCHEMA)
    await upgrade_schema(engine, schema=SCHEMA, versions_dir=INTAKE_VERSIONS)
    keys = f"{channel}:key-{channel}-0123456789"
    runtime = http_runtime(engine)
    routers = [http.build_router(runtime, ChannelKeys(keys), shopify.ShopifyConnector("", {}), locations)]  # type: ignore[arg-type]
    app = guarded_app("order_intake", http.ACCESS, routers, runtime=runtime, channel_keys=keys)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake", headers=ADMIN)
    return client, engine


@pytest.fixture
async def api(database_url: str, known: SimpleNamespace) -> AsyncIterator[httpx.AsyncClient]:
    channel = f"web-{uuid.uuid4().hex[:8]}"
    client, engine = await intake(database_url, known.source, channel)
    client.channel = channel  # type: ignore[attr-defined]
    client.engine = engine  # type: ignore[attr-defined]
    async with client:
        yield client
        async with engine.begin() as conn:  # rules are global: leave none behind
            await conn.execute(text("DELETE FROM channel_rules WHERE spec -> 'conditions' -> 'channels' ? :c"),
                               {"c": channel})
    await engine.dispose()


async def rule_count(api: httpx.AsyncClient) -> int:
    async with api.engine.connect() as conn:  # type: ignore[attr-defined]
        return int((await conn.execute(text("SELECT count(*) FROM channel_rules"))).scalar())


async def placed(api: httpx.AsyncClient, country: str = "DE") -> tuple[str, dict[str, Any]]:
    channel: str = api.channel  # type: ignore[attr-defined]
    body = {"channel": channel, "external_id": uuid.uuid4().hex, "placed_at": "2026-11-23T10:00:00Z",
            "currency": "EUR", "customer": {}, "ship_to": {"country": country},
            "lines": [{"line_id": "1", "sku": "SKU-1", "qty": 2, "unit_price": "4.00"}]}
    resp = await api.post("/v1/orders", json=body, headers={"X-API-Key": f"key-{channel}-0123456789"})
    assert resp.status_code == 201, resp.text
    order_id = resp.json()["order_id"]
    async with api.engine.connect() as conn:  # type: ignore[attr-defined]
        value = (await conn.execute(text("SELECT value FROM outbox_messages WHERE topic = :t AND key = :k"),
                                    {"t": Topic.ORDERS.value, "k": order_id})).scalar_one()
    return order_id, orjson.loads(value)["data"]


async def test_location_rules_travel_on_order_placed_and_show_in_the_order_view(api, known) -> None:  # type: ignore[no-untyped-def]
    ber, ham = known.ids
    first = (await api.post("/v1/rules", json={
        "name": "german stock", "position": 1, "conditions": {"channels": [api.channel], "countries": ["DE"]},
        "actions": {"restrict_locations": [ber, ham], "prefer_locations": [ham], "location_priorities": {ber: 7}}})).json()
    second = (await api.post("/v1/rules", json={
        "name": "berlin only", "position": 2, "conditions": {"channels": [api.channel]},
        "actions": {"restrict_locations": [ber]}})).json()
    order_id, data = await placed(api)
    label1, label2 = f"rule 'german stock' ({first['rule_id']})", f"rule 'berlin only' ({second['rule_id']})"
    expected = {"restrict_to": [ber], "restricted_by": f"{label1}; {label2}", "prefer": [ham], "preferred_by": label1,
                "priorities": {ber: 7}, "priorities_by": label1}
    assert data["locations"] == expected
    view = (await api.get(f"/v1/orders/{order_id}", headers=VIEWER)).json()
    assert view["locations"] == expected
    assert [r["did"] for r in view["rules"]] == [
        [f"restricted to locations {ber}, {ham}", f"prefers locations {ham}", f"location priorities {ber} 7"],
        [f"restricted to locations {ber}"]]

    _, elsewhere = await placed(api, country="AT")  # only the second rule matches
    assert elsewhere["locations"] == {"restrict_to": [ber], "restricted_by": label2, "prefer": [], "preferred_by": "",
                                      "priorities": {}, "priorities_by": ""}
    await api.delete(f"/v1/rules/{first['rule_id']}")
    await api.delete(f"/v1/rules/{second['rule_id']}")
    _, plain = await placed(api)
    assert "locations" not in plain  # no rule chose: the event is as before the field existed


async def test_a_rule_naming_an_unknown_location_is_refused_naming_the_field(api, known) -> None:  # type: ignore[no-untyped-def]
    ber, _ = known.ids
    before = await rule_count(api)
    resp = await api.post("/v1/rules", json={
        "name": "x", "conditions": {"channels": [api.channel]},
        "actions": {"restrict_locations": [ber, "WH-NOPE"], "prefer_locations": ["WH-GONE"],
                    "location_priorities": {ber: 1, "WH-ALSO-NOPE": 2}}})
    assert resp.status_code == 422
    assert [d["field"] for d in resp.json()["detail"]] == [
        "actions.restrict_locations.1", "actions.prefer_locations.0", "actions.location_priorities.WH-ALSO-NOPE"]
    assert "unknown location 'WH-NOPE'" in resp.json()["detail"][0]["problem"]
    assert await rule_count(api) == before


async def test_a_location_rule_is_not_stored_while_inventory_cannot_be_asked(database_url: str) -> None:
    channel = f"web-{uuid.uuid4().hex[:8]}"
    client, engine = await intake(database_url, InventoryLocations("http://127.0.0.1:9"), channel)  # nothing there
    async with client:
        client.engine = engine  # type: ignore[attr-defined]
        before = await rule_count(client)
        down = await client.post("/v1/rules", json={"name": "x", "conditions": {"channels": [channel]},
                                                     "actions": {"prefer_locations": ["WH-1"]}})
        assert down.status_code == 503 and down.json()["detail"][0]["field"] == "(inventory)"
        assert await rule_count(client) == before
        other = await client.post("/v1/rules", json={"name": "x", "conditions": {"channels": [channel]},
                                                      "actions": {"priority": 3}})  # names no location: no question
        assert other.status_code == 201
        await client.delete(f"/v1/rules/{other.json()['rule_id']}")
    await engine.dispose()


# --- allocation honours OrderPlaced.locations ---------------------------------------------------


def order_placed(order_id: str, qty: int, choice: LocationChoice, at: str) -> Any:
    return envelope_of(OrderPlaced(
        order_id=order_id, channel="web", external_id=order_id, placed_at=f"2026-11-01T{at}:00Z",  # type: ignore[arg-type]
        currency="EUR", customer=Customer(), ship_to=Address(country="DE"),
        lines=[OrderLine(line_id="1", sku="P1", qty=qty, unit_price=1)], locations=choice))


async def test_allocation_keeps_a_restriction_when_stock_arrives_later_and_explains_it(database_url: str) -> None:
    engine = await fresh_engine(database_url)
    app = guarded_app("allocation", ALLOCATION_ACCESS, [allocation_router(http_runtime(engine))])  # type: ignore[arg-type]
    restricted = LocationChoice(restrict_to=["WH2"], restricted_by="rule 'south' (rule_1)")
    preferred = LocationChoice(prefer=["WH2"], preferred_by="rule 'ship from 2' (rule_2)")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://alloc",
                                 headers=VIEWER) as api:
        async with engine.begin() as conn:
            await allocating.apply_events(conn, [
                location("WH1", priority=9), location("WH2", priority=1),
                stock("P1", 10, 10, 1), stock("P1", 2, 2, 1, location_id="WH2"),
                order_placed("r-1", 3, restricted, "10:00"),  # WH1 ranks first and has plenty, but is not allowed
                order_placed("p-1", 1, preferred, "10:05"),
            ])
        view = (await api.get("/v1/allocations/r-1")).json()
        assert [(a["location_id"], a["qty"]) for a in view["allocations"]] == [("WH2", 2)]
        assert "channel rules: allowed by rule 'south' (rule_1)" in view["allocations"][0]["explanation"]
        assert view["backorders"][0]["qty"] == 1 and view["locations"]["restrict_to"] == ["WH2"]
        pref = (await api.get("/v1/allocations/p-1")).json()  # WH2 had nothing left: WH1 gives
        assert [(a["location_id"], a["qty"]) for a in pref["allocations"]] == [("WH1", 1)]

        async with engine.begin() as conn:  # later, in another transaction: the order is loaded again
            await allocating.apply_events(conn, [stock("P1", 20, 10, 2), stock("P1", 3, 1, 2, location_id="WH2")])
        view = (await api.get("/v1/allocations/r-1")).json()
        assert sorted((a["location_id"], a["qty"]) for a in view["allocations"]) == [("WH2", 1), ("WH2", 2)]
        assert view["backorders"] == []
    await engine.dispose()
