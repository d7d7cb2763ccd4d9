"""SIGKILL a service in the middle of a stream of orders, restart it: nothing lost, nothing
counted twice (SPEC section 4, invariants 5 and 6)."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from staff_auth import ADMIN

from libs.contracts import Topic
from services.cli.launcher import System

pytestmark = pytest.mark.e2e

ORDERS = 600
STOCK = 250


def _order(channel: str, n: int, sku: str) -> dict:
    return {
        "channel": channel,
        "external_id": f"X{n:05d}",
        "placed_at": datetime.now(UTC).isoformat(),
        "currency": "EUR",
        "ship_to": {"country": "DE"},
        "lines": [{"line_id": "1", "sku": sku, "qty": 1, "unit_price": "1.00"}],
    }


async def _stream_orders(bootstrap: str, channel: str, sku: str, on_half: callable) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for n in range(ORDERS):
            order = _order(channel, n, sku)
            await producer.send(Topic.CHANNEL_ORDERS, orjson.dumps(order), key=f"{channel}:{order['external_id']}".encode())
            if n == ORDERS // 2:
                await producer.flush()
                await asyncio.to_thread(on_half)
            if n % 50 == 0:
                await asyncio.sleep(0.05)  # a stream, not one burst
        # the same orders again, as a connector retrying after a timeout would
        for n in range(0, ORDERS, 7):
            order = _order(channel, n, sku)
            await producer.send(Topic.CHANNEL_ORDERS, orjson.dumps(order), key=f"{channel}:{order['external_id']}".encode())
        await producer.flush()
    finally:
        await producer.stop()


@pytest.mark.parametrize("victim", ["allocation", "order_intake"])
async def test_sigkill_mid_stream_loses_nothing_and_counts_nothing_twice(system: System, victim: str) -> None:
    run = uuid.uuid4().hex[:6]
    sku, loc, channel = f"CRASH-{run}", f"WH-CRASH-{run}", f"crash-{victim}-{run}"
    http = httpx.Client(timeout=15, headers=ADMIN)  # staff routes need a token
    http.post(system.url("inventory") + "/v1/locations", json={
        "location_id": loc, "name": "crash test", "kind": "warehouse", "country": "DE", "ships_to": ["DE"],
        "active": True}).raise_for_status()
    http.post(system.url("inventory") + "/v1/receipts", json={"location_id": loc, "reference": f"GRN-{run}", "lines": [
        {"sku": sku, "bin": "A-01", "lot": "", "qty": STOCK}]}).raise_for_status()
    _wait(lambda: _stock(http, system, sku).get("on_hand") == STOCK, "allocation sees the stock")

    def kill_and_restart() -> None:
        [proc] = [p for p in system.processes if p.name == victim]
        system.kill(proc)  # SIGKILL: no clean-up, no offset commit, no graceful close
        time.sleep(1.0)
        restarted = system.start_service(victim, port=proc.port)
        system.wait_ready(180, [restarted])

    await _stream_orders(system.kafka_bootstrap, channel, sku, kill_and_restart)

    def settled() -> bool:
        stock = _stock(http, system, sku)
        return stock.get("reserved") == STOCK and stock.get("backordered_demand") == ORDERS - STOCK

    _wait(settled, "every order allocated or backordered exactly once", timeout=180,
          last=lambda: _stock(http, system, sku))
    stock = _stock(http, system, sku)
    assert stock["on_hand"] == STOCK
    assert stock["reserved"] == STOCK  # nothing oversold, nothing double-allocated
    assert stock["backordered_demand"] == ORDERS - STOCK  # every other order waits, none twice

    def intake_orders() -> list[dict]:
        return http.get(system.url("order_intake") + "/v1/orders", params={"channel": channel, "limit": 1000}).json()

    def views_converged() -> bool:
        orders = intake_orders()
        return len(orders) == ORDERS and all(o["status"] in ("allocated", "backordered") for o in orders)

    _wait(views_converged, "every order's view shows its allocation", timeout=120,
          last=lambda: {s: sum(1 for o in intake_orders() if o["status"] == s) for s in {o["status"] for o in intake_orders()}})
    orders = intake_orders()
    assert len(orders) == ORDERS  # every order accepted once, resends did not create new ones
    assert len({o["external_id"] for o in orders}) == ORDERS
    counts = {s: sum(1 for o in orders if o["status"] == s) for s in ("allocated", "backordered")}
    assert counts == {"allocated": STOCK, "backordered": ORDERS - STOCK}


def _stock(http: httpx.Client, system: System, sku: str) -> dict:
    resp = http.get(system.url("allocation") + "/v1/reports/stock", params={"sku": sku})
    if resp.status_code != 200:
        return {}
    body = resp.json()
    rows = body if isinstance(body, list) else body.get("skus", [body])
    return next((r for r in rows if r.get("sku") == sku), {})


def _wait(condition, what: str, timeout: float = 90, last=None) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting: {what}" + (f"; last seen {last()}" if last else ""))
