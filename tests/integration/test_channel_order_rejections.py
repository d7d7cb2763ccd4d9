"""The channel-order path over Kafka, with order intake running as the host runs it (real broker,
real PostgreSQL): inputs PostgreSQL cannot store end as a ChannelOrderRejected naming each field,
never as a dead letter."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from infra import Infra

from libs.contracts import Topic, decode_event, dlq
from libs.messaging import KafkaSettings
from libs.messaging.kafka import create_producer
from libs.service_host import HostSettings, build_app
from services.order_intake.service import SERVICE

pytestmark = pytest.mark.integration


@pytest.fixture
async def order_intake(infra: Infra) -> AsyncIterator[None]:
    kafka = KafkaSettings(bootstrap=infra.kafka_bootstrap, idempotence=infra.kafka_idempotence,
                          group_suffix=f".t{uuid.uuid4().hex[:8]}", max_attempts=2, retry_backoff_ms=10)
    app = build_app(SERVICE, HostSettings(database_url=infra.database_url, db_pool_size=2), kafka)
    async with app.router.lifespan_context(app):
        yield


async def records_with_keys(bootstrap: str, topic: str, keys: set[bytes], timeout: float = 60) -> dict[bytes, object]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"t-{uuid.uuid4().hex}",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    found: dict[bytes, object] = {}
    try:
        deadline = time.monotonic() + timeout
        while set(found) != keys and time.monotonic() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                found |= {m.key: m for m in msgs if m.key in keys}
    finally:
        await consumer.stop()
    return found


async def drain(bootstrap: str, topic: str) -> list:  # type: ignore[type-arg]
    """Everything on ``topic`` now (read up to its end offsets)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # fetches the metadata
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        out = []
        while True:
            positions = [await consumer.position(tp) for tp in partitions]
            if all(pos >= ends[tp] for pos, tp in zip(positions, partitions, strict=True)):
                return out
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                out += msgs
    finally:
        await consumer.stop()


def channel_order(external_id: str, **extra: object) -> bytes:
    return orjson.dumps({
        "channel": "web", "external_id": external_id, "placed_at": "2026-11-22T10:00:00Z", "currency": "EUR",
        "ship_to": {"country": "DE"}, "customer": {"name": "Jane Doe"},
        "lines": [{"line_id": "1", "sku": "SKU-1", "qty": 1, "unit_price": "1.00"}], **extra})


async def test_unstorable_channel_orders_are_rejected_naming_each_field(order_intake: None, infra: Infra) -> None:
    run = uuid.uuid4().hex[:8]
    sent = {
        f"web:a-{run}".encode(): (channel_order(
            f"a-{run}", customer={"name": "Jane\x00Doe"}, placed_at="9999-12-31T23:00:00-05:00",
            lines=[{"line_id": "1", "sku": "S\x00", "qty": 3_000_000_000, "unit_price": "1.00"}],
            ship_to={"country": "DE", "street": "Main St 1"}), []),
        # A key and a correlation header PostgreSQL could not store either (answered with U+FFFD).
        f"web:\x00b-{run}".encode(): (channel_order(f"\x00b-{run}"), [("correlation_id", b"c\x00")]),
    }
    producer = create_producer(KafkaSettings(bootstrap=infra.kafka_bootstrap,
                                             idempotence=infra.kafka_idempotence), "test")
    await producer.start()
    try:
        for key, (value, headers) in sent.items():
            await producer.send_and_wait(Topic.CHANNEL_ORDERS, value, key=key, headers=headers)
    finally:
        await producer.stop()

    expected = {f"web:a-{run}".encode(), f"web:\ufffdb-{run}".encode()}
    found = await records_with_keys(infra.kafka_bootstrap, Topic.CHANNEL_ORDERS_REJECTED, expected)
    assert set(found) == expected
    reasons = {}
    for key, record in found.items():
        envelope, event = decode_event(record.value)  # type: ignore[attr-defined]
        assert envelope.event_type == "ChannelOrderRejected"
        reasons[key] = {r.field for r in event.reasons}  # type: ignore[attr-defined]
    assert reasons == {
        f"web:a-{run}".encode(): {"customer.name", "placed_at", "lines.0.sku", "lines.0.qty", "ship_to.street"},
        f"web:\ufffdb-{run}".encode(): {"external_id"},
    }
    dead = [r for r in await drain(infra.kafka_bootstrap, dlq(Topic.CHANNEL_ORDERS)) if run.encode() in (r.key or b"")]
    assert dead == []


async def test_an_unparseable_channel_order_is_rejected_with_the_parsers_own_words(database_url: str) -> None:
    """The use case's half (the Kafka decoder hands it the parser's problem, see subscribers)."""
    from pathlib import Path

    from libs.database import create_engine, upgrade_schema
    from services.order_intake.adapters.tables import SCHEMA
    from services.order_intake.service_layer.placing import Incoming, parse_json, place_orders

    engine = create_engine(database_url, schema=SCHEMA, pool_size=2)
    await upgrade_schema(engine, schema=SCHEMA, versions_dir=Path(__file__).parents[2]
                         / "services" / "order_intake" / "adapters" / "migrations" / "versions")
    try:
        incoming = []
        for raw in (b'{"channel": "web",', b'{"channel": "\xff\xfe"}'):
            document, problem = parse_json(raw)
            incoming.append(Incoming(document, f"web:{uuid.uuid4().hex}", parse_problem=problem))
        async with engine.begin() as conn:
            outcomes = await place_orders(conn, incoming, publish_rejections=True)
            await conn.rollback()
    finally:
        await engine.dispose()
    assert [o.status for o in outcomes] == ["rejected", "rejected"]
    problems = [o.problems[0].problem for o in outcomes]
    assert problems[0].startswith("not valid JSON: ") and "must be a JSON object" not in problems[0]
    assert "UTF-8" in problems[1], problems[1]


async def test_non_json_and_invalid_utf8_over_kafka_are_rejected_with_the_parsers_words(
    order_intake: None, infra: Infra
) -> None:
    run = uuid.uuid4().hex[:8]
    sent = {f"web:nj-{run}".encode(): b'{"channel": "web",', f"web:u8-{run}".encode(): b'{"channel": "\xff\xfe"}'}
    producer = create_producer(KafkaSettings(bootstrap=infra.kafka_bootstrap,
                                             idempotence=infra.kafka_idempotence), "test")
    await producer.start()
    try:
        for key, value in sent.items():
            await producer.send_and_wait(Topic.CHANNEL_ORDERS, value, key=key)
    finally:
        await producer.stop()
    found = await records_with_keys(infra.kafka_bootstrap, Topic.CHANNEL_ORDERS_REJECTED, set(sent))
    assert set(found) == set(sent)
    problems = {}
    for key, record in found.items():
        _, event = decode_event(record.value)  # type: ignore[attr-defined]
        [reason] = event.reasons  # type: ignore[attr-defined]
        assert reason.field == "(body)"
        problems[key] = reason.problem
    # the parser's own words, not a vague "must be a JSON object"
    assert "not valid JSON" in problems[f"web:nj-{run}".encode()]
    assert "UTF-8" in problems[f"web:u8-{run}".encode()]
