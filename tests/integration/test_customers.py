"""Customer records on a real PostgreSQL: identified per channel, merged by e-mail where the
seller allows it, with orders, open backorders, returns and lifetime value per currency;
erasure removes the person's fields, keeps the totals and records that it happened."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from http_support import runtime as http_runtime
from sqlalchemy import text
from staff_auth import ADMIN, OPERATOR, VIEWER, guarded_app

from libs.contracts import new_envelope
from libs.contracts.events import LineState, OrderBackordered, ReturnLine, ReturnReceived
from libs.database import create_engine, upgrade_schema
from libs.messaging.consumer import Delivery, EventMessage
from libs.service_host import errors
from libs.service_host.auth import ChannelKeys
from services.order_intake.adapters.tables import SCHEMA
from services.order_intake.domain.customers import MergePolicy, customer_id_of
from services.order_intake.entrypoints import http, shopify
from services.order_intake.service_layer.tracking import apply_downstream_events

pytestmark = pytest.mark.integration

VERSIONS = Path(__file__).parents[2] / "services" / "order_intake" / "adapters" / "migrations" / "versions"
RUN = uuid.uuid4().hex[:8]
WEB, APP, POS = f"web-{RUN}", f"app-{RUN}", f"pos-{RUN}"  # web and app merge customers by e-mail; pos does not
POLICY = MergePolicy(frozenset({WEB, APP}))
EMAIL = f"Ada.{RUN}@Example.com"


@pytest.fixture
async def api(database_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setenv("OMS_CUSTOMER_MERGE_BY_EMAIL", f"{WEB},{APP}")
    engine = create_engine(database_url, schema=SCHEMA)
    await upgrade_schema(engine, schema=SCHEMA, versions_dir=VERSIONS)
    runtime = http_runtime(engine)
    routers = [http.build_router(runtime, ChannelKeys("*:dev-key"), shopify.ShopifyConnector("", {}))]  # type: ignore[arg-type]
    app = guarded_app("order_intake", http.ACCESS, routers, runtime=runtime)
    errors.install(app)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as client:
        client.engine = engine  # type: ignore[attr-defined]
        yield client
    await engine.dispose()


async def place(api: httpx.AsyncClient, channel: str, customer: dict[str, Any], lines: list[tuple[str, int, str]],
                currency: str = "EUR") -> str:
    body = {"channel": channel, "external_id": uuid.uuid4().hex, "placed_at": datetime.now(UTC).isoformat(),
            "currency": currency, "customer": customer, "ship_to": {"country": "DE", "city": "Berlin", "postal_code": "10115"},
            "lines": [{"line_id": str(i), "sku": sku, "qty": qty, "unit_price": price}
                      for i, (sku, qty, price) in enumerate(lines, start=1)]}
    resp = await api.post("/v1/orders", json=body, headers={"X-API-Key": "dev-key"})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["order_id"])


def delivery(event: Any) -> Any:
    """What apply_downstream_events takes: Delivery here; main's reworked messaging passes the
    EventMessage itself (parameter ``messages``), so this follows whichever is in place."""
    message = EventMessage(new_envelope(event, source="test", correlation_id="c"), event)
    if "messages" in inspect.signature(apply_downstream_events).parameters:
        return message
    return Delivery(record=None, message=message)  # type: ignore[arg-type]


async def test_a_customer_record_merges_by_email_where_allowed_and_adds_up(api) -> None:  # type: ignore[no-untyped-def]
    ada_web = {"customer_id": "42", "name": "Ada Lovelace", "email": EMAIL, "tags": ["vip"]}
    first = await place(api, WEB, ada_web, [("SKU-A", 2, "10.00"), ("SKU-B", 1, "5.50")])
    second = await place(api, APP, {"customer_id": "app-7", "email": EMAIL.lower()}, [("SKU-A", 1, "10.00")])
    dollars = await place(api, WEB, ada_web, [("SKU-C", 3, "2.00")], currency="USD")
    elsewhere = await place(api, POS, {"customer_id": "42", "email": EMAIL}, [("SKU-A", 1, "10.00")])
    # downstream: one unit of the first order backordered, one returned from the second
    async with api.engine.begin() as conn:
        await apply_downstream_events(conn, [
            delivery(OrderBackordered(order_id=first, version=1, change="placed", allocations=[], lines=[
                LineState(line_id="1", sku="SKU-A", qty=2, allocated=1, backordered=1),
                LineState(line_id="2", sku="SKU-B", qty=1, allocated=1)])),
            delivery(ReturnReceived(order_id=second, return_id=f"r-{RUN}", refund_total=Decimal("10.00"), lines=[
                ReturnLine(line_id="1", sku="SKU-A", qty=1, condition="sellable", location_id="WH", bin="A1",
                           refund=Decimal("10.00"))])),
        ])

    merged = customer_id_of(WEB, ada_web, POLICY)
    assert merged == customer_id_of(APP, {"email": EMAIL.upper()}, POLICY)  # e-mail in any case
    record = (await api.get(f"/v1/customers/{merged}", headers=VIEWER)).json()
    assert record["customer_id"] == merged
    assert [o["order_id"] for o in record["orders"]] == [first, second, dollars]  # not the POS order
    assert [o["total"] for o in record["orders"]] == ["25.50", "10.00", "6.00"]
    assert record["identities"] == [{"channel": APP, "customer_id": "app-7"}, {"channel": WEB, "customer_id": "42"}]
    assert record["open_backorders"] == {"lines": 1, "units": 1}
    assert record["returns"] == {"units": 1, "value": {"EUR": "10.00"}}
    assert record["lifetime_value"] == {"EUR": "25.50", "USD": "6.00"}  # 25.50 + 10.00 - 10.00 returned
    assert record["erased"] is None

    separate = customer_id_of(POS, {"customer_id": "42", "email": EMAIL}, POLICY)
    assert separate != merged
    pos_record = (await api.get(f"/v1/customers/{separate}", headers=VIEWER)).json()
    assert [o["order_id"] for o in pos_record["orders"]] == [elsewhere]  # the SQL id is the Python id

    found = (await api.get("/v1/customers", params={"email": EMAIL.upper()}, headers=VIEWER)).json()
    assert {(c["customer_id"], c["orders"]) for c in found} == {(merged, 3), (separate, 1)}
    assert (await api.get("/v1/customers", headers=VIEWER)).status_code == 422


async def test_erasure_removes_the_person_keeps_the_totals_and_is_recorded(api) -> None:  # type: ignore[no-untyped-def]
    person = {"customer_id": "77", "name": "Grace Hopper", "email": f"grace.{RUN}@example.com"}
    order_id = await place(api, POS, person, [("SKU-A", 2, "10.00")])
    rule = await api.post("/v1/rules", headers=ADMIN, json={
        "name": "hold big", "conditions": {"channels": [POS], "skus": ["SKU-HELD"]}, "actions": {"hold": True}})
    held = await place(api, POS, person, [("SKU-HELD", 1, "1.00")])  # its OrderPlaced waits with the hold
    customer = customer_id_of(POS, person, POLICY)
    assert customer is not None
    assert (await api.post(f"/v1/customers/{customer}/erase", headers=OPERATOR)).status_code == 403
    erased = await api.post(f"/v1/customers/{customer}/erase", json={"reason": "GDPR art. 17 request"}, headers=ADMIN)
    assert erased.json() == {"customer_id": customer, "orders_erased": 2}
    await api.delete(f"/v1/rules/{rule.json()['rule_id']}", headers=ADMIN)
    assert (await api.post(f"/v1/orders/{held}/release-hold", headers=OPERATOR)).status_code == 200
    async with api.engine.connect() as conn:
        announced = (await conn.execute(text("SELECT value FROM outbox_messages WHERE key = :o"), {"o": held})).scalar()
    assert b"Grace" not in announced and b"grace" not in announced and b"erased_customer" in announced

    async with api.engine.connect() as conn:
        row = (await conn.execute(text("SELECT customer, ship_to FROM orders WHERE order_id = :o"), {"o": order_id})).one()
    assert row.customer == {"erased_customer": customer} and row.ship_to == {"country": "DE"}
    view = (await api.get(f"/v1/orders/{order_id}", headers=VIEWER)).json()
    assert "Grace" not in str(view) and "grace" not in str(view)
    record = (await api.get(f"/v1/customers/{customer}", headers=VIEWER)).json()
    assert record["name"] is None and record["email"] is None and record["identities"] == []
    assert record["lifetime_value"] == {"EUR": "21.00"} and [o["order_id"] for o in record["orders"]] == [order_id, held]
    assert record["erased"]["reason"] == "GDPR art. 17 request" and record["erased"]["orders"] == 2
    assert (await api.get("/v1/customers", params={"email": person["email"]}, headers=VIEWER)).json() == []


async def test_an_unknown_customer_is_refused_naming_the_field_and_nothing_changes(api) -> None:  # type: ignore[no-untyped-def]
    async with api.engine.connect() as conn:
        before = (await conn.execute(text("SELECT count(*) FROM customer_erasures"))).scalar()
    for resp in (await api.get("/v1/customers/cus_nobody", headers=VIEWER),
                 await api.post("/v1/customers/cus_nobody/erase", headers=ADMIN)):
        assert resp.status_code == 404 and resp.json()["detail"][0]["field"] == "customer_id"
    async with api.engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM customer_erasures"))).scalar() == before


@pytest.mark.parametrize(("by", "index"), [("email", "orders_customer_email_idx"),
                                           ("name", "orders_customer_name_trgm_idx")])
async def test_the_customer_search_by_email_or_name_reads_an_index_not_every_order(api, by: str, index: str) -> None:  # type: ignore[no-untyped-def]
    from services.order_intake.service_layer.customers import _params, search_sql

    await place(api, POS, {"customer_id": f"ix-{by}", "name": f"Ada Lovelace {RUN}", "email": EMAIL}, [("SKU-A", 1, "1.00")])
    params = {"email": EMAIL, "name": f"Lovelace {RUN}", "channel": None, "n": 50, **_params(POLICY)}
    async with api.engine.begin() as conn:
        await conn.execute(text("SET LOCAL enable_seqscan = off"))  # a scan is then chosen only if nothing else can
        plan = "\n".join(r[0] for r in await conn.execute(
            text("EXPLAIN " + search_sql(email=by == "email", name=by == "name")), params))
    assert index in plan, plan
    found = (await api.get("/v1/customers", params={by: params[by]}, headers=VIEWER))
    assert found.status_code == 200 and found.json()
