"""Channel rules and holds over order intake's HTTP API on a real PostgreSQL: rules changed at
run time decide priority, ship-complete, tags and holds of the next order; a held order is not
announced (nothing can be allocated) until staff release it, changes made meanwhile follow it
in order, and cancelling it tells nobody; the order view says which rule did what."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import orjson
import pytest
from http_support import runtime as http_runtime
from sqlalchemy import text
from staff_auth import ADMIN, OPERATOR, VIEWER, guarded_app

from libs.contracts import Topic
from libs.database import create_engine, upgrade_schema
from libs.service_host import errors
from libs.service_host.auth import ChannelKeys
from services.order_intake.adapters.tables import SCHEMA
from services.order_intake.entrypoints import http, shopify

pytestmark = pytest.mark.integration

VERSIONS = Path(__file__).parents[2] / "services" / "order_intake" / "adapters" / "migrations" / "versions"


@pytest.fixture
async def env() -> AsyncIterator[SimpleNamespace]:
    run = uuid.uuid4().hex[:8]
    yield SimpleNamespace(channel=f"web-{run}", key={"X-API-Key": f"key-{run}-0123456789"}, run=run)


@pytest.fixture
async def api(database_url: str, env: SimpleNamespace) -> AsyncIterator[httpx.AsyncClient]:
    engine = create_engine(database_url, schema=SCHEMA)
    await upgrade_schema(engine, schema=SCHEMA, versions_dir=VERSIONS)
    keys = f"{env.channel}:{env.key['X-API-Key']}"
    runtime = http_runtime(engine)
    routers = [http.build_router(runtime, ChannelKeys(keys), shopify.ShopifyConnector("", {}))]  # type: ignore[arg-type]
    app = guarded_app("order_intake", http.ACCESS, routers, runtime=runtime, channel_keys=keys)
    errors.install(app)  # the host's 422 {field, problem} answers
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as client:
        client.engine = engine  # type: ignore[attr-defined]
        yield client
        # rules are global: leave none behind for other tests
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM channel_rules WHERE spec -> 'conditions' -> 'channels' ? :c"),
                               {"c": env.channel})
    await engine.dispose()


def order(env: SimpleNamespace, country: str = "DE", tags: list[str] | None = None, qty: int = 2) -> dict[str, Any]:
    return {"channel": env.channel, "external_id": uuid.uuid4().hex, "placed_at": "2026-11-23T10:00:00Z",
            "currency": "EUR", "customer": {"tags": tags} if tags else {}, "ship_to": {"country": country},
            "lines": [{"line_id": "1", "sku": f"SKU-{env.run}", "qty": qty, "unit_price": "40.00"}]}


async def place(api: httpx.AsyncClient, env: SimpleNamespace, **kw: Any) -> str:
    resp = await api.post("/v1/orders", json=order(env, **kw), headers=env.key)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["order_id"])


async def announced(api: httpx.AsyncClient, order_id: str) -> list[tuple[str, dict[str, Any]]]:
    async with api.engine.connect() as conn:  # type: ignore[attr-defined]
        rows = await conn.execute(text("SELECT value FROM outbox_messages WHERE topic = :t AND key = :k ORDER BY id, position"),
                                  {"t": Topic.ORDERS.value, "k": order_id})
        return [(e["event_type"], e["data"]) for e in (orjson.loads(r.value) for r in rows)]


async def add_rule(api: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    resp = await api.post("/v1/rules", json=body, headers=ADMIN)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def test_a_held_order_is_announced_only_on_release_with_the_changes_made_meanwhile(api, env) -> None:  # type: ignore[no-untyped-def]
    rule = await add_rule(api, {"name": "review exports", "position": 10,
                                "conditions": {"channels": [env.channel], "countries": ["CH", "NO"]},
                                "actions": {"hold": True}})
    held = await place(api, env, country="CH")
    free = await place(api, env, country="DE")
    assert [t for t, _ in await announced(api, free)] == ["OrderPlaced"]
    assert await announced(api, held) == []  # allocation never heard of it: nothing can be allocated

    view = (await api.get(f"/v1/orders/{held}", headers=VIEWER)).json()
    assert view["status"] == "held" and "review exports" in view["hold"]["reason"]
    assert view["rules"] == [{"rule_id": rule["rule_id"], "name": "review exports", "did": ["held for review"]}]
    assert any(e["event_type"] == "ChannelRule" for e in view["timeline"])
    assert (await api.get(f"/v1/orders?status=held&channel={env.channel}", headers=VIEWER)).json()[0]["order_id"] == held

    change = {"lines": [{"line_id": "1", "sku": f"SKU-{env.run}", "qty": 3, "unit_price": "40.00"}]}
    assert (await api.patch(f"/v1/orders/{held}", json=change, headers=OPERATOR)).status_code == 202
    assert await announced(api, held) == []  # kept with the hold

    assert (await api.post(f"/v1/orders/{held}/release-hold", headers=VIEWER)).status_code == 403
    released = await api.post(f"/v1/orders/{held}/release-hold", headers=OPERATOR)
    assert released.json() == {"order_id": held, "announced_events": 2}
    events = await announced(api, held)
    assert [t for t, _ in events] == ["OrderPlaced", "OrderModified"]
    assert events[1][1]["lines"][0]["qty"] == 3
    view = (await api.get(f"/v1/orders/{held}", headers=VIEWER)).json()
    assert view["status"] == "pending" and view["hold"] is None
    again = await api.post(f"/v1/orders/{held}/release-hold", headers=OPERATOR)
    assert again.status_code == 409 and again.json()["detail"][0]["field"] == "order_id"


async def test_cancelling_a_held_order_tells_nobody_and_a_hand_hold_of_an_announced_order_goes_to_allocation(api, env) -> None:  # type: ignore[no-untyped-def]
    await add_rule(api, {"name": "wholesale review", "conditions": {"channels": [env.channel],
                                                                    "customer_tags": ["wholesale"]},
                         "actions": {"hold": True}})
    held = await place(api, env, tags=["wholesale"])
    confirmed = await api.post(f"/v1/orders/{held}/hold", json={"reason": "call the customer"}, headers=OPERATOR)
    assert confirmed.status_code == 200 and confirmed.json()["status"] == "held"
    assert (await api.post(f"/v1/orders/{held}/cancel", json={"reason": "fraud"}, headers=OPERATOR)).status_code == 202
    assert await announced(api, held) == []
    view = (await api.get(f"/v1/orders/{held}", headers=VIEWER)).json()
    assert view["status"] == "cancelled" and view["hold"] is None
    assert [(ln["qty"], ln["cancelled"]) for ln in view["lines"]] == [(2, 2)]

    free = await place(api, env)
    held_later = await api.post(f"/v1/orders/{free}/hold", json={"reason": "late doubt"}, headers=OPERATOR)
    assert held_later.status_code == 200  # announced: held at allocation (test_hand_holds.py)
    assert [t for t, _ in await announced(api, free)] == ["OrderPlaced", "OrderHeld"]
    refused = await api.post(f"/v1/orders/{held}/hold", json={"reason": "x"}, headers=OPERATOR)
    assert refused.status_code == 409 and "cancelled" in refused.json()["detail"][0]["problem"]
    bad = await api.post(f"/v1/orders/{free}/hold", json={}, headers=OPERATOR)
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "reason"
    assert (await api.post("/v1/orders/ord_nope/hold", json={"reason": "x"}, headers=OPERATOR)).status_code == 404


async def test_rules_changed_at_run_time_set_priority_ship_complete_and_tags_of_the_next_order(api, env) -> None:  # type: ignore[no-untyped-def]
    rule = await add_rule(api, {"name": "vip first", "position": 5,
                                "conditions": {"channels": [env.channel], "customer_tags": ["vip"]},
                                "actions": {"priority": 50, "ship_complete": True, "tags": ["vip"]}})
    first = await place(api, env, tags=["vip"])
    [(_, placed)] = await announced(api, first)
    assert placed["priority"] == 50 and placed["ship_complete"] is True
    view = (await api.get(f"/v1/orders/{first}", headers=VIEWER)).json()
    assert view["priority"] == 50 and view["ship_complete"] and view["tags"] == ["vip"]
    assert view["rules"][0]["did"] == ["priority 0 -> 50", "ship complete", "tagged vip"]

    body = {**{k: rule[k] for k in ("name", "position", "conditions")}, "actions": {"priority": 70}}
    changed = await api.put(f"/v1/rules/{rule['rule_id']}", json=body, headers=ADMIN)
    assert changed.status_code == 200 and changed.json()["actions"]["priority"] == 70
    second = await place(api, env, tags=["vip"])
    assert (await announced(api, second))[0][1]["priority"] == 70  # no restart
    plain = await place(api, env)
    assert (await announced(api, plain))[0][1]["priority"] == 0
    assert (await api.get(f"/v1/orders/{plain}", headers=VIEWER)).json()["rules"] == []

    listed = (await api.get("/v1/rules", headers=VIEWER)).json()
    assert rule["rule_id"] in [r["rule_id"] for r in listed]
    assert (await api.delete(f"/v1/rules/{rule['rule_id']}", headers=OPERATOR)).status_code == 403
    assert (await api.delete(f"/v1/rules/{rule['rule_id']}", headers=ADMIN)).status_code == 204
    assert (await api.get(f"/v1/rules/{rule['rule_id']}", headers=VIEWER)).status_code == 404
    third = await place(api, env, tags=["vip"])
    assert (await announced(api, third))[0][1]["priority"] == 0


async def test_a_rule_with_an_unknown_channel_or_operator_is_refused_and_nothing_stored(api, env) -> None:  # type: ignore[no-untyped-def]
    async def count() -> int:
        async with api.engine.connect() as conn:
            return int((await conn.execute(text("SELECT count(*) FROM channel_rules"))).scalar())

    before = await count()
    unknown_channel = await api.post("/v1/rules", headers=ADMIN, json={
        "name": "x", "conditions": {"channels": [env.channel, "no-such-channel"]}, "actions": {"hold": True}})
    assert unknown_channel.status_code == 422
    assert [d["field"] for d in unknown_channel.json()["detail"]] == ["conditions.channels.1"]
    unknown_operator = await api.post("/v1/rules", headers=ADMIN, json={
        "name": "x", "conditions": {"channels": [env.channel], "total_above": 3}, "actions": {"hold": True}})
    assert unknown_operator.status_code == 422
    assert [d["field"] for d in unknown_operator.json()["detail"]] == ["conditions.total_above"]
    # an unknown location: test_location_rules.py (asks a real inventory)
    not_admin = await api.post("/v1/rules", headers=OPERATOR, json={"name": "x", "actions": {"hold": True}})
    assert not_admin.status_code == 403
    missing = await api.put("/v1/rules/rule_nope", headers=ADMIN, json={"name": "x", "actions": {"hold": True}})
    assert missing.status_code == 404
    assert await count() == before
