"""More order actions from the order page: move units to another order's backorder (a refusal
first), remove allocations and release the hold, change a quantity."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.e2e


def _place(api: httpx.Client, sku: str, qty: int) -> str:
    body = {"channel": "web", "external_id": f"actions-{uuid.uuid4().hex[:8]}", "placed_at": "2026-01-01T00:00:00Z",
            "currency": "EUR", "customer": {"name": "c"}, "ship_to": {"country": "DE"},
            "lines": [{"line_id": "1", "sku": sku, "qty": qty, "unit_price": "1.00"}]}
    resp = api.post(api.base_urls["order_intake"] + "/v1/orders", json=body, headers={"X-API-Key": "dev-key"})  # type: ignore[attr-defined]
    assert resp.status_code == 201, resp.text
    return str(resp.json()["order_id"])


def _line(pg: Any, state: str) -> Any:
    return pg.locator(f"#lines tr[data-line='1'] td[data-q='{state}']")


def test_move_hold_release_and_change_quantity_from_the_order_page(page: Any, api: httpx.Client) -> None:
    from playwright.sync_api import expect

    run = uuid.uuid4().hex[:6]
    loc, sku = f"ACT-{run}", f"MOVED-{run}"
    inv = api.base_urls["inventory"]  # type: ignore[attr-defined]
    assert api.post(inv + "/v1/locations", json={"location_id": loc, "name": "Actions", "country": "DE"}).status_code in (200, 201)
    assert api.post(inv + "/v1/receipts", json={"location_id": loc, "reference": f"G-{run}",
                                                "lines": [{"sku": sku, "bin": "M-01", "qty": 6}]}).status_code == 201
    first = _place(api, sku, 4)
    pg = page
    pg.goto(f"/orders/{first}")
    expect(_line(pg, "allocated")).to_have_text("4")
    second = _place(api, sku, 4)
    pg.goto(f"/orders/{second}")
    expect(_line(pg, "backordered")).to_have_text("2")

    pg.goto(f"/orders/{first}")
    move = pg.locator("#act-move")
    move.get_by_label("To order").fill(second)
    move.get_by_label("Quantity").fill("3")
    move.get_by_role("button", name="Move").click()
    expect(pg.locator("#act-move [data-error-for='qty']")).to_contain_text(f"qty: order {second} has only 2 {sku} backordered")
    move = pg.locator("#act-move")
    move.get_by_label("Quantity").fill("2")
    move.get_by_role("button", name="Move").click()
    expect(pg.locator("#act-move .ok")).to_contain_text(f"Moved 2 {sku} to order {second}")
    expect(_line(pg, "allocated")).to_have_text("2")

    hold = pg.locator("#act-deallocate")
    hold.get_by_label(f"line 1: {sku}").check()
    hold.get_by_role("button", name="Remove allocations").click()
    expect(_line(pg, "on_hold")).to_have_text("on hold")
    expect(_line(pg, "backordered")).to_have_text("4")
    pg.locator("#act-release").get_by_role("button", name="Release hold").click()
    expect(pg.locator("#act-release .ok")).to_contain_text("Hold released")
    expect(_line(pg, "on_hold")).to_have_text("")

    change = pg.locator("#act-change")
    change.get_by_label("New quantity").fill("1")
    change.get_by_role("button", name="Change quantity").click()
    expect(pg.locator("#act-change .ok")).to_contain_text("new quantity 1 requested")
    expect(_line(pg, "qty")).to_have_text("1")

    pg.goto(f"/orders/{second}")
    expect(_line(pg, "allocated")).to_have_text("4")
    expect(_line(pg, "backordered")).to_have_text("0")


def test_an_order_a_channel_rule_holds_is_shown_held_and_released_from_the_order_page(page: Any, api: httpx.Client) -> None:
    from playwright.sync_api import expect

    run = uuid.uuid4().hex[:6]
    sku = f"REVIEW-{run}"
    intake = api.base_urls["order_intake"]  # type: ignore[attr-defined]
    rule = api.post(intake + "/v1/rules", json={"name": f"review {sku}", "conditions": {"skus": [sku]},
                                                 "actions": {"hold": True, "priority": 7}})
    assert rule.status_code == 201, rule.text
    try:
        order_id = _place(api, sku, 2)
    finally:
        api.delete(intake + f"/v1/rules/{rule.json()['rule_id']}")
    pg = page
    pg.goto(f"/orders/{order_id}")
    expect(pg.locator("#order-status")).to_have_text("held")
    expect(pg.locator("#intake-hold")).to_contain_text(f"review {sku}")
    expect(pg.locator("#order-rules")).to_contain_text("held for review; priority 0 -> 7")
    pg.locator("#act-release").get_by_role("button", name="Release hold").click()
    expect(pg.locator("#act-release .ok")).to_contain_text("announced to allocation (1 event(s))")
    expect(_line(pg, "backordered")).to_have_text("2")  # allocation has it now (no stock of this SKU)
    expect(pg.locator("#intake-hold")).to_have_count(0)
