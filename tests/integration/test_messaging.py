"""The messaging foundation on a real broker and PostgreSQL: outbox relay order and promptness,
dead-lettering of malformed events without stopping the partition, inbox de-duplication."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError
from aiokafka.partitioner import DefaultPartitioner
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from sqlalchemy import text

from libs.contracts import decode_event, encode_event, new_envelope
from libs.contracts.events import OrderCancelled
from libs.database import create_engine
from libs.messaging import (
    KafkaSettings,
    OutboxMessage,
    OutboxRelay,
    claim_new_events,
    prune_inbox,
    write_outbox,
)
from libs.messaging.consumer import BatchConsumer, decode_envelope
from libs.messaging.kafka import create_producer, ensure_topics
from libs.messaging.outbox import PACKED_OUTBOX_DDL, Transactions, notify_channel

pytestmark = pytest.mark.integration


@pytest.fixture
async def db(database_url: str):  # type: ignore[no-untyped-def]
    schema = f"t_{uuid.uuid4().hex[:8]}"
    eng = create_engine(database_url, schema=schema)
    async with eng.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        await conn.execute(text(f'SET search_path TO "{schema}"'))
        await conn.execute(text(
            "CREATE TABLE outbox (id bigserial PRIMARY KEY, topic text NOT NULL, key text NOT NULL,"
            " value bytea NOT NULL, headers jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"))
        for statement in PACKED_OUTBOX_DDL.split(";\n"):
            if statement.strip():
                await conn.execute(text(statement))
        await conn.execute(text(
            "CREATE TABLE inbox (event_id uuid PRIMARY KEY, processed_at timestamptz NOT NULL DEFAULT now())"))
    yield Db(eng, schema)
    await eng.dispose()


class Db:
    def __init__(self, engine, schema: str) -> None:  # type: ignore[no-untyped-def]
        self.engine, self.schema = engine, schema


def kafka_settings(bootstrap: str, idempotence: bool) -> KafkaSettings:
    return KafkaSettings(bootstrap=bootstrap, idempotence=idempotence, max_attempts=2, retry_backoff_ms=10)


async def read_all(bootstrap: str, topic: str, expected: int, timeout: float = 20) -> list:  # type: ignore[type-arg]
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"t-{uuid.uuid4().hex}",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    records = []
    try:
        deadline = time.monotonic() + timeout
        while len(records) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for msgs in batch.values():
                records.extend(msgs)
    finally:
        await consumer.stop()
    return records


async def test_outbox_rows_reach_kafka_promptly_and_in_commit_order_per_key(db, infra) -> None:  # type: ignore[no-untyped-def]
    engine, schema = db.engine, db.schema
    topic = f"t.outbox.{uuid.uuid4().hex[:6]}"
    settings = kafka_settings(infra.kafka_bootstrap, infra.kafka_idempotence)
    await ensure_topics(settings, [topic])
    producer = create_producer(settings, "test")
    await producer.start()
    relay = OutboxRelay(engine, producer, schema=schema, poll_interval=30)  # the poll cannot explain promptness
    relay.start()
    try:
        await asyncio.sleep(0.5)
        started = time.monotonic()
        for batch in range(5):
            async with engine.begin() as conn:
                await write_outbox(conn, schema, [
                    OutboxMessage(topic, f"order-{i % 3}", new_envelope(
                        OrderCancelled(order_id=f"order-{i % 3}", reason=f"{batch}:{i}"), source="test", correlation_id="c"))
                    for i in range(40)
                ])
        records = await read_all(infra.kafka_bootstrap, topic, 200)
        elapsed = time.monotonic() - started
    finally:
        await relay.stop()
        await producer.stop()
    assert len(records) == 200
    assert elapsed < 15  # LISTEN/NOTIFY wakes the relay; a 30 s poll would not
    by_key: dict[bytes, list[tuple[int, int]]] = {}
    for r in records:
        _, event = decode_event(r.value)
        b, i = map(int, event.reason.split(":"))  # type: ignore[attr-defined]
        by_key.setdefault(r.key, []).append((b, i))
        assert dict(r.headers)["event_type"] == b"OrderCancelled"
    for seq in by_key.values():
        assert seq == sorted(seq)  # per-key order = commit order
    # The relay hands records over in batches per partition: each key lands on the partition
    # the default (murmur2) partitioner gives it, as one send() per record would.
    partitions = sorted({r.partition for r in records} | set(range(settings.partitions)))
    for r in records:
        assert r.partition == DefaultPartitioner()(r.key, partitions, partitions)
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM outbox_messages"))).scalar() == 0


async def test_the_leading_process_wakes_its_relay_itself_and_another_instance_notifies_it(db, infra) -> None:  # type: ignore[no-untyped-def]
    """No pg_notify from the process that leads the relay (its relay is woken directly); a
    transaction of an instance that does not lead notifies the leader, so both go out at once."""
    engine, schema = db.engine, db.schema
    topic = f"t.outbox.{uuid.uuid4().hex[:6]}"
    settings = kafka_settings(infra.kafka_bootstrap, infra.kafka_idempotence)
    await ensure_topics(settings, [topic])
    producer = create_producer(settings, "test")
    await producer.start()
    leader = OutboxRelay(engine, producer, schema=schema, poll_interval=30)  # the poll cannot explain promptness
    follower = OutboxRelay(engine, producer, schema=schema, poll_interval=30)
    leader.start()
    heard: list[str] = []
    async with engine.connect() as listen_conn:
        raw = (await listen_conn.get_raw_connection()).driver_connection
        await raw.add_listener(notify_channel(schema), lambda *args: heard.append(args[2]))  # type: ignore[union-attr]
        try:
            for _ in range(50):
                if leader.is_leader:
                    break
                await asyncio.sleep(0.1)
            follower.start()  # finds the lock taken: it does not lead
            await asyncio.sleep(0.3)
            assert leader.is_leader and not follower.is_leader

            async def write(transactions: Transactions, reason: str) -> None:
                async with transactions.begin() as conn:
                    await write_outbox(conn, schema, [OutboxMessage(topic, "k", new_envelope(
                        OrderCancelled(order_id="o-1", reason=reason), source="test", correlation_id="c"))])

            started = time.monotonic()
            await write(Transactions(engine, leader), "from the leading process")
            first = await read_all(infra.kafka_bootstrap, topic, 1)
            await asyncio.sleep(0.3)  # a notification would have arrived by now
            heard_after_local = list(heard)
            await write(Transactions(engine, follower), "from another instance")
            records = await read_all(infra.kafka_bootstrap, topic, 2)
            elapsed = time.monotonic() - started
        finally:
            await follower.stop()
            await leader.stop()
            await producer.stop()
    assert len(first) == 1 and heard_after_local == []
    assert len(records) == 2 and len(heard) == 1
    assert elapsed < 15  # neither waited for the 30 s poll
    assert [decode_event(r.value)[1].reason for r in records] == [  # type: ignore[attr-defined]
        "from the leading process", "from another instance"]


async def test_rows_left_by_a_version_before_packed_rows_go_out_first_in_id_order(db, infra) -> None:  # type: ignore[no-untyped-def]
    """An upgrade: the per-message outbox rows an older version wrote, interleaved with packed
    rows, are published merged in id (commit) order, and both tables end empty."""
    engine, schema = db.engine, db.schema
    topic = f"t.upgrade.{uuid.uuid4().hex[:6]}"
    settings = kafka_settings(infra.kafka_bootstrap, infra.kafka_idempotence)
    await ensure_topics(settings, [topic])

    def event(n: int) -> OutboxMessage:
        return OutboxMessage(topic, "order-1", new_envelope(OrderCancelled(order_id="order-1", reason=str(n)),
                                                           source="test", correlation_id="c"))

    for n in range(6):
        async with engine.begin() as conn:
            if n % 2:  # packed: two events in one row
                await write_outbox(conn, schema, [event(n * 10), event(n * 10 + 1)])
            else:  # what the per-message version wrote
                await conn.execute(text("INSERT INTO outbox (topic, key, value, headers) VALUES (:t, 'order-1', :v,"
                                        " '{\"event_type\": \"OrderCancelled\"}')"),
                                   {"t": topic, "v": encode_event(event(n * 10).envelope)})
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM outbox_messages"))).scalar() == 9
    producer = create_producer(settings, "test")
    await producer.start()
    relay = OutboxRelay(engine, producer, schema=schema, poll_interval=0.2)
    relay.start()
    try:
        records = await read_all(infra.kafka_bootstrap, topic, 9)
    finally:
        await relay.stop()
        await producer.stop()
    assert [int(decode_event(r.value).event.reason) for r in records] == [0, 10, 11, 20, 30, 31, 40, 50, 51]  # type: ignore[attr-defined]
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM outbox_messages"))).scalar() == 0


async def test_malformed_event_goes_to_dlq_with_error_and_partition_keeps_flowing(db, infra) -> None:  # type: ignore[no-untyped-def]
    topic = f"t.flow.{uuid.uuid4().hex[:6]}"
    settings = kafka_settings(infra.kafka_bootstrap, infra.kafka_idempotence)
    await ensure_topics(settings, [topic, f"{topic}.dlq"])
    producer = create_producer(settings, "test")
    await producer.start()
    handled: list[str] = []

    async def process(deliveries) -> None:  # type: ignore[no-untyped-def]
        for d in deliveries:
            if d.message.event.reason == "poison":
                raise ValueError("cannot handle a poison order")
        handled.extend(d.message.event.order_id for d in deliveries)

    consumer = BatchConsumer(group_id="t-group", producer=producer, settings=settings,
                             process=process, decode=decode_envelope)
    broker = KafkaBroker(infra.kafka_bootstrap)

    @broker.subscriber(topic, group_id=f"t-{uuid.uuid4().hex}", batch=True, max_records=50, batch_timeout_ms=5,
                       auto_offset_reset="earliest", ack_policy=AckPolicy.NACK_ON_ERROR)
    async def on_message(msg: KafkaMessage) -> None:
        await consumer.handle(msg.raw_message)

    raw = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap)
    await raw.start()
    from libs.contracts import encode_event

    def event(order_id: str, reason: str = "ok") -> bytes:
        return encode_event(new_envelope(OrderCancelled(order_id=order_id, reason=reason), source="t", correlation_id="c"))

    await raw.send_and_wait(topic, event("o1"), key=b"k", partition=0)
    await raw.send_and_wait(topic, b"{not json", key=b"k", partition=0)
    await raw.send_and_wait(topic, b'{"event_id": "1"}', key=b"k", partition=0)
    await raw.send_and_wait(topic, event("o2", "poison"), key=b"k", partition=0)
    await raw.send_and_wait(topic, event("o3"), key=b"k", partition=0)
    await raw.stop()
    await broker.start()
    try:
        deadline = time.monotonic() + 30
        while "o3" not in handled and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
    finally:
        await broker.stop()
        await producer.stop()
    assert handled == ["o1", "o3"]  # o2 dead-lettered, the partition went on to o3
    dead = await read_all(infra.kafka_bootstrap, f"{topic}.dlq", 3)
    assert len(dead) == 3
    errors = [dict(r.headers)["dlq.error"].decode() for r in dead]
    assert "not JSON" in errors[0]
    assert "envelope.event_type: Field required" in errors[1]
    assert "poison" in errors[2] and dict(dead[2].headers)["dlq.attempts"] == b"2"
    assert all(dict(r.headers)["dlq.topic"] == topic.encode() for r in dead)


async def test_inbox_reports_an_event_as_new_only_once(db) -> None:  # type: ignore[no-untyped-def]
    engine = db.engine
    ids = [uuid.uuid4() for _ in range(3)]
    async with engine.begin() as conn:
        await conn.execute(text(f'SET LOCAL search_path TO "{db.schema}"'))
        assert await claim_new_events(conn, ids[:2]) == set(ids[:2])
    async with engine.begin() as conn:
        await conn.execute(text(f'SET LOCAL search_path TO "{db.schema}"'))
        assert await claim_new_events(conn, ids) == {ids[2]}


async def test_inbox_forgets_ids_older_than_the_topics_retention_only(db) -> None:  # type: ignore[no-untyped-def]
    engine = db.engine
    old, recent = [uuid.uuid4() for _ in range(25)], [uuid.uuid4() for _ in range(3)]
    async with engine.begin() as conn:
        await claim_new_events(conn, old + recent)
        await conn.execute(text("UPDATE inbox SET processed_at = now() - interval '8 days' WHERE event_id = ANY(:o)"),
                           {"o": old})
    assert await prune_inbox(engine, 7 * 24 * 3600, chunk=10) == 25  # in several short transactions
    async with engine.begin() as conn:
        # a redelivery of a recent event is still recognised; an id past retention is new again
        assert await claim_new_events(conn, recent + old[:1]) == {old[0]}


class _FirstBatchFails(AIOKafkaProducer):
    """The real producer, except that the broker's answer to its first record batch is a
    permanent failure (a produce that timed out for good): how a relay pass can half-succeed."""

    failed = False

    async def send_batch(self, batch, topic, *, partition):  # type: ignore[no-untyped-def]
        if not self.failed:
            self.failed = True
            future = asyncio.get_running_loop().create_future()
            future.set_exception(KafkaTimeoutError("produce timed out (injected)"))
            return future
        return await super().send_batch(batch, topic, partition=partition)


async def test_a_failed_produce_batch_is_sent_again_before_anything_that_followed_it(db, infra) -> None:  # type: ignore[no-untyped-def]
    engine, schema = db.engine, db.schema
    topic = f"t.gap.{uuid.uuid4().hex[:6]}"
    settings = kafka_settings(infra.kafka_bootstrap, infra.kafka_idempotence)
    await ensure_topics(settings, [topic])
    producer = _FirstBatchFails(bootstrap_servers=infra.kafka_bootstrap, acks="all",
                                enable_idempotence=infra.kafka_idempotence, linger_ms=2, max_batch_size=256 * 1024)
    await producer.start()
    padding = "x" * 1000  # ~1.3 KB per record: 600 records of one key are 3 record batches
    async with engine.begin() as conn:
        await write_outbox(conn, schema, [
            OutboxMessage(topic, "one-key", new_envelope(
                OrderCancelled(order_id="one-key", reason=f"{i}:{padding}"), source="test", correlation_id="c"))
            for i in range(600)
        ])
    relay = OutboxRelay(engine, producer, schema=schema, poll_interval=0.5)
    relay.start()
    try:
        records = await read_all(infra.kafka_bootstrap, topic, 600)
    finally:
        await relay.stop()
        await producer.stop()
    assert producer.failed
    seen: list[int] = []
    for r in records:
        _, event = decode_event(r.value)
        seen.append(int(event.reason.split(":")[0]))  # type: ignore[attr-defined]
    assert sorted(set(seen)) == list(range(600))  # nothing lost
    assert seen == sorted(seen)  # no row reached Kafka before one committed before it


async def test_a_replay_does_not_dead_letter_the_same_poison_record_again(db, infra) -> None:  # type: ignore[no-untyped-def]
    topic = f"t.replay.{uuid.uuid4().hex[:6]}"
    settings = kafka_settings(infra.kafka_bootstrap, infra.kafka_idempotence)
    await ensure_topics(settings, [topic, f"{topic}.dlq"])
    producer = create_producer(settings, "test")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"not json at all", key=b"k")
        good = new_envelope(OrderCancelled(order_id="o1", reason="fine"), source="t", correlation_id="c")
        from libs.contracts import encode_event

        await producer.send_and_wait(topic, encode_event(good), key=b"k")
        records = await read_all(infra.kafka_bootstrap, topic, 2)
        handled: list[str] = []

        async def process(deliveries) -> None:  # type: ignore[no-untyped-def]
            handled.extend(d.message.event.order_id for d in deliveries)

        # the first reading, then a replay from offset 0 in a new consumer group
        for group in ("first", "replay"):
            consumer = BatchConsumer(group_id=group, producer=producer, settings=settings,
                                     process=process, decode=decode_envelope, engine=db.engine)
            await consumer.handle(records)
    finally:
        await producer.stop()
    assert handled == ["o1", "o1"]  # the good record reaches the use case both times (its inbox decides)
    dead = await read_all(infra.kafka_bootstrap, f"{topic}.dlq", 2, timeout=8)  # waits for a second: none comes
    assert len(dead) == 1 and dict(dead[0].headers)["dlq.consumer_group"] == b"first"
