"""Purchase orders from the console: created (a refusal beside its field first), the shortfall of a
channel that may pre-sell shows its promise on the order page, the receipt is booked from the list
(a refusal first) and allocates the pre-sold units; another one is changed (a refusal first),
cancelled and filtered."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import shoot

pytestmark = pytest.mark.e2e


def _ok(api: httpx.Client, method: str, service: str, path: str, **kw: Any) -> Any:
    resp = api.request(method, api.base_urls[service] + path, **kw)  # type: ignore[attr-defined]
    assert resp.status_code < 400, f"{method} {service}{path} -> {resp.status_code}: {resp.text}"
    return resp.json() if resp.content else None


def test_purchase_order_created_promised_on_the_order_received_and_another_cancelled(page: Any, api: httpx.Client, screenshots: Path) -> None:
    from playwright.sync_api import expect

    run = uuid.uuid4().hex[:6]
    sku, loc, channel = f"PO-{run}", f"WH-PO-{run}", f"presell-{run}"
    expected = (datetime.now(UTC).date() + timedelta(days=3)).isoformat()
    _ok(api, "POST", "inventory", "/v1/locations", json={"location_id": loc, "name": "Inbound", "country": "DE"})
    _ok(api, "POST", "inventory", "/v1/receipts", json={"location_id": loc, "reference": f"G-{run}",
                                                       "lines": [{"sku": sku, "bin": "A-01", "qty": 1}]})
    _ok(api, "PUT", "allocation", "/v1/policy", json={"channel": channel, "presell": [{"sku": sku, "cap": 10}]})

    pg = page
    pg.goto("/purchase-orders")
    form = pg.locator("#po-form")
    form.get_by_label("SKU").fill(sku)
    form.get_by_label("Location").select_option(loc)
    form.get_by_label("Quantity").fill("0")
    form.get_by_label("Expected date").fill(expected)
    form.get_by_role("button", name="Create purchase order").click()
    expect(pg.locator("#po-form [data-error-for='qty']")).to_contain_text("qty:")
    form = pg.locator("#po-form")
    expect(form.get_by_label("SKU")).to_have_value(sku)  # what was typed stays
    form.get_by_label("Quantity").fill("4")
    form.get_by_role("button", name="Create purchase order").click()
    expect(pg.locator("main .ok")).to_contain_text(f"4 {sku} expected at {loc} on {expected}")
    [po] = _ok(api, "GET", "inventory", "/v1/purchase-orders", params={"sku": sku})
    pid = po["purchase_order_id"]
    expect(pg.locator(f"#purchase-orders tr[data-po='{pid}'] td[data-q='status']")).to_have_text("open")
    shoot(pg, screenshots, "purchase-orders")

    order_id = _ok(api, "POST", "order_intake", "/v1/orders", headers={"X-API-Key": "dev-key"}, json={
        "channel": channel, "external_id": f"po-{run}", "placed_at": datetime.now(UTC).isoformat(),
        "currency": "EUR", "ship_to": {"country": "DE"},
        "lines": [{"line_id": "1", "sku": sku, "qty": 3, "unit_price": "1.00"}]})["order_id"]
    pg.goto(f"/orders/{order_id}")
    promise = pg.locator("#presales tr[data-line='1']")
    expect(promise.locator("td[data-q='qty']")).to_have_text("2")
    expect(promise).to_contain_text(pid)
    expect(promise.locator("td[data-q='promised_date']")).to_have_text(expected)
    shoot(pg, screenshots, "purchase-order-promise")
    expect(pg.locator("#lines tr[data-line='1'] [data-q='backorder_reason']")).to_contain_text(
        f"pre-sold: 2 against purchase order {pid}")

    pg.goto(f"/purchase-orders?sku={sku}")
    row = pg.locator(f"#purchase-orders tr[data-po='{pid}']")
    row.locator("summary").click()
    row.get_by_label("GRN reference", exact=True).fill(f"GRN-PO-{run}")
    row.get_by_role("button", name="Book receipt").click()  # no bin: refused beside it
    row = pg.locator(f"#purchase-orders tr[data-po='{pid}']")
    expect(row.locator("[data-error-for='bin']")).to_contain_text("bin:")
    expect(row.get_by_label("GRN reference", exact=True)).to_have_value(f"GRN-PO-{run}")
    row.get_by_label("Bin", exact=True).fill("B-01")
    row.get_by_role("button", name="Book receipt").click()
    expect(pg.locator("main .ok")).to_contain_text(f"Receipt GRN-PO-{run} booked against {pid}: 4 {sku}")
    expect(pg.locator(f"#purchase-orders tr[data-po='{pid}'] td[data-q='status']")).to_have_text("received")

    pg.goto(f"/orders/{order_id}")
    expect(pg.locator("#lines tr[data-line='1'] td[data-q='allocated']")).to_have_text("3")
    expect(pg.locator("#presales")).to_have_count(0)

    # A second one, cancelled from the list; the status filter then tells them apart.
    pg.goto(f"/purchase-orders?sku={sku}")
    form = pg.locator("#po-form")
    form.get_by_label("SKU").fill(sku)
    form.get_by_label("Location").select_option(loc)
    form.get_by_label("Quantity").fill("2")
    form.get_by_label("Expected date").fill(expected)
    form.get_by_role("button", name="Create purchase order").click()
    expect(pg.locator("main .ok")).to_contain_text(f"2 {sku} expected")
    second = [p for p in _ok(api, "GET", "inventory", "/v1/purchase-orders", params={"sku": sku}) if p["status"] == "open"]
    assert len(second) == 1
    sid = second[0]["purchase_order_id"]
    row = pg.locator(f"#purchase-orders tr[data-po='{sid}']")
    row.locator("summary").click()
    row.get_by_label("New expected date").fill((datetime.now(UTC).date() - timedelta(days=1)).isoformat())
    row.get_by_role("button", name="Change").click()  # in the past: refused beside it
    row = pg.locator(f"#purchase-orders tr[data-po='{sid}']")
    expect(row.locator("[data-error-for='expected_date']")).to_contain_text("expected_date:")
    row.get_by_label("New expected date").fill("")
    row.get_by_label("New quantity").fill("5")
    row.get_by_role("button", name="Change").click()
    expect(pg.locator("main .ok")).to_contain_text(f"Purchase order {sid} changed: qty 5")
    row = pg.locator(f"#purchase-orders tr[data-po='{sid}']")
    expect(row.locator("td[data-q='qty']")).to_have_text("5")
    row.locator("summary").click()
    row.get_by_role("button", name="Cancel purchase order").click()
    expect(pg.locator("main .ok")).to_contain_text(f"Purchase order {sid} cancelled")
    expect(pg.locator(f"#purchase-orders tr[data-po='{sid}'] td[data-q='status']")).to_have_text("cancelled")

    pg.locator("#flt-status").select_option("received")
    pg.get_by_role("button", name="Filter").click()
    expect(pg.locator(f"#purchase-orders tr[data-po='{pid}']")).to_have_count(1)
    expect(pg.locator(f"#purchase-orders tr[data-po='{sid}']")).to_have_count(0)
