"""One way to declare what a service consumes: one consumer (one group, one fetch loop) per
service over all its input topics, with the delivery settings stated at the declaration.

Why one consumer per service and not one per topic (docs/decisions.md 2): every consumer polls
the broker on its own, and on the embedded broker an idle consumer costs about 5 % of a core
between broker and client; one fetch loop also gives bigger batches, so fewer transactions.
Lag stays visible per topic and partition inside the group.

Delivery settings, which every service must state where it subscribes (``subscribe_batches``
takes them as required keywords, so nobody inherits FastStream's unsafe defaults):

* ``ack_policy=AckPolicy.NACK_ON_ERROR``: offsets are committed only after the handler (and so
  the database transaction) succeeded; on an infrastructure error the batch is rewound and
  redelivered (at least once; the inbox or a natural key makes a redelivery harmless);
* ``auto_offset_reset="earliest"``: a new group starts at the beginning of each topic;
* batches of up to ``OMS_KAFKA_MAX_BATCH`` records, waiting at most ``OMS_KAFKA_BATCH_WAIT_MS``;
  the broker may hold an empty fetch ``OMS_KAFKA_FETCH_MAX_WAIT_MS``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, Protocol, TypeVar

from aiokafka import AIOKafkaProducer, ConsumerRecord
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.messaging.consumer import BatchConsumer, Delivery, decode_envelope, keep_raw_records
from libs.messaging.settings import KafkaSettings

T = TypeVar("T")


class Wiring(Protocol):
    """What a subscriber needs of the process (the service host's ``Runtime`` has it)."""

    @property
    def broker(self) -> KafkaBroker: ...
    @property
    def producer(self) -> AIOKafkaProducer: ...
    @property
    def kafka(self) -> KafkaSettings: ...
    @property
    def engine(self) -> AsyncEngine: ...


def subscribe_batches(
    wiring: Wiring,
    *,
    group_id: str,
    inputs: Mapping[str, str],
    process: Callable[[Sequence[Delivery[T]]], Awaitable[None]],
    decode: Callable[[ConsumerRecord[Any, Any]], T] = decode_envelope,  # type: ignore[assignment]
    ack_policy: Literal[AckPolicy.NACK_ON_ERROR],
    auto_offset_reset: Literal["earliest"],
) -> None:
    """Consume every topic of ``inputs`` (topic -> what the service does with it, shown in the
    AsyncAPI document) with one consumer of group ``group_id``; each batch, whatever topics it
    mixes, goes to ``process`` through ``BatchConsumer`` (one transaction, retries, dead letters).
    With ``OMS_KAFKA_CONSUMER_PER_TOPIC=true`` each topic gets its own consumer and group
    ``<group_id>.<topic>`` instead (the 1.0 layout: more fetch loops, more transactions in flight)."""
    kafka = wiring.kafka
    if kafka.consumer_per_topic:  # the 1.0 layout: group <group_id>.<topic>, one consumer each
        for topic, what in inputs.items():
            _declare(wiring, f"{group_id}.{topic}", {topic: what}, process, decode, ack_policy, auto_offset_reset)
    else:
        _declare(wiring, group_id, inputs, process, decode, ack_policy, auto_offset_reset)


def _declare(
    wiring: Wiring,
    group_id: str,
    inputs: Mapping[str, str],
    process: Callable[[Sequence[Delivery[T]]], Awaitable[None]],
    decode: Callable[[ConsumerRecord[Any, Any]], T],
    ack_policy: Literal[AckPolicy.NACK_ON_ERROR],
    auto_offset_reset: Literal["earliest"],
) -> None:
    kafka = wiring.kafka
    consumer: BatchConsumer[T] = BatchConsumer(
        group_id=group_id,
        producer=wiring.producer,
        settings=kafka,
        process=process,
        decode=decode,
        engine=wiring.engine,  # dead-letter each record once, also on a replay
    )

    @wiring.broker.subscriber(
        *inputs,
        group_id=group_id,
        batch=True,
        max_records=kafka.max_batch,
        batch_timeout_ms=kafka.batch_wait_ms,
        auto_offset_reset=auto_offset_reset,
        ack_policy=ack_policy,
        fetch_max_wait_ms=kafka.fetch_max_wait_ms,
        decoder=keep_raw_records,  # BatchConsumer decodes the raw records itself
        description=" ".join(f"{topic}: {what}" for topic, what in inputs.items()),
    )
    async def on_batch(msg: KafkaMessage) -> None:
        await consumer.handle(msg.raw_message)


def by_topic(deliveries: Sequence[Delivery[T]]) -> dict[str, list[Delivery[T]]]:
    """The deliveries of a mixed batch grouped per topic, each group in arrival order."""
    groups: dict[str, list[Delivery[T]]] = {}
    for d in deliveries:
        groups.setdefault(d.record.topic, []).append(d)
    return groups
