"""A hand hold from the order page (a refusal beside its field first): stock arriving while it is
held is not allocated to it, releasing it is; and the sales report, one table per currency (a bad
date range refused beside its field first)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import shoot

pytestmark = pytest.mark.e2e


def _place(api: httpx.Client, channel: str, sku: str, qty: int, currency: str = "EUR", price: str = "1.00") -> str:
    body = {"channel": channel, "external_id": f"hs-{uuid.uuid4().hex[:8]}", "placed_at": datetime.now(UTC).isoformat(),
            "currency": currency, "customer": {"name": "c"}, "ship_to": {"country": "DE"},
            "lines": [{"line_id": "1", "sku": sku, "qty": qty, "unit_price": price}]}
    resp = api.post(api.base_urls["order_intake"] + "/v1/orders", json=body, headers={"X-API-Key": "dev-key"})  # type: ignore[attr-defined]
    assert resp.status_code == 201, resp.text
    return str(resp.json()["order_id"])


def _line(pg: Any, state: str) -> Any:
    return pg.locator(f"#lines tr[data-line='1'] td[data-q='{state}']")


def test_an_order_held_by_hand_gets_no_new_stock_until_released_from_the_order_page(page: Any, api: httpx.Client, screenshots: Path) -> None:
    from playwright.sync_api import expect

    run = uuid.uuid4().hex[:6]
    loc, sku = f"HOLD-{run}", f"HELD-{run}"
    inv, alloc = api.base_urls["inventory"], api.base_urls["allocation"]  # type: ignore[attr-defined]
    assert api.post(inv + "/v1/locations", json={"location_id": loc, "name": "Hold", "country": "DE"}).status_code in (200, 201)
    assert api.post(inv + "/v1/receipts", json={"location_id": loc, "reference": f"G1-{run}",
                                                "lines": [{"sku": sku, "bin": "H-01", "qty": 1}]}).status_code == 201
    order_id = _place(api, "web", sku, 2)
    pg = page
    pg.goto(f"/orders/{order_id}")
    expect(_line(pg, "allocated")).to_have_text("1")
    expect(_line(pg, "backordered")).to_have_text("1")

    pg.locator("#act-hold").get_by_role("button", name="Hold order").click()  # no reason: refused beside it
    expect(pg.locator("#act-hold [data-error-for='reason']")).to_contain_text("reason:")
    pg.locator("#act-hold").get_by_label("Reason for the hold").fill("address check")
    pg.locator("#act-hold").get_by_role("button", name="Hold order").click()
    expect(pg.locator("#act-hold .ok")).to_contain_text("Order held (address check)")
    expect(pg.locator("#intake-hold")).to_contain_text("address check")
    expect(pg.locator("#intake-hold")).to_contain_text("Held at allocation")
    shoot(pg, screenshots, "order-hand-hold")

    assert api.post(inv + "/v1/receipts", json={"location_id": loc, "reference": f"G2-{run}",
                                                "lines": [{"sku": sku, "bin": "H-01", "qty": 1}]}).status_code == 201
    deadline = time.monotonic() + 60  # allocation has handled the receipt once its report counts it
    while api.get(alloc + "/v1/reports/stock", params={"sku": sku}).json()[0]["on_hand"] != 2:
        assert time.monotonic() < deadline, "allocation never saw the second receipt"
        time.sleep(0.2)
    pg.reload()
    expect(_line(pg, "backordered")).to_have_text("1")  # held: the new unit is not allocated to it
    expect(_line(pg, "allocated")).to_have_text("1")

    pg.locator("#act-release").get_by_role("button", name="Release hold").click()
    expect(pg.locator("#act-release .ok")).to_contain_text("Hold released")
    expect(_line(pg, "allocated")).to_have_text("2")
    expect(pg.locator("#intake-hold")).to_have_count(0)


def test_sales_report_shows_one_table_per_currency_and_refuses_a_bad_range_beside_its_field(
        page: Any, api: httpx.Client, screenshots: Path) -> None:
    from playwright.sync_api import expect

    run = uuid.uuid4().hex[:6]
    channel, sku = f"sales-{run}", f"SOLD-{run}"
    _place(api, channel, sku, 2, "EUR", "5.00")
    _place(api, channel, sku, 1, "EUR", "5.00")
    _place(api, channel, sku, 3, "USD", "2.50")
    today = datetime.now(UTC).date()
    pg = page
    pg.goto("/reports/sales")
    form = pg.locator("#sales-form")
    form.get_by_label("Group by").select_option("sku")
    form.get_by_label("Placed from").fill(today.isoformat())
    form.get_by_label("Placed to").fill((today - timedelta(days=1)).isoformat())
    form.get_by_label("Channel").fill(channel)
    form.get_by_role("button", name="Show").click()
    expect(pg.locator("#sales-form [data-error-for='date_to']")).to_contain_text("date_to:")
    expect(pg.locator("#sales-form").get_by_label("Channel")).to_have_value(channel)

    pg.locator("#sales-form").get_by_label("Placed to").fill(today.isoformat())
    pg.locator("#sales-form").get_by_role("button", name="Show").click()
    eur = pg.locator(f"#sales-EUR tr[data-key='{sku}']")
    expect(eur.locator("td[data-q='orders']")).to_have_text("2")
    expect(eur.locator("td[data-q='ordered-units']")).to_have_text("3")
    expect(eur.locator("td[data-q='ordered-value']")).to_have_text("15.00")
    usd = pg.locator(f"#sales-USD tr[data-key='{sku}']")
    expect(usd.locator("td[data-q='orders']")).to_have_text("1")
    expect(usd.locator("td[data-q='ordered-value']")).to_have_text("7.50")
    shoot(pg, screenshots, "sales-report")

    pg.locator("#sales-form").get_by_label("Currency").fill("USD")
    pg.locator("#sales-form").get_by_role("button", name="Show").click()
    expect(pg.locator(f"#sales-USD tr[data-key='{sku}']")).to_have_count(1)
    expect(pg.locator("#sales-EUR")).to_have_count(0)
