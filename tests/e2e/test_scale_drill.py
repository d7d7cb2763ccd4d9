"""The scale-out drill (issue 12 item 5): allocation goes from 1 to 3 to 1 instances while
orders stream in (with a receipt that fills backorders in the middle, and resends); afterwards
nothing is lost, nothing doubled, nothing oversold (the fault suite's checks, through the public
views), and all three instances did work while there were three.

The pause of each rebalance is measured from the records themselves: per order, the time from
its OrderPlaced on oms.orders.v1 to its first allocation result on oms.allocations.v1 (both
Kafka timestamps); the pause is the longest such wait for the orders placed while instances
joined or left, minus the median wait before the first change. Run with ``-s`` for the
``SCALE-RESULT`` lines; deploy/README.md holds the figures of a run."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from test_faults import _Views, _wait

from libs.contracts import Topic
from services.cli.launcher import System

pytestmark = pytest.mark.e2e

RATE = 8  # orders per second offered during the whole drill
RECEIPTS = (150, 150)  # before the stream; while the instances join
STEADY_S = 8  # seconds of stream before the first change, between the changes and after the last
MAX_ORDERS = 900  # the channel's order list answers up to 1000


class _Stream:
    """Sends one-unit orders at RATE in a thread of its own until stopped."""

    def __init__(self, bootstrap: str, channel: str, sku: str) -> None:
        self.bootstrap, self.channel, self.sku = bootstrap, channel, sku
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(60)
        return self.sent

    def _order(self, n: int) -> tuple[bytes, bytes]:
        order = {"channel": self.channel, "external_id": f"S{n:05d}", "placed_at": datetime.now(UTC).isoformat(),
                 "currency": "EUR", "ship_to": {"country": "DE"},
                 "lines": [{"line_id": "1", "sku": self.sku, "qty": 1, "unit_price": "1.00"}]}
        return orjson.dumps(order), f"{self.channel}:{order['external_id']}".encode()

    async def _run(self) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        await producer.start()
        try:
            started = time.monotonic()
            while not self._stop.is_set() and self.sent < MAX_ORDERS:
                value, key = self._order(self.sent)
                await producer.send_and_wait(Topic.CHANNEL_ORDERS, value, key=key)
                self.sent += 1
                await asyncio.sleep(max(0.0, started + self.sent / RATE - time.monotonic()))
            for n in range(0, self.sent, 7):  # resends, as a connector retrying after a timeout
                value, key = self._order(n)
                await producer.send_and_wait(Topic.CHANNEL_ORDERS, value, key=key)
        finally:
            await producer.stop()


def _handled(system: System, port: int) -> float:
    """Messages of oms.orders.v1 this allocation instance handled (its /metrics)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "oms_consumed_messages_total" and s.labels.get("topic") == Topic.ORDERS)


async def _records(bootstrap: str, topic: str, keys: set[bytes]) -> list[Any]:
    """Records of ``topic`` with one of ``keys``, from offset 0 to the current end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        found: list[Any] = []
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            for recs in (await consumer.getmany(timeout_ms=1000, max_records=5000)).values():
                found += [r for r in recs if r.key in keys]
        return found
    finally:
        await consumer.stop()


def _waits(placed: list[Any], results: list[Any]) -> dict[bytes, tuple[float, float]]:
    """Per order key: (placed at, seconds until its first allocation result), Kafka timestamps."""
    placed_at = {r.key: r.timestamp / 1000 for r in placed
                 if dict(r.headers or ()).get("event_type") == b"OrderPlaced"}
    first: dict[bytes, float] = {}
    for r in results:
        first[r.key] = min(first.get(r.key, float("inf")), r.timestamp / 1000)
    return {k: (t, first[k] - t) for k, t in placed_at.items() if k in first}


async def test_allocation_scales_1_3_1_while_orders_stream_and_nothing_is_lost_doubled_or_oversold(
    system: System,
) -> None:
    run = uuid.uuid4().hex[:6]
    sku, loc, channel = f"SCALE-{run}", f"WH-SCALE-{run}", f"scale-{run}"
    views = _Views(system, channel, sku)
    views.ok("POST", "inventory", "/v1/locations", json={
        "location_id": loc, "name": "scale drill", "kind": "warehouse", "country": "DE", "ships_to": ["DE"],
        "active": True})
    views.receive(loc, RECEIPTS[0], f"GRN-{run}-0")
    _wait(lambda: views.stock().get("on_hand") == RECEIPTS[0], "allocation sees the stock")
    assert len(system.scale("allocation", 1)) == 1

    stream = _Stream(system.kafka_bootstrap, channel, sku)
    events: list[tuple[str, float, float]] = []  # (what, wall clock start, wall clock end)
    stream.start()
    try:
        time.sleep(STEADY_S)
        began = time.time()
        three = system.scale("allocation", 3)
        events.append(("1 -> 3 instances", began, time.time()))
        views.receive(loc, RECEIPTS[1], f"GRN-{run}-1")  # fills backorders while the group settles
        handled_before = {sp.instance: _handled(system, sp.port) for sp in three}
        time.sleep(STEADY_S)
        handled_after = {sp.instance: _handled(system, sp.port) for sp in three}
        began = time.time()
        system.scale("allocation", 1)
        events.append(("3 -> 1 instances", began, time.time()))
        time.sleep(STEADY_S)
    finally:
        orders = stream.stop()
    assert orders >= 3 * STEADY_S * RATE // 2

    stock = sum(RECEIPTS)
    expected_stock = {"on_hand": stock, "reserved": min(stock, orders), "backordered_demand": max(0, orders - stock)}
    expected_orders = {k: v for k, v in {"allocated": min(stock, orders), "backordered": max(0, orders - stock)}.items() if v}

    def settled() -> bool:
        current = views.stock()
        return {k: current.get(k) for k in expected_stock} == expected_stock and views.statuses() == expected_orders

    _wait(settled, "every order allocated or backordered exactly once", timeout=300,
          last=lambda: (views.stock(), views.statuses()))
    figures = views.measure(placed=orders)
    assert figures == {"lost": 0, "doubled": 0, "oversold": 0}
    assert len(views.orders()) == orders  # resends created nothing

    # with three instances, each did work (every partition of oms.orders.v1 gets orders)
    assert all(handled_after[i] > handled_before[i] for i in handled_before), (handled_before, handled_after)

    # the pause of each rebalance, from the records' timestamps
    keys = {o["order_id"].encode() for o in views.orders()}
    placed = await _records(system.kafka_bootstrap, Topic.ORDERS, keys)
    results = await _records(system.kafka_bootstrap, Topic.ALLOCATIONS, keys)
    waits = _waits(placed, results)
    assert len(waits) == orders
    baseline = [w for t, w in waits.values() if t < events[0][1]]
    median = statistics.median(baseline)
    print(f"\nSCALE-RESULT | steady, 1 instance | {len(baseline)} orders | median wait {median:.2f} s | "
          f"longest {max(baseline):.2f} s")
    for what, start, end in events:
        during = [w for t, w in waits.values() if start <= t <= end + 5]
        print(f"SCALE-RESULT | {what} | change took {end - start:.1f} s | {len(during)} orders placed meanwhile | "
              f"longest wait {max(during, default=0):.2f} s | pause {max(during, default=median) - median:.2f} s")
