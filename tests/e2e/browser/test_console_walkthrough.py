"""SPEC section 8 played through the console's pages in headless chromium: staff do every step
on the pages (only the channel places its orders, over its own API), and the test reads what
the pages show."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import shoot

pytestmark = pytest.mark.e2e


def place_order(api: httpx.Client, external_id: str, lines: list[tuple[str, int]]) -> str:
    """What the channel does: POST /v1/orders with its API key (not a staff action)."""
    body = {
        "channel": "web", "external_id": external_id, "placed_at": datetime.now(UTC).isoformat(), "currency": "EUR",
        "customer": {"name": "Walkthrough customer"},
        "ship_to": {"country": "DE", "postal_code": "10115", "lat": 52.53, "lon": 13.38},
        "lines": [{"line_id": str(i + 1), "sku": sku, "qty": qty, "unit_price": "0.12"} for i, (sku, qty) in enumerate(lines)],
    }
    resp = api.post(api.base_urls["order_intake"] + "/v1/orders", json=body, headers={"X-API-Key": "dev-key"})  # type: ignore[attr-defined]
    assert resp.status_code == 201, resp.text
    return str(resp.json()["order_id"])


def cell(pg: Any, line_id: str, state: str) -> Any:
    return pg.locator(f"#lines tr[data-line='{line_id}'] td[data-q='{state}']")


def receive(pg: Any, location: str, reference: str, sku: str, qty: int, bin_: str, lot: str) -> None:
    form = pg.locator("#stock-receipt")
    form.get_by_label("Location").select_option(location)
    form.get_by_label("GRN reference").fill(reference)
    form.get_by_label("SKU").fill(sku)
    form.get_by_label("Quantity").fill(str(qty))
    form.get_by_label("Bin").fill(bin_)
    form.get_by_label("Lot").fill(lot)
    form.get_by_role("button", name="Receive").click()
    # the reference makes the message unique: an earlier receipt's message must not count
    pg.locator("#stock-receipt .ok").filter(has_text=f"Received {qty} {sku} at {location}/{bin_} ({reference})").wait_for()


def expect_available(pg: Any, sku: str, available: int) -> None:
    from playwright.sync_api import expect

    pg.goto(f"/availability?sku={sku}")
    expect(pg.locator(f"#availability-table tr[data-sku='{sku}'] td[data-q='available']")).to_have_text(str(available))


def test_spec_section_8_walkthrough_through_the_console_pages(page: Any, api: httpx.Client, screenshots: Path) -> None:
    from playwright.sync_api import expect

    run = uuid.uuid4().hex[:6]
    brass, tap, loc = f"BRASS-SCREW-{run}", f"SELF-TAP-{run}", f"WH-{run}"
    pg = page

    # Setup: one location; BRASS-SCREW 15 in lot A (received first) and 15 in lot B; SELF-TAP 22.
    pg.goto("/locations")
    form = pg.locator("#location-form")
    form.get_by_label("Location id").fill(loc)
    form.get_by_label("Name").fill("Walkthrough warehouse")
    form.get_by_label("Country (ISO code)").fill("DE")
    form.get_by_label("Ships to (countries, comma-separated)").fill("DE")
    form.get_by_label("Priority").fill("1")
    form.get_by_label("Latitude").fill("52.52")
    form.get_by_label("Longitude").fill("13.40")
    form.get_by_role("button", name="Save location").click()
    expect(pg.locator(".ok")).to_have_text(f"Location {loc} saved.")
    expect(pg.locator(f"#locations tr[data-location='{loc}'] td[data-q='active']")).to_have_text("active")
    shoot(pg, screenshots, "locations")

    pg.goto(f"/stock?sku={brass}")
    receive(pg, loc, f"GRN-A-{run}", brass, 15, "A-01", "A")
    receive(pg, loc, f"GRN-B-{run}", brass, 15, "A-02", "B")
    receive(pg, loc, f"GRN-B2-{run}", tap, 22, "B-01", "")
    expect(pg.locator("#positions tr[data-position$='/A-01/A'] td[data-q='on_hand']")).to_have_text("15")
    expect(pg.locator("#positions tr[data-position$='/A-02/B'] td[data-q='on_hand']")).to_have_text("15")
    expect_available(pg, brass, 30)
    expect_available(pg, tap, 22)

    # 1. Order 1 arrives: 25 BRASS-SCREW, 25 SELF-TAP -> 15 from lot A, 10 from lot B; 22 + backorder of 3.
    o1 = place_order(api, f"console-1-{run}", [(brass, 25), (tap, 25)])
    pg.goto("/orders")
    pg.locator(f"#orders a[href='/orders/{o1}']").click()  # the list refreshes itself until it shows up
    expect(cell(pg, "1", "allocated")).to_have_text("25")
    expect(cell(pg, "2", "allocated")).to_have_text("22")
    expect(cell(pg, "2", "backordered")).to_have_text("3")
    expect(pg.locator("#allocations tr[data-line='1'][data-lot='A'] td[data-q='qty']")).to_have_text("15")
    expect(pg.locator("#allocations tr[data-line='1'][data-lot='B'] td[data-q='qty']")).to_have_text("10")
    expect(pg.locator("#backorders tr[data-line='2'] td[data-q='qty']")).to_have_text("3")
    expect(pg.locator("#allocations")).to_contain_text("FIFO")  # the reason it went there
    pg.goto(f"/picklists?location_id={loc}")
    expect(pg.locator(f"table[data-location='{loc}']")).to_contain_text(o1)
    shoot(pg, screenshots, "picklists")
    pg.goto(f"/orders/{o1}")

    # 2. Pack allocated order: packed lines of 25 and 22; the backorder of 3 remains.
    pg.locator("#act-pack").get_by_role("button", name="Pack").click()
    expect(pg.locator("#act-pack .ok")).to_contain_text("packed: 47 unit(s)")
    expect(cell(pg, "1", "packed")).to_have_text("25")
    expect(cell(pg, "2", "packed")).to_have_text("22")
    expect(cell(pg, "2", "backordered")).to_have_text("3")
    shoot(pg, screenshots, "order-detail")

    # 3. A goods receipt of 100 SELF-TAP: the order page, left open, shows the backorder allocated.
    order_page = pg.context.new_page()
    order_page.goto(f"/orders/{o1}")
    expect(cell(order_page, "2", "backordered")).to_have_text("3")
    pg.goto(f"/stock?sku={tap}")
    receive(pg, loc, f"GRN-C-{run}", tap, 100, "B-01", "")
    expect(cell(order_page, "2", "allocated")).to_have_text("3")  # live: no reload
    expect(cell(order_page, "2", "backordered")).to_have_text("0")
    shoot(pg, screenshots, "stock")

    # 4. Pack again: a packed line of 3; order 1 fully packed.
    order_page.locator("#act-pack").get_by_role("button", name="Pack").click()
    expect(order_page.locator("#act-pack .ok")).to_contain_text("packed: 3 unit(s)")
    expect(cell(order_page, "2", "packed")).to_have_text("25")
    expect(order_page.locator("#order-status")).to_have_text("packed")
    order_page.close()

    # 5. Order 2: 10 BRASS-SCREW with 5 available: 5 allocated (lot B), 5 backordered.
    o2 = place_order(api, f"console-2-{run}", [(brass, 10)])
    pg.goto("/orders")
    pg.get_by_label("Open order by id").fill(o2)
    pg.get_by_role("button", name="Open").click()
    expect(cell(pg, "1", "allocated")).to_have_text("5")
    expect(cell(pg, "1", "backordered")).to_have_text("5")
    expect(pg.locator("#allocations tr[data-line='1'][data-lot='B'] td[data-q='qty']")).to_have_text("5")
    # Waiting for stock: the orders list filtered by status (the "oldest first" panel shows the
    # 20 oldest of the whole system, which other tests of the session fill with their own).
    pg.goto("/orders?status=partially_allocated")
    expect(pg.locator(f"#orders a[href='/orders/{o2}']")).to_be_visible()
    shoot(pg, screenshots, "orders")
    pg.goto(f"/orders/{o2}")

    # 6. Remove order 2's allocation lines: 10 backordered, on hold; 5 available again.
    deallocate = pg.locator("#act-deallocate")
    deallocate.get_by_label(f"line 1: {brass}").check()
    deallocate.get_by_role("button", name="Remove allocations").click()
    expect(pg.locator("#act-deallocate .ok")).to_contain_text("on hold")
    expect(cell(pg, "1", "backordered")).to_have_text("10")
    expect(cell(pg, "1", "allocated")).to_have_text("0")
    expect(cell(pg, "1", "on_hold")).to_have_text("on hold")
    expect_available(pg, brass, 5)
    shoot(pg, screenshots, "availability")

    # 7. Cancel order 2's line: 10 cancelled; BRASS-SCREW has 5 available.
    pg.goto(f"/orders/{o2}")
    cancel = pg.locator("#act-cancel")
    cancel.get_by_label(f"line 1: {brass}").check()
    cancel.get_by_role("button", name="Cancel ticked lines").click()
    expect(pg.locator("#act-cancel .ok")).to_contain_text("Cancellation of line(s) 1 requested")
    expect(cell(pg, "1", "cancelled")).to_have_text("10")
    expect(cell(pg, "1", "backordered")).to_have_text("0")
    expect(pg.locator("#order-status")).to_have_text("cancelled")
    expect_available(pg, brass, 5)

    pg.goto("/orders")
    expect(pg.locator("td[data-channel='web'][data-status='packed']")).not_to_have_text("0")
    pg.set_viewport_size({"width": 390, "height": 844})  # phone width
    pg.goto(f"/orders/{o1}")
    expect(cell(pg, "1", "packed")).to_have_text("25")
    shoot(pg, screenshots, "order-detail-phone")
