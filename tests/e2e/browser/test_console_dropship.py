"""Dropship from the console: a dropship location created on the locations page, its supplier's
stated stock set (a refusal beside the field first), and the requests sent to the supplier
confirmed with carrier and tracking (a refusal first) or refused with a reason."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import shoot

pytestmark = pytest.mark.e2e


def _requested(api: httpx.Client, supplier: str, order_id: str) -> str:
    """The id of the order's request once it is sent to the supplier (up to a minute)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        resp = api.get(api.base_urls["fulfillment"] + "/v1/dropship-requests", params={"location_id": supplier})  # type: ignore[attr-defined]
        mine = [r for r in resp.json() if r["order_id"] == order_id and r["status"] == "requested"]
        if mine:
            return str(mine[0]["request_id"])
        time.sleep(0.2)
    raise AssertionError(f"no request of {order_id} sent to {supplier}")


def _place(api: httpx.Client, sku: str, ref: str) -> str:
    resp = api.post(api.base_urls["order_intake"] + "/v1/orders", headers={"X-API-Key": "dev-key"}, json={  # type: ignore[attr-defined]
        "channel": "web", "external_id": ref, "placed_at": datetime.now(UTC).isoformat(), "currency": "EUR",
        "ship_to": {"country": "DE", "city": "Hamburg"},
        "lines": [{"line_id": "1", "sku": sku, "qty": 2, "unit_price": "5.00"}]})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["order_id"])


def test_dropship_supplier_stock_and_requests_confirmed_or_refused_from_the_console(page: Any, api: httpx.Client, screenshots: Path) -> None:
    from playwright.sync_api import expect

    run = uuid.uuid4().hex[:6]
    sup, sku = f"SUP-{run}", f"DSC-{run}"
    pg = page
    pg.goto("/locations")
    form = pg.locator("#location-form")
    form.get_by_label("Location id").fill(sup)
    form.get_by_label("Name").fill("Supplier")
    form.get_by_label("Kind").select_option("dropship")
    form.get_by_label("Country (ISO code)").fill("DE")
    form.get_by_role("button", name="Save location").click()
    row = pg.locator(f"#locations tr[data-location='{sup}']")
    expect(row).to_contain_text("dropship")
    row.get_by_role("link", name="supplier stock").click()

    form = pg.locator("#supplier-form")
    form.get_by_label("Stated stock").fill(f"{sku} -1")
    form.get_by_role("button", name="Save stated stock").click()
    expect(pg.locator("#supplier-form [data-error-for='lines']")).to_contain_text("lines.0.qty:")
    expect(pg.locator("#supplier-form").get_by_label("Stated stock")).to_have_value(f"{sku} -1")
    pg.locator("#supplier-form").get_by_label("Stated stock").fill(f"{sku} 5")
    pg.locator("#supplier-form").get_by_role("button", name="Save stated stock").click()
    expect(pg.locator("main .ok")).to_contain_text(f"Stated stock of {sup} saved: {sku} 5")
    expect(pg.locator(f"#stated tr[data-sku='{sku}'] td[data-q='on_hand']")).to_have_text("5")
    shoot(pg, screenshots, "supplier-stock")

    shipped = _place(api, sku, f"dsc-{run}-a")
    first = _requested(api, sup, shipped)
    pg.goto(f"/dropship?location_id={sup}")
    row = pg.locator(f"#dropship-requests tr[data-request='{first}']")
    expect(row.locator("td[data-q='status']")).to_have_text("requested")
    row.get_by_label("Carrier").fill("DHL")
    row.get_by_role("button", name="Confirm shipped").click()  # no tracking number: refused beside it
    row = pg.locator(f"#dropship-requests tr[data-request='{first}']")
    expect(row.locator("[data-error-for='tracking_number']")).to_contain_text("tracking_number:")
    expect(row.get_by_label("Carrier")).to_have_value("DHL")
    row.get_by_label("Tracking number").fill(f"JD{run}")
    row.get_by_role("button", name="Confirm shipped").click()
    expect(pg.locator("main .ok")).to_contain_text(f"Request {first} confirmed")
    row = pg.locator(f"#dropship-requests tr[data-request='{first}']")
    expect(row.locator("td[data-q='status']")).to_have_text("confirmed")
    expect(row).to_contain_text(f"DHL JD{run}")
    shoot(pg, screenshots, "dropship-requests")

    refused = _place(api, sku, f"dsc-{run}-b")
    second = _requested(api, sup, refused)
    pg.goto(f"/dropship?location_id={sup}&status=requested")
    row = pg.locator(f"#dropship-requests tr[data-request='{second}']")
    row.get_by_label("Reason").fill("discontinued at the supplier")
    row.get_by_role("button", name="Refused by supplier").click()
    expect(pg.locator("main .ok")).to_contain_text(f"Request {second} refused")
    expect(pg.locator(f"#dropship-requests tr[data-request='{first}']")).to_have_count(0)  # the filter stays: requested only
    pg.goto(f"/dropship?location_id={sup}&status=refused")
    row = pg.locator(f"#dropship-requests tr[data-request='{second}']")
    expect(row.locator("[data-q='reason']")).to_have_text("discontinued at the supplier")

    pg.goto(f"/orders/{shipped}")
    expect(pg.locator("#lines tr[data-line='1'] td[data-q='shipped']")).to_have_text("2")
