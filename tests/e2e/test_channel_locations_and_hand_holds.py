"""Issue 11 through the four running services: a channel rule restricting an order to one
location (its ids checked with inventory over HTTP) decides where allocation takes the stock
and is named in the explanation; a hand hold of the allocated order stops its packing until
staff release it; the sales report counts it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from services.cli.launcher import System

pytestmark = pytest.mark.e2e
STAFF = {"Authorization": "Bearer dev-admin-token"}


def _until(what: str, probe: Callable[[], Any], ok: Callable[[Any], bool], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = probe()
        if ok(value):
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last seen: {value}")


def test_a_location_rule_and_a_hand_hold_act_on_a_running_system(system: System) -> None:
    run = uuid.uuid4().hex[:6]
    sku, first, second = f"LR-{run}", f"WH-LR1-{run}", f"WH-LR2-{run}"
    http = httpx.Client(timeout=15, headers=STAFF)

    def call(method: str, service: str, path: str, **kw: Any) -> httpx.Response:
        return http.request(method, system.url(service) + path, **kw)

    def ok(method: str, service: str, path: str, **kw: Any) -> Any:
        resp = call(method, service, path, **kw)
        assert resp.status_code < 400, f"{method} {service}{path} -> {resp.status_code}: {resp.text}"
        return resp.json() if resp.content else None

    for lid, priority in ((first, 9), (second, 1)):  # the first ranks first on its own
        ok("POST", "inventory", "/v1/locations", json={"location_id": lid, "name": lid, "country": "DE",
                                                      "priority": priority})
        ok("POST", "inventory", "/v1/receipts", json={"location_id": lid, "reference": f"GRN-{lid}",
                                                     "lines": [{"sku": sku, "bin": "A-01", "qty": 5}]})
    _until("allocation to see the stock", lambda: ok("GET", "allocation", "/v1/reports/stock", params={"sku": sku}),
           lambda rows: rows and rows[0]["on_hand"] == 10)
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
    view = _until("the order allocated", lambda: call("GET", "allocation", f"/v1/allocations/{order_id}"),
                  lambda r: r.status_code == 200 and r.json()["allocations"]).json()
    assert [(a["location_id"], a["qty"]) for a in view["allocations"]] == [(second, 2)]
    assert f"allowed by rule 'only {second}' ({rule['rule_id']})" in view["allocations"][0]["explanation"]

    ok("POST", "order_intake", f"/v1/orders/{order_id}/hold", json={"reason": "check the address"})
    _until("the hold to reach allocation", lambda: ok("GET", "order_intake", f"/v1/orders/{order_id}"),
           lambda o: o["status"] == "on_hold")
    refused = call("POST", "fulfillment", f"/v1/orders/{order_id}/pack", json={})
    assert refused.status_code == 409 and "order on hold: check the address" in refused.text

    ok("POST", "order_intake", f"/v1/orders/{order_id}/release-hold")
    _until("the release to reach allocation", lambda: ok("GET", "order_intake", f"/v1/orders/{order_id}"),
           lambda o: o["status"] == "allocated")
    assert ok("POST", "fulfillment", f"/v1/orders/{order_id}/pack", json={})["status"] == "packed"

    day = datetime.now(UTC).date().isoformat()
    sales = ok("GET", "order_intake", "/v1/reports/sales", params={"group_by": "sku", "date_from": day, "date_to": day})
    [row] = [r for r in sales["rows"] if r["key"] == sku]
    assert (row["ordered"], row["allocated"]) == ({"units": 2, "value": "6.00"}, {"units": 2, "value": "6.00"})
