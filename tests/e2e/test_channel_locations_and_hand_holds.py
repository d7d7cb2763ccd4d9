"""Issue 11 through the four running services: a channel rule restricting an order to one
location (its ids checked with inventory over HTTP) decides where allocation takes the stock
and is named in the explanation; a hand hold of the allocated order stops its packing until
staff release it; the sales report counts it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from staff_client import StaffClient, until

pytestmark = pytest.mark.e2e


def test_a_location_rule_and_a_hand_hold_act_on_a_running_system(staff: StaffClient) -> None:
    run = uuid.uuid4().hex[:6]
    sku, first, second = f"LR-{run}", f"WH-LR1-{run}", f"WH-LR2-{run}"
    call, ok = staff.call, staff.ok

    for lid, priority in ((first, 9), (second, 1)):  # the first ranks first on its own
        ok("POST", "inventory", "/v1/locations", json={"location_id": lid, "name": lid, "country": "DE",
                                                      "priority": priority})
        ok("POST", "inventory", "/v1/receipts", json={"location_id": lid, "reference": f"GRN-{lid}",
                                                     "lines": [{"sku": sku, "bin": "A-01", "qty": 5}]})
    until("allocation to see the stock", lambda: staff.on_hand(sku), lambda n: n == 10)
    unknown = call("POST", "order_intake", "/v1/rules", json={
        "name": f"only {second}", "conditions": {"skus": [sku]}, "actions": {"restrict_locations": [f"NOPE-{run}"]}})
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["field"] == "actions.restrict_locations.0"
    rule = ok("POST", "order_intake", "/v1/rules", json={
        "name": f"only {second}", "conditions": {"skus": [sku]}, "actions": {"restrict_locations": [second]}})
    try:
        order_id = ok("POST", "order_intake", "/v1/orders", headers={"X-API-Key": "dev-key"}, json={
            "channel": "web", "external_id": f"lr-{run}", "placed_at": datetime.now(UTC).isoformat(),
            "currency": "EUR", "ship_to": {"country": "DE"},
            "lines": [{"line_id": "1", "sku": sku, "qty": 2, "unit_price": "3.00"}]})["order_id"]
    finally:
        ok("DELETE", "order_intake", f"/v1/rules/{rule['rule_id']}")
    view = until("the order allocated", lambda: call("GET", "allocation", f"/v1/allocations/{order_id}"),
                 lambda r: r.status_code == 200 and r.json()["allocations"]).json()
    assert [(a["location_id"], a["qty"]) for a in view["allocations"]] == [(second, 2)]
    assert f"allowed by rule 'only {second}' ({rule['rule_id']})" in view["allocations"][0]["explanation"]

    ok("POST", "order_intake", f"/v1/orders/{order_id}/hold", json={"reason": "check the address"})
    until("the hold to reach allocation", lambda: ok("GET", "order_intake", f"/v1/orders/{order_id}"),
          lambda o: o["status"] == "on_hold")
    refused = staff.pack(order_id, {})
    assert refused.status_code == 409 and "order on hold: check the address" in refused.text

    ok("POST", "order_intake", f"/v1/orders/{order_id}/release-hold")
    until("the release to reach allocation", lambda: ok("GET", "order_intake", f"/v1/orders/{order_id}"),
          lambda o: o["status"] == "allocated")
    assert ok("POST", "fulfillment", f"/v1/orders/{order_id}/pack", json={})["status"] == "packed"

    day = datetime.now(UTC).date().isoformat()
    sales = ok("GET", "order_intake", "/v1/reports/sales", params={"group_by": "sku", "date_from": day, "date_to": day})
    [row] = [r for r in sales["rows"] if r["key"] == sku]
    assert (row["ordered"], row["allocated"]) == ({"units": 2, "value": "6.00"}, {"units": 2, "value": "6.00"})
