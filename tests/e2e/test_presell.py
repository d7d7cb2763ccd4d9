"""Issue 10 part 1 through the four running services on the real broker and PostgreSQL: a
purchase order created in inventory reaches allocation over oms.inventory.v1, a channel that may
pre-sell gets its shortfall promised (the order view at intake shows the promised date, the pick
list leaves it out, packing takes only the shelf unit), and booking the receipt against the
purchase order turns the promise into an allocation."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from staff_client import StaffClient, until

pytestmark = pytest.mark.e2e


def test_pre_sold_line_shows_its_promise_is_not_picked_and_is_allocated_by_the_receipt(staff: StaffClient) -> None:
    run = uuid.uuid4().hex[:6]
    sku, loc, channel = f"PRE-{run}", f"WH-PRE-{run}", f"presell-{run}"
    expected = (datetime.now(UTC).date() + timedelta(days=2)).isoformat()
    ok = staff.ok

    def line(order_id: str) -> dict[str, Any]:
        return staff.order_lines(order_id).get("1", {})

    ok("POST", "inventory", "/v1/locations", json={"location_id": loc, "name": "pre-sell", "country": "DE"})
    ok("POST", "inventory", "/v1/receipts", json={"location_id": loc, "reference": f"GRN-{run}",
                                                  "lines": [{"sku": sku, "bin": "A-01", "qty": 1}]})
    until("allocation to see the stock", lambda: staff.on_hand(sku), lambda v: v == 1)
    ok("PUT", "allocation", "/v1/policy", json={"channel": channel, "presell": [{"sku": sku, "cap": 10}]})
    po = ok("POST", "inventory", "/v1/purchase-orders", json={
        "sku": sku, "location_id": loc, "qty": 4, "expected_date": expected})["purchase_order_id"]

    order_id = ok("POST", "order_intake", "/v1/orders", headers={"X-API-Key": "dev-key"}, json={
        "channel": channel, "external_id": f"pre-{run}", "placed_at": datetime.now(UTC).isoformat(),
        "currency": "EUR", "ship_to": {"country": "DE"},
        "lines": [{"line_id": "1", "sku": sku, "qty": 3, "unit_price": "1.00"}]})["order_id"]
    promised = until("the shortfall pre-sold", lambda: line(order_id),
                     lambda ln: (ln.get("backorder_reason") or "").startswith("pre-sold"))
    assert (promised["allocated"], promised["backordered"]) == (1, 2)
    assert promised["backorder_reason"].startswith(f"pre-sold: 2 against purchase order {po} at {loc}, promised {expected}")

    def picks() -> list[dict[str, Any]]:
        lists = ok("GET", "fulfillment", "/v1/picklists", params={"location_id": loc})
        return [t for pl in lists for row in pl["rows"] for t in row["orders"] if t["order_id"] == order_id]

    # fulfillment hears of the result on its own, maybe after intake did
    mine = until("the order on fulfillment's pick list", picks, bool)
    assert [t["qty"] for t in mine] == [1]  # the unit on the shelf; the pre-sold ones are not picked

    ok("POST", "inventory", f"/v1/purchase-orders/{po}/receipts", json={"reference": f"GRN-PO-{run}", "bin": "B-01",
                                                                         "qty": 4})
    final = until("the receipt to allocate the pre-sold units", lambda: line(order_id),
                  lambda ln: ln.get("allocated") == 3)
    assert (final["backordered"], final["backorder_reason"]) == (0, None)
    view = ok("GET", "allocation", f"/v1/allocations/{order_id}")
    assert view["presales"] == []
