"""Dropship suppliers through the four running services over the real broker: the supplier's
stated stock set over HTTP reaches allocation, a line no own location can fill goes to the
supplier, fulfillment publishes DropshipRequested on oms.dropship.v1 (lines, ship-to,
reference), the supplier's confirmation ships the lines (order view shows shipped, the stated
stock falls), and a refusal releases another order's lines to be allocated again."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from staff_client import StaffClient, until

from services.cli.launcher import System

pytestmark = pytest.mark.e2e


def read_topic(bootstrap: str, topic: str, *, key: str, match: Callable[[Any], bool]) -> bytes:
    """The first record of ``topic`` with ``key`` whose decoded value ``match``es (up to a minute)."""
    async def read() -> bytes:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"t-{uuid.uuid4().hex}",
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        try:
            for _ in range(240):  # returns as soon as it arrives
                for records in (await consumer.getmany(timeout_ms=250)).values():
                    for r in records:
                        if r.key == key.encode() and match(orjson.loads(r.value)):
                            return bytes(r.value)
        finally:
            await consumer.stop()
        raise AssertionError(f"no matching record with key {key} on {topic}")
    return asyncio.run(read())


def test_a_supplier_ships_what_own_stock_cannot_and_a_refusal_is_allocated_again(system: System, staff: StaffClient) -> None:
    run = uuid.uuid4().hex[:6]
    sku, wh, sup = f"DS-{run}", f"WH-DS-{run}", f"SUP-DS-{run}"
    call, ok = staff.call, staff.ok

    def line(order_id: str) -> dict[str, Any]:
        return staff.order_lines(order_id).get("1", {})

    def on_hand(location_id: str) -> int:
        resp = call("GET", "inventory", f"/v1/stock/{sku}")
        if resp.status_code != 200:
            return -1
        return sum(p["on_hand"] for p in resp.json()["positions"] if p["location_id"] == location_id)

    def requested(order_id: str) -> Callable[[], list[dict[str, Any]]]:
        """The order's requests sent to the supplier."""
        return lambda: [r for r in ok("GET", "fulfillment", "/v1/dropship-requests", params={"location_id": sup})
                        if r["order_id"] == order_id and r["status"] == "requested"]

    def place(qty: int) -> str:
        return str(ok("POST", "order_intake", "/v1/orders", headers={"X-API-Key": "dev-key"}, json={
            "channel": "web", "external_id": f"ds-{run}-{qty}", "placed_at": datetime.now(UTC).isoformat(),
            "currency": "EUR", "ship_to": {"country": "DE", "postal_code": "20095", "city": "Hamburg"},
            "lines": [{"line_id": "1", "sku": sku, "qty": qty, "unit_price": "5.00"}]})["order_id"])

    ok("POST", "inventory", "/v1/locations", json={"location_id": wh, "name": "own", "country": "DE"})
    ok("POST", "inventory", "/v1/locations", json={"location_id": sup, "name": "supplier", "country": "DE",
                                                   "kind": "dropship"})
    ok("POST", "inventory", "/v1/receipts", json={"location_id": wh, "reference": f"GRN-{run}",
                                                  "lines": [{"sku": sku, "bin": "A-01", "qty": 1}]})
    ok("PUT", "inventory", f"/v1/locations/{sup}/supplier-stock", json={"lines": [{"sku": sku, "qty": 6}]})
    until("allocation to see the stock", lambda: staff.on_hand(sku), lambda n: n == 7)

    first = place(3)  # 1 from our warehouse, 2 from the supplier
    [request] = until("a dropship request sent", requested(first), bool)
    assert (request["order_id"], [(ln["sku"], ln["qty"]) for ln in request["lines"]]) == (first, [(sku, 2)])
    published = read_topic(system.kafka_bootstrap, "oms.dropship.v1", key=sup,
                           match=lambda v: v["data"]["request_id"] == request["request_id"])
    data = orjson.loads(published)["data"]
    assert (data["order_id"], data["reference"], data["ship_to"]["city"]) == (first, request["request_id"], "Hamburg")
    assert [(ln["line_id"], ln["qty"]) for ln in data["lines"]] == [("1", 2)]

    # Below what is requested from it: refused naming the field, the stated stock unchanged.
    resp = call("PUT", "inventory", f"/v1/locations/{sup}/supplier-stock", json={"lines": [{"sku": sku, "qty": 1}]})
    assert resp.status_code == 422 and [d["field"] for d in resp.json()["detail"]] == ["lines.0.qty"]

    ok("POST", "fulfillment", f"/v1/dropship-requests/{request['request_id']}/confirm",
       json={"carrier": "DHL", "tracking_number": f"JD{run}"})
    done = until("the supplier's lines shipped", lambda: line(first), lambda ln: ln.get("shipped") == 2)
    assert (done["allocated"], done["shipped"], done["backordered"]) == (1, 2, 0)
    until("the stated stock down by what shipped", lambda: on_hand(sup), lambda n: n == 4)
    resp = call("POST", "fulfillment", f"/v1/dropship-requests/{request['request_id']}/confirm",
                json={"carrier": "DHL", "tracking_number": f"JD{run}"})
    assert resp.status_code == 409 and [d["field"] for d in resp.json()["detail"]] == ["request_id"]

    second = place(4)  # the supplier states 4 more: all of it goes there, then it refuses
    [again] = until("a second request", requested(second), bool)
    assert [(ln["sku"], ln["qty"]) for ln in again["lines"]] == [(sku, 4)]
    ok("POST", "inventory", "/v1/receipts", json={"location_id": wh, "reference": f"GRN2-{run}",
                                                  "lines": [{"sku": sku, "bin": "A-01", "qty": 10}]})
    ok("POST", "fulfillment", f"/v1/dropship-requests/{again['request_id']}/refuse", json={"reason": "sold out"})
    final = until("the refused lines allocated again", lambda: line(second),
                  lambda ln: ln.get("allocated") == 4 and ln.get("packed") == 0)
    assert (final["shipped"], final["backordered"]) == (0, 0)
    allocations = ok("GET", "allocation", f"/v1/allocations/{second}")["allocations"]
    assert {a["location_id"] for a in allocations} == {wh}
    until("the stated stock down by the refused units", lambda: on_hand(sup), lambda n: n == 0)
