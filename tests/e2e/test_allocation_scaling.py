"""Two allocation processes consuming the same topics hammer one hot SKU while its stock changes
underneath; afterwards a replay of allocation's input topics from offset 0 changes nothing
(SPEC section 4, invariants 1, 2 and 5)."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from datetime import UTC, datetime

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from infra import free_port
from staff_auth import ADMIN

from libs.contracts import Topic
from services.cli.launcher import System

pytestmark = pytest.mark.e2e

ORDERS = 400
ALLOCATION_INPUTS = (Topic.ORDERS, Topic.INVENTORY, Topic.FULFILLMENT)


async def _end_offsets(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            await consumer.topics()  # refresh metadata
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum((await consumer.end_offsets(partitions)).values())
    finally:
        await consumer.stop()


async def _committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """Committed offset per partition (Tansu needs the partitions named explicitly)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await consumer.start()
    await admin.start()
    try:
        await consumer.topics()
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
        return {tp.partition: max(committed[tp].offset, 0) if tp in committed else 0 for tp in partitions}
    finally:
        await admin.close()
        await consumer.stop()


def _published_by(system: System, port: int, topic: str) -> float:
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    key = f'oms_outbox_published_total{{topic="{topic}"}} '
    return sum(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(key))


async def test_two_allocation_processes_never_oversell_a_hot_sku_and_replay_changes_nothing(system: System) -> None:
    run = uuid.uuid4().hex[:6]
    sku, channel = f"HOT-{run}", f"hot-{run}"
    http = httpx.Client(timeout=15, headers=ADMIN)  # staff routes need a token
    inv = system.url("inventory")
    second = system.start_service("allocation", port=free_port(), instance=1)
    system.wait_ready(180, [second])
    for loc, stock in ((f"WA-{run}", 120), (f"WB-{run}", 60)):
        http.post(inv + "/v1/locations", json={"location_id": loc, "name": loc, "kind": "warehouse", "country": "DE",
                                               "ships_to": ["DE"], "active": True}).raise_for_status()
        http.post(inv + "/v1/receipts", json={"location_id": loc, "reference": f"GRN-{loc}", "lines": [
            {"sku": sku, "bin": "B1", "lot": "", "qty": stock}]}).raise_for_status()

    rng = random.Random(7)
    quantities = [rng.randint(1, 3) for _ in range(ORDERS)]
    producer = AIOKafkaProducer(bootstrap_servers=system.kafka_bootstrap, acks="all")
    await producer.start()

    async def orders() -> None:
        for n, qty in enumerate(quantities):
            body = {"channel": channel, "external_id": f"H{n}", "placed_at": datetime.now(UTC).isoformat(),
                    "currency": "EUR", "ship_to": {"country": "DE"},
                    "lines": [{"line_id": "1", "sku": sku, "qty": qty, "unit_price": "2.00"}]}
            await producer.send(Topic.CHANNEL_ORDERS, orjson.dumps(body), key=f"{channel}:H{n}".encode())
            if n % 40 == 0:
                await asyncio.sleep(0.02)
        await producer.flush()

    def stock_changes() -> None:
        # receipts and shrinkage on the same SKU at the same time, handled by the other partitions/instance
        for i in range(12):
            loc = f"WA-{run}" if i % 2 else f"WB-{run}"
            if i % 3 == 2:
                http.post(inv + "/v1/adjustments", json={"sku": sku, "location_id": loc, "bin": "B1", "delta": -5,
                                                         "reason_code": "damage"})  # may be refused at 0: fine
            else:
                http.post(inv + "/v1/receipts", json={"location_id": loc, "reference": f"R{i}-{run}", "lines": [
                    {"sku": sku, "bin": "B1", "lot": "", "qty": 10}]}).raise_for_status()
            time.sleep(0.05)

    await asyncio.gather(orders(), asyncio.to_thread(stock_changes))
    await producer.stop()
    ordered = sum(quantities)

    def report() -> dict:
        rows = http.get(system.url("allocation") + "/v1/reports/stock", params={"sku": sku}).json()
        return next(r for r in rows if r["sku"] == sku)

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        r = report()
        on_hand = int(http.get(inv + f"/v1/stock/{sku}").json().get("on_hand", -1))
        if r["on_hand"] == on_hand and r["reserved"] + r["backordered_demand"] == ordered:
            break
        await asyncio.sleep(0.3)
    r = report()
    assert r["reserved"] + r["backordered_demand"] == ordered, r  # every unit allocated or backordered, once
    assert r["reserved"] <= r["on_hand"], r  # no oversell
    assert r["reserved"] == min(r["on_hand"], ordered), r  # stock is not left idle while orders wait
    positions = http.get(inv + f"/v1/stock/{sku}").json()["positions"]
    views = [http.get(system.url("allocation") + "/v1/allocations/" + o["order_id"]).json()
             for o in http.get(system.url("order_intake") + "/v1/orders", params={"channel": channel, "limit": 1000}).json()]
    assert len(views) == ORDERS
    per_location: dict[str, int] = {}
    for view in views:
        for line in view["lines"]:
            assert line["allocated"] + line["backordered"] + line["packed"] + line["shipped"] + line["cancelled"] == line["qty"]
        for a in view["allocations"]:
            per_location[a["location_id"]] = per_location.get(a["location_id"], 0) + a["qty"]
    for p in positions:
        assert per_location.get(p["location_id"], 0) <= p["on_hand"], (p, per_location)

    # Replay: stop allocation and start it in a fresh consumer group, which reads its three input
    # topics from offset 0. Nothing may change and nothing new may be published.
    published_before = await _end_offsets(system.kafka_bootstrap, Topic.ALLOCATIONS)
    state_before = report()
    for proc in system.instances("allocation"):  # one at a time, each after the group settled
        system.terminate(proc, timeout=30)
    suffix = f"-replay-{run}"
    system.extra_env["OMS_KAFKA_GROUP_SUFFIX"] = suffix
    try:
        replayer = system.start_service("allocation", port=system.ports["allocation"])
        system.wait_ready(180, [replayer])
    finally:
        del system.extra_env["OMS_KAFKA_GROUP_SUFFIX"]
    # Done when the fresh groups have committed as far as the original ones had.
    targets = {t: await _committed(system.kafka_bootstrap, "oms-allocation", t) for t in ALLOCATION_INPUTS}
    assert sum(targets[Topic.ORDERS].values()) >= ORDERS
    deadline = time.monotonic() + 180
    behind: list[str] = []
    while time.monotonic() < deadline:
        behind = []
        for t in ALLOCATION_INPUTS:
            done = await _committed(system.kafka_bootstrap, f"oms-allocation{suffix}", t)
            behind += [f"{t}[{p}]" for p, off in targets[t].items() if done.get(p, 0) < off]
        if not behind:
            break
        await asyncio.sleep(0.5)
    assert not behind, behind  # the replay consumed everything from offset 0
    await asyncio.sleep(1.0)  # give the outbox relay the chance to publish, had anything been written
    assert _published_by(system, replayer.port, Topic.ALLOCATIONS) == 0
    assert _published_by(system, replayer.port, Topic.AVAILABILITY) == 0
    assert report() == state_before
    assert await _end_offsets(system.kafka_bootstrap, Topic.ALLOCATIONS) == published_before
    # back to the normal group for the tests that follow
    for proc in system.instances("allocation"):  # one at a time, each after the group settled
        system.terminate(proc, timeout=30)
    system.wait_ready(180, [system.start_service("allocation", port=system.ports["allocation"])])
