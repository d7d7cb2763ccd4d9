"""The on-call gauges that are read from the broker and the database (issue 12 item 3):
consumer lag per group and partition, the outbox's backlog and oldest age."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import REGISTRY
from sqlalchemy import text

from libs.contracts.envelope import new_envelope
from libs.contracts.events import LocationChanged
from libs.database import create_engine
from libs.messaging.kafka import ensure_topics
from libs.messaging.outbox import PACKED_OUTBOX_DDL, OutboxMessage, pack
from libs.messaging.settings import KafkaSettings
from libs.observability.metrics import ConsumerLag, refresh_outbox

pytestmark = pytest.mark.integration


def _lag(group: str, topic: str, partition: int) -> float | None:
    return REGISTRY.get_sample_value(
        "oms_consumer_lag_messages", {"group": group, "topic": topic, "partition": str(partition)}
    )


async def test_consumer_lag_is_end_minus_committed_per_group_and_partition(infra) -> None:  # type: ignore[no-untyped-def]
    run = uuid.uuid4().hex[:8]
    topic, group, other = f"t-lag-{run}", f"g-lag-{run}", f"g-idle-{run}"
    await ensure_topics(KafkaSettings(bootstrap=infra.kafka_bootstrap, partitions=3), [topic])
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap)
    await producer.start()
    try:
        for partition, count in ((0, 5), (1, 3)):
            for i in range(count):
                await producer.send_and_wait(topic, f"{i}".encode(), partition=partition)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=infra.kafka_bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(3)])
        await consumer.commit({TopicPartition(topic, 0): 2, TopicPartition(topic, 2): 0})
    finally:
        await consumer.stop()

    lag = ConsumerLag(infra.kafka_bootstrap, [(group, [topic]), (other, [topic])], client_id="t-lag")
    try:
        await lag.refresh()
    finally:
        await lag.close()

    assert [_lag(group, topic, p) for p in range(3)] == [3, 3, 0]  # 5-2; nothing committed: 3-0; 0-0
    assert [_lag(other, topic, p) for p in range(3)] == [5, 3, 0]  # a group that never committed
    assert (REGISTRY.get_sample_value("oms_consumer_lag_updated_timestamp_seconds") or 0) > 0


async def test_outbox_backlog_and_the_age_of_its_oldest_row(database_url: str) -> None:
    schema = f"t_{uuid.uuid4().hex[:8]}"
    engine = create_engine(database_url, schema=schema)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            await conn.execute(text(
                f'CREATE TABLE "{schema}".outbox (id bigserial PRIMARY KEY, topic text NOT NULL, key text NOT NULL,'
                " value bytea NOT NULL, headers jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"))
            for statement in PACKED_OUTBOX_DDL.split(";\n"):
                if statement.strip():
                    await conn.execute(text(statement))
        await refresh_outbox(engine, schema)
        assert REGISTRY.get_sample_value("oms_outbox_backlog_rows", {"service": schema}) == 0
        assert REGISTRY.get_sample_value("oms_outbox_oldest_age_seconds", {"service": schema}) == 0
        async with engine.begin() as conn:
            await conn.execute(text(
                f"INSERT INTO \"{schema}\".outbox (topic, key, value, headers, created_at) VALUES "
                "('t', 'k', 'v', '{}', now() - interval '90 seconds'), ('t', 'k', 'v', '{}', now())"))
            await conn.execute(text(f'INSERT INTO "{schema}".outbox_batches (messages, count) VALUES (:m, 3)'),
                               {"m": pack([OutboxMessage("t", f"k{i}", new_envelope(  # packed rows count per event
                                   LocationChanged(location_id=f"L{i}", name="L", country="DE"), source="test",
                                   correlation_id="c")) for i in range(3)])})
        await refresh_outbox(engine, schema)
        assert REGISTRY.get_sample_value("oms_outbox_backlog_rows", {"service": schema}) == 5
        assert 90 <= (REGISTRY.get_sample_value("oms_outbox_oldest_age_seconds", {"service": schema}) or 0) < 3600
    finally:
        await engine.dispose()
