"""Connector authors use many Kafka clients: channel orders written with confluent-kafka
(librdkafka) and with aiokafka, and with kcat when it is installed, are placed by order intake
running as the host runs it on the test broker (the embedded Tansu by default); the OrderPlaced
events are read back with librdkafka's consumer group.

kcat is run against the librdkafka the confluent-kafka wheel bundles: Debian 12's kcat links
librdkafka 2.0.2, which cannot parse the embedded broker's ApiVersions answer (README:
"Kafka clients")."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import confluent_kafka
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from infra import Infra

from libs.contracts import Topic
from libs.messaging import KafkaSettings
from libs.service_host import HostSettings, build_app
from services.order_intake.service import SERVICE

pytestmark = pytest.mark.integration


@pytest.fixture
async def order_intake(infra: Infra) -> AsyncIterator[None]:
    kafka = KafkaSettings(bootstrap=infra.kafka_bootstrap, idempotence=infra.kafka_idempotence,
                          group_suffix=f".t{uuid.uuid4().hex[:8]}")
    app = build_app(SERVICE, HostSettings(database_url=infra.database_url, db_pool_size=2), kafka)
    async with app.router.lifespan_context(app):
        yield


def channel_order(channel: str) -> dict[str, object]:
    return {"channel": channel, "external_id": uuid.uuid4().hex, "placed_at": "2026-11-23T10:00:00Z",
            "currency": "EUR", "ship_to": {"country": "DE"},
            "lines": [{"line_id": "1", "sku": "SKU-CLIENTS", "qty": 1, "unit_price": "2.00"}]}


def key_of(order: dict[str, object]) -> str:
    return f"{order['channel']}:{order['external_id']}"


def bundled_librdkafka() -> Path:
    """The librdkafka shared library inside the confluent-kafka wheel (auditwheel renames it)."""
    libs = Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs"
    return next(libs.glob("librdkafka*.so*"))


def placed_external_ids(bootstrap: str, wanted: set[str], timeout: float = 90) -> set[str]:
    """external_ids of OrderPlaced events on oms.orders.v1, read with a librdkafka consumer group."""
    consumer = confluent_kafka.Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"t-clients-{uuid.uuid4().hex}",
        "auto.offset.reset": "earliest", "enable.auto.commit": False,
    })
    consumer.subscribe([Topic.ORDERS.value])
    found: set[str] = set()
    try:
        deadline = time.monotonic() + timeout
        while not wanted <= found and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            envelope = orjson.loads(msg.value())
            if envelope["event_type"] == "OrderPlaced":
                found.add(envelope["data"]["external_id"])
    finally:
        consumer.close()
    return found & wanted


async def test_channel_orders_from_librdkafka_aiokafka_and_kcat_are_all_placed(order_intake, infra: Infra,
                                                                               tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    by_librdkafka, by_aiokafka, by_kcat = (channel_order(f"{client}-{run}") for client in ("rdkafka", "aiokafka", "kcat"))

    producer = confluent_kafka.Producer({"bootstrap.servers": infra.kafka_bootstrap, "acks": "all"})
    delivered: list[object] = []
    producer.produce(Topic.CHANNEL_ORDERS.value, key=key_of(by_librdkafka), value=orjson.dumps(by_librdkafka),
                     headers=[("correlation_id", f"rdkafka-{run}".encode())],
                     on_delivery=lambda err, msg: delivered.append(err or msg.offset()))
    assert await asyncio.to_thread(producer.flush, 30) == 0
    assert len(delivered) == 1 and isinstance(delivered[0], int), delivered

    aio = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all")
    await aio.start()
    try:
        await aio.send_and_wait(Topic.CHANNEL_ORDERS.value, key=key_of(by_aiokafka).encode(),
                                value=orjson.dumps(by_aiokafka))
    finally:
        await aio.stop()

    wanted = {str(by_librdkafka["external_id"]), str(by_aiokafka["external_id"])}
    kcat = shutil.which("kcat")
    if kcat:
        (tmp_path / "librdkafka.so.1").symlink_to(bundled_librdkafka())
        env = {**os.environ, "LD_LIBRARY_PATH": str(tmp_path)}
        line = key_of(by_kcat) + "\t" + orjson.dumps(by_kcat).decode() + "\n"
        done = await asyncio.to_thread(
            subprocess.run, [kcat, "-b", infra.kafka_bootstrap, "-P", "-t", Topic.CHANNEL_ORDERS.value, "-K", "\t"],
            input=line.encode(), env=env, capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr.decode()
        wanted.add(str(by_kcat["external_id"]))

    assert await asyncio.to_thread(placed_external_ids, infra.kafka_bootstrap, wanted) == wanted
