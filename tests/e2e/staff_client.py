"""What the end-to-end tests do against the running system as staff: call a service's HTTP API
(the development admin token), read what a user reads there, and wait until a value shows up."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from services.cli.launcher import System

STAFF = {"Authorization": "Bearer dev-admin-token"}


def until(what: str, probe: Callable[[], Any], ok: Callable[[Any], bool], timeout: float = 60) -> Any:
    """``probe()`` every 0.1 s until ``ok`` holds for its value; that value (fails after ``timeout``)."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = probe()
        if ok(value):
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last seen: {value}")


class StaffClient:
    def __init__(self, system: System) -> None:
        self.system = system
        self.http = httpx.Client(timeout=15, headers=STAFF)

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, service: str, path: str, **kw: Any) -> httpx.Response:
        return self.http.request(method, self.system.url(service) + path, **kw)

    def ok(self, method: str, service: str, path: str, **kw: Any) -> Any:
        """The answer's JSON, asserting the call succeeded."""
        resp = self.call(method, service, path, **kw)
        assert resp.status_code < 400, f"{method} {service}{path} -> {resp.status_code}: {resp.text}"
        return resp.json() if resp.content else None

    def order_lines(self, order_id: str) -> dict[str, dict[str, Any]]:
        """Order intake's view of the order's lines by line id ({} until intake has the order)."""
        resp = self.call("GET", "order_intake", f"/v1/orders/{order_id}")
        return {ln["line_id"]: ln for ln in resp.json()["lines"]} if resp.status_code == 200 else {}

    def stock_report(self, sku: str) -> list[dict[str, Any]]:
        """Allocation's stock report rows of one SKU (none until allocation has heard of it)."""
        return list(self.ok("GET", "allocation", "/v1/reports/stock", params={"sku": sku}))

    def on_hand(self, sku: str) -> int:
        """Units of ``sku`` on hand as allocation sees them (0 until it has heard of the SKU)."""
        rows = self.stock_report(sku)
        return int(rows[0]["on_hand"]) if rows else 0

    def pack(self, order_id: str, body: dict[str, Any], timeout: float = 60) -> httpx.Response:
        """Ask fulfillment to pack, once it has heard of the order: it learns of allocation results
        on its own, maybe after order intake did, and until then answers 404 (changing nothing)."""
        return until(f"fulfillment to know order {order_id}",
                     lambda: self.call("POST", "fulfillment", f"/v1/orders/{order_id}/pack", json=body),
                     lambda resp: resp.status_code != 404, timeout)
