"""The stock take wizard (a bad sheet refused row by row with nothing applied, then a good one
applied), a refusal shown beside the field it names, and what sign-in keeps secret."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import STAFF_TOKEN, shoot

pytestmark = pytest.mark.e2e


def _url(api: httpx.Client, service: str, path: str) -> str:
    return api.base_urls[service] + path  # type: ignore[attr-defined,no-any-return]


def _stocked_location(api: httpx.Client) -> tuple[str, str]:
    """A location holding 10 of a SKU in bin S-01 (set up over the API: not what this test is about)."""
    run = uuid.uuid4().hex[:6]
    loc, sku = f"ST-{run}", f"COUNTED-{run}"
    resp = api.post(_url(api, "inventory", "/v1/locations"), json={
        "location_id": loc, "name": "Stock take store", "kind": "store", "country": "DE", "priority": 1})
    assert resp.status_code in (200, 201), resp.text
    resp = api.post(_url(api, "inventory", "/v1/receipts"), json={
        "location_id": loc, "reference": f"GRN-{run}", "lines": [{"sku": sku, "bin": "S-01", "lot": "", "qty": 10}]})
    assert resp.status_code == 201, resp.text
    return loc, sku


def _on_hand(api: httpx.Client, sku: str) -> int:
    return int(api.get(_url(api, "inventory", f"/v1/stock/{sku}")).json()["on_hand"])


def test_stock_take_wizard_rejects_a_bad_sheet_by_row_then_applies_a_good_one(
        page: Any, api: httpx.Client, screenshots: Path) -> None:
    from playwright.sync_api import expect

    loc, sku = _stocked_location(api)
    pg = page
    pg.goto("/stocktake")
    pg.get_by_label("1. Location").select_option(loc)
    pg.get_by_label("specific bins").check()
    expect(pg.locator("#stocktake-upload")).to_contain_text("existing allocations are never touched")

    with pg.expect_download() as download:  # 2. the sheet to count, for the chosen location
        pg.locator("#sheet-csv").click()
    sheet = Path(download.value.path()).read_text()
    header, *rows = sheet.strip().splitlines()
    assert header == "sku,bin,lot,on_hand,reserved,counted"
    assert rows == [f"{sku},S-01,,10,0,"]

    bad = "\n".join([header, f"{sku},S-01,,10,0,ten", f"NO-SUCH-SKU-{loc},S-01,,0,0,3"]) + "\n"
    pg.get_by_label("3. Counted sheet").set_input_files(
        files=[{"name": "counted.csv", "mimeType": "text/csv", "buffer": bad.encode()}])
    pg.get_by_role("button", name="Upload and review").click()
    rejected = pg.locator("#rejected-rows")
    expect(rejected.locator("tr[data-row='row 2.counted']")).to_contain_text("not a number: 'ten'")
    expect(rejected.locator("tr[data-row^='row 3']")).to_be_visible()
    expect(pg.locator("h2#h-rejected")).to_have_text("The sheet was rejected: nothing was applied")
    assert _on_hand(api, sku) == 10  # nothing applied
    shoot(pg, screenshots, "stocktake-rejected")

    pg.get_by_label("1. Location").select_option(loc)
    pg.get_by_label("specific bins").check()
    good = "\n".join([header, f"{sku},S-01,,10,0,7"]) + "\n"
    pg.get_by_label("3. Counted sheet").set_input_files(
        files=[{"name": "counted.csv", "mimeType": "text/csv", "buffer": good.encode()}])
    pg.get_by_role("button", name="Upload and review").click()
    review = pg.locator(f"#review tr[data-sku='{sku}'][data-bin='S-01']")
    expect(review.locator("td[data-q='delta']")).to_have_text("-3")
    expect(review.locator("td[data-q='new_on_hand']")).to_have_text("7")
    expect(pg.locator("main")).to_contain_text("What submitting does: Specific bins: only the rows in the sheet change")
    assert _on_hand(api, sku) == 10  # a preview changes nothing
    shoot(pg, screenshots, "stocktake-review")
    pg.get_by_role("button", name="Submit the count").click()
    expect(pg.locator("#stocktake-status")).to_have_text("submitted")

    pg.goto(f"/stock?sku={sku}")
    expect(pg.locator("#positions tr[data-position$='/S-01/'] td[data-q='on_hand']")).to_have_text("7")
    expect(pg.locator("#ledger")).to_contain_text("count")


def test_a_refused_action_shows_the_services_own_problem_beside_the_field(
        page: Any, api: httpx.Client, screenshots: Path) -> None:
    from playwright.sync_api import expect

    loc, sku = _stocked_location(api)
    reference = f"GRN-TWICE-{loc}"
    pg = page
    pg.goto(f"/stock?sku={sku}")
    form = pg.locator("#stock-receipt")
    for attempt in range(2):  # the same GRN reference twice: inventory books it once
        form.get_by_label("Location").select_option(loc)
        form.get_by_label("GRN reference").fill(reference)
        form.get_by_label("SKU").fill(sku)
        form.get_by_label("Quantity").fill("4")
        form.get_by_label("Bin").fill("S-02")
        form.get_by_role("button", name="Receive").click()
        if attempt == 0:
            expect(form.locator(".ok")).to_contain_text(f"({reference})")
    said = api.post(_url(api, "inventory", "/v1/receipts"), json={
        "location_id": loc, "reference": reference, "lines": [{"sku": sku, "bin": "S-02", "qty": 4}]}).json()["detail"]
    [problem] = [p for p in said if p["field"] == "reference"]
    beside = form.locator("[data-error-for='reference']")
    expect(beside).to_have_text(f"reference: {problem['problem']}")
    expect(form.get_by_label("GRN reference")).to_have_attribute("aria-invalid", "true")
    assert _on_hand(api, sku) == 14  # booked once
    shoot(pg, screenshots, "refused-receipt")

    # A number the service refuses: its own words, beside the quantity.
    form.get_by_label("GRN reference").fill(f"{reference}-2")
    form.get_by_label("Quantity").fill("0")
    form.get_by_role("button", name="Receive").click()
    expect(form.locator("[data-error-for='qty']")).to_contain_text("lines.0.qty: Input should be greater than 0")

    # An order action refused with a problem about the whole order: shown at the form's head.
    order_id = _an_order_with_nothing_allocated(api, sku)
    pg.goto(f"/orders/{order_id}")
    pg.locator("#act-pack").get_by_role("button", name="Pack").click()
    expect(pg.locator("#act-pack [data-error-for='_form']")).to_contain_text("order: nothing is allocated to pack on the order")


def _an_order_with_nothing_allocated(api: httpx.Client, sku: str) -> str:
    body = {"channel": "web", "external_id": f"nothing-{uuid.uuid4().hex[:6]}", "placed_at": "2026-01-01T00:00:00Z",
            "currency": "EUR", "customer": {"name": "c"}, "ship_to": {"country": "DE"},
            "lines": [{"line_id": "1", "sku": f"NOWHERE-{sku}", "qty": 2, "unit_price": "1.00"}]}
    resp = api.post(_url(api, "order_intake", "/v1/orders"), json=body, headers={"X-API-Key": "dev-key"})
    assert resp.status_code == 201, resp.text
    order_id = str(resp.json()["order_id"])
    for _ in range(300):  # until allocation has backordered it (the pack would wait for it otherwise)
        view = api.get(_url(api, "allocation", f"/v1/allocations/{order_id}"))
        if view.status_code == 200 and view.json()["backorders"]:
            return order_id
        time.sleep(0.1)
    raise AssertionError(f"allocation never saw {order_id}")


def test_the_staff_token_stays_in_an_httponly_cookie_and_never_on_a_page(page: Any) -> None:
    for path in ("/orders", "/stock", "/stocktake", "/locations", "/policy", "/picklists", "/backorders", "/availability"):
        page.goto(path)
        assert STAFF_TOKEN not in page.content(), path
    [cookie] = [c for c in page.context.cookies() if c["name"] == "oms_console"]
    assert cookie["httpOnly"] is True
    assert STAFF_TOKEN not in page.evaluate("document.cookie")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/sign-in")
    page.goto("/orders")
    assert page.url.endswith("/sign-in")


def test_pack_ship_and_return_from_the_order_page_shows_the_refund_due(
        page: Any, api: httpx.Client, screenshots: Path) -> None:
    from playwright.sync_api import expect

    loc, sku = _stocked_location(api)
    body = {"channel": "web", "external_id": f"ship-{loc}", "placed_at": "2026-01-01T00:00:00Z", "currency": "EUR",
            "customer": {"name": "c"}, "ship_to": {"country": "DE"},
            "lines": [{"line_id": "1", "sku": sku, "qty": 3, "unit_price": "2.50"}]}
    resp = api.post(_url(api, "order_intake", "/v1/orders"), json=body, headers={"X-API-Key": "dev-key"})
    assert resp.status_code == 201, resp.text
    order_id = resp.json()["order_id"]
    pg = page
    pg.goto(f"/orders/{order_id}")
    expect(pg.locator("#lines tr[data-line='1'] td[data-q='allocated']")).to_have_text("3")
    pg.locator("#act-pack").get_by_role("button", name="Pack").click()
    expect(pg.locator("#act-pack .ok")).to_contain_text("packed: 3 unit(s)")

    ship = pg.locator("#act-ship")  # offered the shipment just packed, without a reload
    ship.get_by_label("Carrier").fill("DHL")
    ship.get_by_label("Tracking number").fill("JD0001")
    ship.get_by_role("button", name="Ship").click()
    expect(pg.locator("#act-ship .ok")).to_contain_text("shipped with DHL")
    expect(pg.locator("#lines tr[data-line='1'] td[data-q='shipped']")).to_have_text("3")

    ret = pg.locator("#act-return")
    ret.get_by_label("Quantity").fill("1")
    ret.get_by_label("Condition").select_option("sellable")
    ret.get_by_label("Location").select_option(loc)
    ret.get_by_label("Bin").fill("S-01")
    ret.get_by_role("button", name="Record return").click()
    expect(pg.locator("#act-return .ok")).to_contain_text("refund due: 2.50")
    expect(pg.locator("#lines tr[data-line='1'] td[data-q='returned']")).to_have_text("1")
    shoot(pg, screenshots, "order-shipped-and-returned")
