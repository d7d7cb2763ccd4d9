"""Issue 8, defects 1 and 2 through the four running services: an order with a shipped line can
still be re-allocated and cancelled (the shipped line stays shipped in the order view), and a
return goes back to a location the line shipped from, where inventory books it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from staff_client import StaffClient, until

pytestmark = pytest.mark.e2e


def test_partly_shipped_order_is_reallocated_cancelled_and_returned(staff: StaffClient) -> None:
    run = uuid.uuid4().hex[:6]
    a, b, loc = f"PS-A-{run}", f"PS-B-{run}", f"WH-PS-{run}"
    call, ok, lines, on_hand = staff.call, staff.ok, staff.order_lines, staff.on_hand

    ok("POST", "inventory", "/v1/locations", json={"location_id": loc, "name": "partly shipped", "country": "DE"})
    ok("POST", "inventory", "/v1/receipts", json={"location_id": loc, "reference": f"GRN-{run}", "lines": [
        {"sku": a, "bin": "A-01", "qty": 10}, {"sku": b, "bin": "B-01", "qty": 10}]})
    until("allocation to see the stock", lambda: (on_hand(a), on_hand(b)), lambda v: v == (10, 10))
    order_id = ok("POST", "order_intake", "/v1/orders", headers={"X-API-Key": "dev-key"}, json={
        "channel": "web", "external_id": f"ps-{run}", "placed_at": datetime.now(UTC).isoformat(), "currency": "EUR",
        "ship_to": {"country": "DE"},
        "lines": [{"line_id": "1", "sku": a, "qty": 2, "unit_price": "1.00"},
                  {"line_id": "2", "sku": b, "qty": 3, "unit_price": "1.00"}]})["order_id"]
    until("the order allocated", lambda: lines(order_id),
          lambda ls: ls and ls["1"]["allocated"] == 2 and ls["2"]["allocated"] == 3)

    shipment = staff.pack(order_id, {"line_ids": ["1"]}).json()
    assert shipment["status"] == "packed"
    ok("POST", "fulfillment", f"/v1/shipments/{shipment['shipment_id']}/ship",
       json={"carrier": "UPS", "tracking_number": f"1Z{run}"})
    until("line 1 shipped", lambda: lines(order_id), lambda ls: ls["1"]["shipped"] == 2)

    # It answered 500: the shipped line was rebuilt as zeros.
    resp = call("POST", "allocation", f"/v1/orders/{order_id}/reallocate", json={"location_id": loc})
    assert resp.status_code == 200, resp.text
    # It was dead-lettered by allocation: line 2 stayed allocated.
    assert call("POST", "order_intake", f"/v1/orders/{order_id}/cancel", json={}).status_code == 202
    final = until("line 2 cancelled", lambda: lines(order_id), lambda ls: ls["2"]["cancelled"] == 3)
    assert (final["1"]["shipped"], final["1"]["cancelled"], final["2"]["allocated"]) == (2, 0, 0)

    resp = call("POST", "fulfillment", "/v1/returns", json={"order_id": order_id, "lines": [
        {"line_id": "1", "qty": 1, "condition": "sellable", "location_id": f"NOWHERE-{run}", "bin": "A-01"}]})
    assert resp.status_code == 422 and [d["field"] for d in resp.json()["detail"]] == ["lines.0.location_id"]
    ok("POST", "fulfillment", "/v1/returns", json={"order_id": order_id, "lines": [
        {"line_id": "1", "qty": 1, "condition": "sellable", "location_id": loc, "bin": "A-01"}]})
    until("the returned unit on hand again", lambda: on_hand(a), lambda n: n == 9)
