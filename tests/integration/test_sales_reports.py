"""Order intake's reports on a real PostgreSQL, with exact figures: sales by channel, by SKU and by
day (ordered, cancelled, backordered, allocated, shipped, returned: units and values per
currency) and orders by channel and status; bad report queries are refused naming the
parameter."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from http_support import runtime as http_runtime
from staff_auth import VIEWER, guarded_app

from libs.contracts import new_envelope
from libs.contracts.envelope import EventMessage
from libs.contracts.events import (
    AllocationCancelled,
    Event,
    LineState,
    OrderAllocated,
    ReturnLine,
    ReturnReceived,
)
from libs.database import create_engine, upgrade_schema
from libs.service_host import errors
from libs.service_host.auth import ChannelKeys
from services.order_intake.adapters.tables import SCHEMA
from services.order_intake.entrypoints import http, shopify
from services.order_intake.service_layer.tracking import apply_downstream_events

pytestmark = pytest.mark.integration

VERSIONS = Path(__file__).parents[2] / "services" / "order_intake" / "adapters" / "migrations" / "versions"


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    engine = create_engine(database_url, schema=SCHEMA)
    await upgrade_schema(engine, schema=SCHEMA, versions_dir=VERSIONS)
    runtime = http_runtime(engine)
    routers = [http.build_router(runtime, ChannelKeys("*:dev-key"), shopify.ShopifyConnector("", {}))]  # type: ignore[arg-type]
    app = guarded_app("order_intake", http.ACCESS, routers, runtime=runtime)
    errors.install(app)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake",
                                 headers=VIEWER) as client:
        client.engine = engine  # type: ignore[attr-defined]
        yield client
    await engine.dispose()


async def place(api: httpx.AsyncClient, channel: str, placed_at: str, currency: str,
                lines: list[tuple[str, int, str]]) -> str:
    body = {"channel": channel, "external_id": uuid.uuid4().hex, "placed_at": placed_at, "currency": currency,
            "customer": {}, "ship_to": {"country": "DE"},
            "lines": [{"line_id": str(i), "sku": sku, "qty": qty, "unit_price": price}
                      for i, (sku, qty, price) in enumerate(lines, start=1)]}
    resp = await api.post("/v1/orders", json=body, headers={"X-API-Key": "dev-key"})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["order_id"])


def message(event: Event) -> EventMessage:
    return EventMessage(new_envelope(event, source="test", correlation_id="c"), event)


@pytest.fixture
async def sold(api: httpx.AsyncClient) -> SimpleNamespace:
    """Five orders in two channels (of this test alone) and three currencies, as allocation and
    fulfillment left them."""
    run = uuid.uuid4().hex[:8]
    WEB, APP = f"web-{run}", f"app-{run}"  # noqa: N806
    A, B, C = f"A-{run}", f"B-{run}", f"C-{run}"  # noqa: N806
    o1 = await place(api, WEB, "2001-02-03T23:59:59Z", "EUR", [(A, 3, "10.00"), (B, 1, "5.50")])
    o2 = await place(api, WEB, "2001-02-04T08:00:00Z", "USD", [(A, 2, "12.00")])
    o3 = await place(api, APP, "2001-02-04T00:30:00Z", "EUR", [(A, 4, "10.00")])
    o4 = await place(api, APP, "2001-02-05T23:30:00Z", "EUR", [(B, 2, "5.50")])
    o5 = await place(api, APP, "2001-01-01T12:00:00Z", "GBP", [(C, 1, "7.00")])  # allocation has not answered
    async with api.engine.begin() as conn:  # type: ignore[attr-defined]
        await apply_downstream_events(conn, [
            message(OrderAllocated(order_id=o1, version=3, change="shipped", allocations=[], lines=[
                LineState(line_id="1", sku=A, qty=3, allocated=1, shipped=2),
                LineState(line_id="2", sku=B, qty=1, backordered=1)])),
            message(ReturnReceived(order_id=o1, return_id=f"r-{run}", refund_total=Decimal("9.00"), lines=[
                ReturnLine(line_id="1", sku=A, qty=1, condition="sellable", location_id="WH", bin="A1",
                           refund=Decimal("9.00"))])),
            message(OrderAllocated(order_id=o2, version=1, change="placed", allocations=[], lines=[
                LineState(line_id="1", sku=A, qty=2, allocated=2)])),
            message(AllocationCancelled(order_id=o3, version=2, change="cancelled", allocations=[], lines=[
                LineState(line_id="1", sku=A, qty=4, cancelled=4)])),
            message(OrderAllocated(order_id=o4, version=2, change="packed", allocations=[], lines=[
                LineState(line_id="1", sku=B, qty=2, allocated=1, packed=1)])),
        ])
    return SimpleNamespace(WEB=WEB, APP=APP, A=A, B=B, C=C, orders=[o1, o2, o3, o4, o5])


def row(key: str, currency: str, orders: int, **measures: tuple[int, str]) -> dict[str, Any]:
    """A report row: every measure not given is zero."""
    names = ("ordered", "cancelled", "backordered", "allocated", "shipped", "returned")
    return {"key": key, "currency": currency, "orders": orders,
            **{n: dict(zip(("units", "value"), measures.get(n, (0, "0.00")), strict=True)) for n in names}}


async def test_sales_by_channel_add_up_per_currency(api: httpx.AsyncClient, sold: SimpleNamespace) -> None:
    report = (await api.get("/v1/reports/sales", params={"group_by": "channel"})).json()
    assert report["group_by"] == "channel" and report["date_from"] is None
    mine = [r for r in report["rows"] if r["key"] in (sold.WEB, sold.APP)]
    assert mine == [
        row(sold.APP, "EUR", 2, ordered=(6, "51.00"), cancelled=(4, "40.00"), allocated=(2, "11.00")),
        row(sold.APP, "GBP", 1, ordered=(1, "7.00")),
        row(sold.WEB, "EUR", 1, ordered=(4, "35.50"), backordered=(1, "5.50"), allocated=(1, "10.00"),
            shipped=(2, "20.00"), returned=(1, "10.00")),
        row(sold.WEB, "USD", 1, ordered=(2, "24.00"), allocated=(2, "24.00")),
    ]
    only_web = (await api.get("/v1/reports/sales", params={"channel": sold.WEB, "currency": "usd"})).json()
    assert only_web["currency"] == "USD" and only_web["rows"] == [row(sold.WEB, "USD", 1, ordered=(2, "24.00"),
                                                                      allocated=(2, "24.00"))]


async def test_sales_by_sku_count_each_order_once_per_sku(api: httpx.AsyncClient, sold: SimpleNamespace) -> None:
    report = (await api.get("/v1/reports/sales", params={"group_by": "sku"})).json()
    assert [r for r in report["rows"] if r["key"] in (sold.A, sold.B, sold.C)] == [
        row(sold.A, "EUR", 2, ordered=(7, "70.00"), cancelled=(4, "40.00"), allocated=(1, "10.00"), shipped=(2, "20.00"),
            returned=(1, "10.00")),
        row(sold.A, "USD", 1, ordered=(2, "24.00"), allocated=(2, "24.00")),
        row(sold.B, "EUR", 2, ordered=(3, "16.50"), backordered=(1, "5.50"), allocated=(2, "11.00")),
        row(sold.C, "GBP", 1, ordered=(1, "7.00")),
    ]


async def test_sales_by_day_count_the_utc_day_placed_with_inclusive_bounds(api: httpx.AsyncClient,
                                                                           sold: SimpleNamespace) -> None:
    params = {"group_by": "day", "date_from": "2001-02-04", "date_to": "2001-02-05", "channel": sold.APP,
              "currency": "EUR"}
    report = (await api.get("/v1/reports/sales", params=params)).json()
    assert (report["date_from"], report["date_to"]) == ("2001-02-04", "2001-02-05")
    assert report["rows"] == [  # the GBP order (January) is out
        row("2001-02-04", "EUR", 1, ordered=(4, "40.00"), cancelled=(4, "40.00")),
        row("2001-02-05", "EUR", 1, ordered=(2, "11.00"), allocated=(2, "11.00")),  # 23:30 UTC: still in
    ]
    web = (await api.get("/v1/reports/sales", params={"group_by": "day", "date_from": "2001-02-04",
                                                       "date_to": "2001-02-04", "channel": sold.WEB})).json()
    assert web["rows"] == [  # the EUR order placed at 23:59:59 the day before is out
        row("2001-02-04", "USD", 1, ordered=(2, "24.00"), allocated=(2, "24.00"))]
    everything = (await api.get("/v1/reports/sales", params={"group_by": "day", "channel": sold.WEB})).json()
    assert [(r["key"], r["currency"]) for r in everything["rows"]] == [("2001-02-03", "EUR"), ("2001-02-04", "USD")]


async def test_orders_by_channel_and_status_counts_exactly(api: httpx.AsyncClient, sold: SimpleNamespace) -> None:
    report = (await api.get("/v1/reports/orders-by-channel-status")).json()
    assert [(r["channel"], r["status"], r["orders"]) for r in report if r["channel"] in (sold.WEB, sold.APP)] == [
        (sold.APP, "allocated", 1), (sold.APP, "cancelled", 1), (sold.APP, "pending", 1),
        (sold.WEB, "allocated", 1), (sold.WEB, "partially_allocated", 1),
    ]


async def test_a_bad_report_query_is_refused_naming_the_parameter(api: httpx.AsyncClient) -> None:
    cases = {
        "group_by": {"group_by": "country"},
        "date_to": {"date_from": "2001-02-05", "date_to": "2001-02-04"},
        "currency": {"currency": "EUX"},
        "date_from": {"date_from": "yesterday"},
    }
    for field, params in cases.items():
        resp = await api.get("/v1/reports/sales", params=params)
        assert resp.status_code == 422, (field, resp.text)
        assert [d["field"] for d in resp.json()["detail"]] == [field], resp.text
    everything = await api.get("/v1/reports/sales", params={"group_by": "x", "currency": "12"})
    assert {d["field"] for d in everything.json()["detail"]} == {"group_by", "currency"}
    assert (await api.get("/v1/reports/sales", headers={"Authorization": ""})).status_code == 401
