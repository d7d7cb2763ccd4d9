"""The walkthrough of SPEC section 8, played against a running system through its public HTTP
interfaces. Each step waits for the system to settle, prints what it sees, and checks it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from services.cli.launcher import STAFF_HEADERS


class WalkthroughMismatch(AssertionError):
    """The system's answer differs from what SPEC section 8 says."""


class Walkthrough:
    def __init__(self, urls: dict[str, str], say: Callable[[str], None] = print, timeout: float = 30.0,
                 api_key: str = "dev-key", unique_names: bool = True) -> None:
        self.urls = urls
        self.say = say
        self.timeout = timeout
        self.http = httpx.Client(timeout=15.0, headers=STAFF_HEADERS)  # staff routes need a token
        self.headers = {"X-API-Key": api_key}
        # On a system that already holds data, suffix names so the walkthrough starts from nothing.
        self.run_id = uuid.uuid4().hex[:6]
        self.suffix = f"-{self.run_id}" if unique_names else ""
        self.results: dict[str, Any] = {}

    # --- helpers ----------------------------------------------------------------------------
    def _call(self, method: str, service: str, path: str, **kw: Any) -> Any:
        resp = self.http.request(method, self.urls[service] + path, **kw)
        if resp.status_code >= 400:
            raise WalkthroughMismatch(f"{method} {service}{path} -> {resp.status_code}: {resp.text}")
        return resp.json() if resp.content else None

    def _until(self, what: str, probe: Callable[[], Any], ok: Callable[[Any], bool]) -> Any:
        deadline = time.monotonic() + self.timeout
        value = None
        while time.monotonic() < deadline:
            value = probe()
            if ok(value):
                return value
            time.sleep(0.1)
        raise WalkthroughMismatch(f"timed out waiting for {what}; last seen: {value}")

    def order(self, order_id: str) -> dict[str, Any]:
        return self._call("GET", "order_intake", f"/v1/orders/{order_id}")

    def line(self, order: dict[str, Any], sku: str) -> dict[str, Any]:
        return next(ln for ln in order["lines"] if ln["sku"] == sku)

    def available(self, sku: str) -> int:
        report = self._call("GET", "allocation", "/v1/reports/stock", params={"sku": sku})
        rows = report if isinstance(report, list) else report.get("skus", [report])
        row = next(r for r in rows if r["sku"] == sku)
        return int(row["available"])

    def place(self, external_id: str, lines: list[tuple[str, int]]) -> str:
        body = {
            "channel": "web",
            "external_id": f"{external_id}-{self.run_id}",
            "placed_at": datetime.now(UTC).isoformat(),
            "currency": "EUR",
            "customer": {"name": "Walkthrough customer"},
            "ship_to": {"country": "DE", "postal_code": "10115", "lat": 52.53, "lon": 13.38},
            "lines": [{"line_id": str(i + 1), "sku": sku, "qty": qty, "unit_price": "0.12"}
                      for i, (sku, qty) in enumerate(lines)],
        }
        return self._call("POST", "order_intake", "/v1/orders", json=body, headers=self.headers)["order_id"]

    def settled(self, order_id: str, check: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        return self._until(what, lambda: self.order(order_id), check)

    def show(self, order: dict[str, Any]) -> None:
        for ln in order["lines"]:
            parts = [f"{k} {ln[k]}" for k in ("allocated", "backordered", "packed", "shipped", "cancelled") if ln[k]]
            hold = " (on hold)" if ln["on_hold"] and ln["backordered"] else ""
            self.say(f"      {ln['sku']:<12} qty {ln['qty']:>3}: " + ", ".join(parts) + hold)

    def _say_shipment(self, shipment: dict[str, Any]) -> None:
        per_sku: dict[str, int] = {}
        for ln in shipment.get("lines", []):
            per_sku[ln["sku"]] = per_sku.get(ln["sku"], 0) + int(ln["qty"])
        self.say(f"      shipment {shipment.get('shipment_id')} ({shipment.get('status')}): "
                 + ", ".join(f"{sku} x{qty}" for sku, qty in per_sku.items()))

    def check(self, condition: bool, message: str) -> None:
        if not condition:
            raise WalkthroughMismatch(message)

    # --- the walkthrough ----------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        s = self.run_id
        brass, tap, loc = f"BRASS-SCREW{self.suffix}", f"SELF-TAP{self.suffix}", f"WH{self.suffix or '-1'}"
        self.say(f"Setup: one location {loc}; {brass} 15 in lot A (received first) and 15 in lot B; {tap} 22")
        self._call("POST", "inventory", "/v1/locations", json={
            "location_id": loc, "name": "Walkthrough warehouse", "kind": "warehouse", "country": "DE",
            "lat": 52.52, "lon": 13.40, "ships_to": ["DE"], "priority": 1, "active": True})
        self._call("POST", "inventory", "/v1/receipts", json={"location_id": loc, "reference": f"GRN-A-{s}", "lines": [
            {"sku": brass, "bin": "A-01", "lot": "A", "qty": 15, "received_at": "2026-01-05T08:00:00Z"}]})
        self._call("POST", "inventory", "/v1/receipts", json={"location_id": loc, "reference": f"GRN-B-{s}", "lines": [
            {"sku": brass, "bin": "A-02", "lot": "B", "qty": 15, "received_at": "2026-02-05T08:00:00Z"},
            {"sku": tap, "bin": "B-01", "lot": "", "qty": 22, "received_at": "2026-02-05T08:00:00Z"}]})
        self._until("allocation to see the stock", lambda: (self.available(brass), self.available(tap)),
                    lambda v: v == (30, 22))

        self.say(f"1. Order 1 arrives: 25 {brass}, 25 {tap}")
        o1 = self.place("walkthrough-1", [(brass, 25), (tap, 25)])
        order = self.settled(o1, lambda o: self.line(o, tap)["backordered"] == 3 and self.line(o, brass)["allocated"] == 25,
                             "order 1 allocated")
        self.show(order)
        alloc = self._call("GET", "allocation", f"/v1/allocations/{o1}")
        lots = sorted((a["lot"], a["qty"]) for a in alloc["allocations"] if a["sku"] == brass)
        self.say(f"      {brass} lots: " + ", ".join(f"{q} from lot {lot}" for lot, q in lots))
        self.check(lots == [("A", 15), ("B", 10)], f"expected 15 from lot A and 10 from lot B, got {lots}")
        self.check(self.line(order, tap)["allocated"] == 22, "SELF-TAP: 22 allocated")

        self.say("2. Pack allocated order")
        packed = self._call("POST", "fulfillment", f"/v1/orders/{o1}/pack", json={})
        self._say_shipment(packed)
        order = self.settled(o1, lambda o: self.line(o, brass)["packed"] == 25 and self.line(o, tap)["packed"] == 22,
                             "order 1 packed 25 and 22")
        self.say("      packed lines of 25 and 22; the backorder of 3 remains")
        self.show(order)
        self.check(self.line(order, tap)["backordered"] == 3, "backorder of 3 remains")

        self.say(f"3. A goods receipt of 100 {tap} arrives")
        self._call("POST", "inventory", "/v1/receipts", json={"location_id": loc, "reference": f"GRN-C-{s}", "lines": [
            {"sku": tap, "bin": "B-01", "lot": "", "qty": 100}]})
        order = self.settled(o1, lambda o: self.line(o, tap)["allocated"] == 3 and self.line(o, tap)["backordered"] == 0,
                             "the backorder of 3 allocated")
        self.show(order)

        self.say("4. Pack again")
        self._say_shipment(self._call("POST", "fulfillment", f"/v1/orders/{o1}/pack", json={}))
        order = self.settled(o1, lambda o: self.line(o, tap)["packed"] == 25, "order 1 fully packed")
        self.show(order)
        self.check(order["status"] == "packed", f"order 1 status packed, got {order['status']}")
        self.say("      order 1 is fully packed")

        self.say(f"5. Order 2 arrives: 10 {brass}, with 5 available")
        o2 = self.place("walkthrough-2", [(brass, 10)])
        order = self.settled(o2, lambda o: self.line(o, brass)["allocated"] == 5 and self.line(o, brass)["backordered"] == 5,
                             "order 2: 5 allocated, 5 backordered")
        alloc = self._call("GET", "allocation", f"/v1/allocations/{o2}")
        lots = sorted((a["lot"], a["qty"]) for a in alloc["allocations"])
        self.check(lots == [("B", 5)], f"expected 5 from lot B, got {lots}")
        self.show(order)
        self.say("      5 allocated from lot B, 5 backordered")

        self.say("6. Remove order 2's allocation lines")
        self._call("POST", "allocation", f"/v1/orders/{o2}/deallocate", json={"line_ids": ["1"]})
        order = self.settled(o2, lambda o: self.line(o, brass)["backordered"] == 10 and self.line(o, brass)["on_hold"],
                             "order 2 line: 10 backordered, on hold")
        self.show(order)
        avail = self._until("5 available again", lambda: self.available(brass), lambda v: v == 5)
        self.say(f"      {brass} available: {avail}; the line is on hold, so nothing is refilled")

        self.say("7. Cancel order 2's line")
        self._call("POST", "order_intake", f"/v1/orders/{o2}/cancel", json={"line_ids": ["1"]})
        order = self.settled(o2, lambda o: self.line(o, brass)["cancelled"] == 10, "order 2 line: 10 cancelled")
        self.show(order)
        avail = self._until("5 available", lambda: self.available(brass), lambda v: v == 5)
        self.say(f"      {brass} available: {avail}")
        self.say("Walkthrough matches SPEC section 8.")
        self.results = {"order_1": self.order(o1), "order_2": self.order(o2), "brass_available": avail,
                        "skus": {"brass": brass, "tap": tap}}
        return self.results
