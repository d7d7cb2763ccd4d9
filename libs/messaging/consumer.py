"""Batch handling for Kafka subscribers: decode, process in one transaction, retry, dead-letter.

FastStream hands a subscriber a batch of records; ``BatchConsumer.handle`` is what the
subscriber calls. Delivery contract (together with ``AckPolicy.NACK_ON_ERROR`` on the
subscriber, which commits offsets only after ``handle`` returns):

* a record that cannot be decoded goes straight to ``<topic>.dlq`` (retrying cannot fix it);
* a batch whose processing fails is retried with exponential backoff; if it keeps failing it
  is split into single messages, each retried on its own, and a message that still fails after
  ``max_attempts`` goes to ``<topic>.dlq`` with the error in headers; the rest of the partition
  keeps flowing;
* infrastructure failures (database or broker unreachable, serialisation conflicts) are not the
  message's fault: after the retries ``handle`` raises, FastStream rewinds the partition and the
  batch is redelivered later. Nothing is dead-lettered because PostgreSQL restarted.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter as Counter_
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Histogram
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.contracts.envelope import EventDecodeError, EventMessage, decode_event
from libs.contracts.events import EVENT_TYPES, Event
from libs.contracts.topics import dlq
from libs.messaging.inbox import claim_new_events
from libs.messaging.settings import KafkaSettings
from libs.observability import tracing
from libs.observability.logs import about

log = logging.getLogger(__name__)

T = TypeVar("T")

MESSAGES = Counter("oms_consumed_messages_total", "Messages handled", ["topic", "outcome"])
BATCH_SECONDS = Histogram(
    "oms_batch_seconds", "Time to handle one consumed batch (label: the consumer group)", ["group"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
)
RETRIES = Counter("oms_handler_retries_total", "Handler retries after an error (label: the consumer group)", ["group", "kind"])
DEAD_LETTERS = Counter("oms_dead_letters_total", "Records written to <topic>.dlq, by the topic they came from "
                       "and the consumer group that gave up on them", ["topic", "group"])


async def keep_raw_records(message: Any) -> None:
    """FastStream decoder for batch subscribers that read ``msg.raw_message`` themselves:
    FastStream would otherwise JSON-decode every value once more before the handler runs."""
    return None


class PermanentMessageError(Exception):
    """The message itself is wrong: retrying will not help; dead-letter it at once."""


@dataclass(frozen=True, slots=True)
class Delivery(Generic[T]):
    record: ConsumerRecord[Any, Any]
    message: T


def decode_envelope(record: ConsumerRecord[Any, Any], models: Mapping[str, type[Event]] = EVENT_TYPES) -> EventMessage:
    try:
        envelope, event = decode_event(record.value, models)
    except EventDecodeError as exc:
        raise PermanentMessageError(str(exc)) from exc
    return EventMessage(envelope, event)


_TRANSIENT_PG = {"SerializationError", "DeadlockDetectedError", "TooManyConnectionsError", "CannotConnectNowError"}


def is_transient(exc: BaseException) -> bool:
    """Errors of the infrastructure, not of the message."""
    if isinstance(exc, (OperationalError, InterfaceError, OSError, TimeoutError, KafkaError, ConnectionError)):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        orig = getattr(exc, "orig", None)
        names = {type(orig).__name__, type(getattr(orig, "__cause__", None)).__name__}
        return bool(names & _TRANSIENT_PG)
    return False


class BatchConsumer(Generic[T]):
    """Turns a FastStream batch into calls of ``process`` with the delivery contract above."""

    def __init__(
        self,
        *,
        group_id: str,
        producer: AIOKafkaProducer,
        settings: KafkaSettings,
        process: Callable[[Sequence[Delivery[T]]], Awaitable[None]],
        decode: Callable[[ConsumerRecord[Any, Any]], T],
        engine: AsyncEngine | None = None,
    ) -> None:
        """``engine``: the service's database, whose inbox remembers which records were
        dead-lettered, so a replay from offset 0 does not dead-letter the same poison again."""
        self.group_id = group_id
        self._producer = producer
        self._settings = settings
        self._process = process
        self._decode = decode
        self._engine = engine

    async def handle(self, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        if tracing.STATE.on:  # a span per record, parent of the events it causes (off: no cost)
            with tracing.consume(self.group_id, records):
                return await self._handle(records)
        return await self._handle(records)

    async def _handle(self, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        started = time.perf_counter()
        deliveries: list[Delivery[T]] = []
        for record in records:
            try:
                deliveries.append(Delivery(record, self._decode(record)))
            except PermanentMessageError as exc:
                await self.dead_letter(record, exc, attempts=1)
        if deliveries:
            await self._process_with_retries(deliveries)
        BATCH_SECONDS.labels(self.group_id).observe(time.perf_counter() - started)

    async def _process_with_retries(self, deliveries: list[Delivery[T]]) -> None:
        error = await self._attempt(deliveries, self._settings.max_attempts)
        if error is None:
            for topic, n in Counter_(d.record.topic for d in deliveries).items():
                MESSAGES.labels(topic, "ok").inc(n)
            return
        if len(deliveries) == 1:
            await self.dead_letter(deliveries[0].record, error, attempts=self._settings.max_attempts)
            return
        # Find the culprit(s): each message alone, in order, so per-key order is kept.
        log.warning("batch of %d for %s failed (%s); handling one by one", len(deliveries), self.group_id, error)
        for delivery in deliveries:
            with about(correlation_of(delivery.record)):  # its retry lines are about its order
                err = await self._attempt([delivery], self._settings.max_attempts)
            if err is None:
                MESSAGES.labels(delivery.record.topic, "ok").inc()
            else:
                await self.dead_letter(delivery.record, err, attempts=self._settings.max_attempts)

    async def _attempt(self, deliveries: list[Delivery[T]], attempts: int) -> BaseException | None:
        """Run ``process``; return the last permanent error, raise after transient ones persist."""
        delay = self._settings.retry_backoff_ms / 1000
        last: BaseException | None = None
        for attempt in range(1, attempts + 1):
            try:
                await self._process(deliveries)
                return None
            except asyncio.CancelledError:
                raise
            except PermanentMessageError as exc:
                return exc
            except Exception as exc:  # noqa: BLE001 - classified below
                last = exc
                kind = "transient" if is_transient(exc) else "error"
                RETRIES.labels(self.group_id, kind).inc()
                log.warning("%s handling %d message(s) for %s, attempt %d/%d: %r",
                            kind, len(deliveries), self.group_id, attempt, attempts, exc)
                if attempt < attempts:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                elif kind == "transient":
                    # Not the message's fault: let the subscriber rewind and redeliver later.
                    await asyncio.sleep(delay)
                    raise
        return last

    async def dead_letter(self, record: ConsumerRecord[Any, Any], error: BaseException, *, attempts: int) -> None:
        """Publish the record unchanged to ``<topic>.dlq`` with why it failed in the headers.

        Why is the error's kind and the field it concerns, never the row's values (a database
        error's text would carry customer names and addresses)."""
        from libs.database.errors import describe_error  # here: only this function is ours to change

        why = describe_error(error)
        about_order = {"correlation_id": correlation_of(record)}
        headers = list(record.headers or ())
        headers += [
            ("dlq.error", _clip(why).encode()),
            ("dlq.error_type", type(error).__name__.encode()),
            ("dlq.topic", record.topic.encode()),
            ("dlq.partition", str(record.partition).encode()),
            ("dlq.offset", str(record.offset).encode()),
            ("dlq.attempts", str(attempts).encode()),
            ("dlq.consumer_group", self.group_id.encode()),
            ("dlq.failed_at", datetime.now(UTC).isoformat().encode()),
        ]
        if self._engine is None:
            await self._producer.send_and_wait(dlq(record.topic), record.value, key=record.key, headers=headers)
        else:
            # Once per record, whatever group reads it: the mark and the publish commit together
            # (the mark's transaction commits only after the broker acknowledged the dead letter).
            async with self._engine.begin() as conn:
                if not await claim_new_events(conn, [dead_letter_ref(record.topic, record.partition, record.offset)]):
                    MESSAGES.labels(record.topic, "dead_letter_repeat_skipped").inc()
                    log.warning("%s[%d]@%d was dead-lettered before (a replay): not again",
                                record.topic, record.partition, record.offset, extra=about_order)
                    return
                await self._producer.send_and_wait(dlq(record.topic), record.value, key=record.key, headers=headers)
        MESSAGES.labels(record.topic, "dead_lettered").inc()
        DEAD_LETTERS.labels(record.topic, self.group_id).inc()
        log.error("dead-lettered %s[%d]@%d after %d attempt(s): %s",
                  record.topic, record.partition, record.offset, attempts, why, extra=about_order)


def correlation_of(record: ConsumerRecord[Any, Any]) -> str | None:
    """The record's ``correlation_id`` header (the outbox writes one on every event)."""
    for key, value in record.headers or ():
        if key == "correlation_id":
            return bytes(value).decode("utf-8", "replace")
    return None


def dead_letter_ref(topic: str, partition: int, offset: int) -> uuid.UUID:
    """The inbox id that marks a record as dead-lettered (not as applied)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"kafka-dlq://{topic}/{partition}/{offset}")


def _clip(text: str, limit: int = 2000) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
