"""Kafka subscribers of inventory. Each states its delivery settings where it is declared:
offsets are committed only after the handler (and so the database transaction) succeeded
(``AckPolicy.NACK_ON_ERROR``: on an infrastructure error the batch is rewound and redelivered),
a new consumer group starts from the beginning of the topic (``earliest``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from faststream import AckPolicy
from faststream.kafka.annotations import KafkaMessage
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.contracts import Topic
from libs.contracts.envelope import Envelope
from libs.contracts.events import Event
from libs.messaging.consumer import (
    BatchConsumer,
    Delivery,
    EventMessage,
    PermanentMessageError,
    decode_envelope,
    keep_raw_records,
)
from libs.service_host import Runtime
from services.inventory.service_layer.events import apply_fulfillment_events
from services.inventory.service_layer.stock import StockRefused

UseCase = Callable[[AsyncConnection, Sequence[tuple[Envelope, Event]]], Awaitable[int]]


def register(runtime: Runtime, group_id: str) -> None:
    _subscribe(
        runtime,
        group_id,
        Topic.FULFILLMENT,
        apply_fulfillment_events,
        "OrderShipped: one StockAdjusted(reason=shipment) per line; ReturnReceived: stock back at the "
        "position (sellable) or into the location's QUARANTINE bin (damaged). Other types are ignored.",
    )


def _subscribe(runtime: Runtime, group_id: str, topic: str, use_case: UseCase, description: str) -> None:
    kafka = runtime.kafka
    group_id = f"{group_id}.{topic}"  # one consumer group per topic: independent lag and scaling

    async def process(deliveries: Sequence[Delivery[EventMessage]]) -> None:
        try:
            async with runtime.engine.begin() as conn:
                changed = await use_case(conn, [(d.message.envelope, d.message.event) for d in deliveries])
        except StockRefused as exc:
            # e.g. a return to a location inventory does not know: retrying cannot help.
            raise PermanentMessageError(str(exc)) from exc
        if changed:
            runtime.relay.notify()

    consumer = BatchConsumer(
        topic=topic,
        group_id=group_id,
        producer=runtime.producer,
        settings=kafka,
        process=process,
        decode=decode_envelope,
        engine=runtime.engine,  # dead-letter each record once, also on a replay
    )

    @runtime.broker.subscriber(
        topic,
        group_id=group_id,
        batch=True,
        max_records=kafka.max_batch,
        batch_timeout_ms=kafka.batch_wait_ms,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        fetch_max_wait_ms=kafka.fetch_max_wait_ms,
        decoder=keep_raw_records,  # BatchConsumer decodes the raw records itself
        description=description,
    )
    async def on_batch(msg: KafkaMessage) -> None:
        await consumer.handle(msg.raw_message)
