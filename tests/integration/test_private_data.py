"""Customer data never reaches logs or dead-letter headers: a database error on a row holding a
customer's name is told by its kind and field (real PostgreSQL, real broker)."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from infra import Infra
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from libs.contracts import dlq
from libs.database import create_engine
from libs.messaging import KafkaSettings
from libs.messaging.consumer import BatchConsumer, Delivery
from libs.messaging.kafka import create_producer, ensure_topics

pytestmark = pytest.mark.integration


@pytest.fixture
async def customers(database_url: str):  # type: ignore[no-untyped-def]
    """A table like an order's: a customer's name and address beside a checked quantity."""
    schema = f"t_{uuid.uuid4().hex[:8]}"
    engine = create_engine(database_url, schema=schema, pool_size=2)
    async with engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        await conn.execute(text(f'CREATE TABLE "{schema}".orders (name text, address text, qty int CHECK (qty > 0),'
                                " code uuid)"))
    yield engine
    await engine.dispose()


def person() -> dict[str, Any]:
    tag = uuid.uuid4().hex[:10]
    return {"name": f"Jane Customer-{tag}", "address": f"{tag} Private Lane, Springfield"}


async def test_a_dead_letter_names_the_error_kind_and_field_never_the_customer(
    customers, infra: Infra, caplog: pytest.LogCaptureFixture  # type: ignore[no-untyped-def]
) -> None:
    caplog.set_level(logging.INFO)  # (the broker client's DEBUG lines show record values by design)
    topic = f"t.private.{uuid.uuid4().hex[:6]}"
    settings = KafkaSettings(bootstrap=infra.kafka_bootstrap, idempotence=infra.kafka_idempotence,
                             max_attempts=2, retry_backoff_ms=10)
    await ensure_topics(settings, [topic, dlq(topic)])
    producer = create_producer(settings, "test")
    await producer.start()
    who = person()

    async def store(deliveries: Sequence[Delivery[dict[str, Any]]]) -> None:
        async with customers.begin() as conn:
            for d in deliveries:
                await conn.execute(text("INSERT INTO orders (name, address, qty) VALUES (:name, :address, :qty)"),
                                   d.message)

    consumer = BatchConsumer(group_id="t-private", producer=producer, settings=settings,
                             process=store, decode=lambda r: orjson.loads(r.value))
    value = orjson.dumps({**who, "qty": 0})  # violates the CHECK: "Failing row contains (Jane ...)"
    try:
        await consumer.handle([ConsumerRecord(topic, 0, 7, 0, 0, b"k", value, None, len(b"k"), len(value), ())])
    finally:
        await producer.stop()
    logged = caplog.text

    [dead] = await read(infra.kafka_bootstrap, dlq(topic))
    headers = {k: v.decode() for k, v in dead.headers}
    assert headers["dlq.error"].startswith("IntegrityError (CheckViolationError, SQLSTATE 23514)")
    assert "constraint orders_qty_check" in headers["dlq.error"]
    for secret in (who["name"], who["address"], "Failing row"):
        assert all(secret not in v for v in headers.values()), headers
        assert secret not in logged
    assert "dead-lettered" in logged and "attempt 2/2" in logged


async def test_a_database_error_logged_with_its_traceback_holds_no_customer_value(
    customers, caplog: pytest.LogCaptureFixture  # type: ignore[no-untyped-def]
) -> None:
    """What a server logs for an unexpected error (uvicorn logs the whole exception chain)."""
    caplog.set_level(logging.INFO)
    who = person()
    for sql, params in [
        ("INSERT INTO orders (name, address, qty) VALUES (:name, :address, 0)", who),  # DETAIL: Failing row
        ("INSERT INTO orders (name, code) VALUES (:name, :address)", who),  # the driver repeats the value
        ("INSERT INTO orders (name, code) VALUES (:name, CAST(:address AS uuid))", who),  # so does the server
    ]:
        with pytest.raises(DBAPIError):
            try:
                async with customers.begin() as conn:
                    await conn.execute(text(sql), params)
            except DBAPIError:
                logging.getLogger("oms.test").exception("request failed")
                raise
    logged = "\n".join(logging.Formatter().format(rec) for rec in caplog.records)
    assert logged.count("request failed\nTraceback") == 3
    assert who["name"] not in logged and who["address"] not in logged, logged


async def read(bootstrap: str, topic: str, expected: int = 1, timeout: float = 20) -> list:  # type: ignore[type-arg]
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"t-{uuid.uuid4().hex}",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    records: list = []  # type: ignore[type-arg]
    try:
        deadline = time.monotonic() + timeout
        while len(records) < expected and time.monotonic() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                records += msgs
    finally:
        await consumer.stop()
    return records
