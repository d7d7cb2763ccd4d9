"""Kafka subscribers of fulfillment. Each states its delivery settings where it is declared:
offsets are committed only after the handler (and so the database transaction) succeeded
(``AckPolicy.NACK_ON_ERROR``: on an infrastructure error the batch is rewound and redelivered),
a new consumer group starts from the beginning of the topic (``earliest``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from faststream import AckPolicy
from faststream.kafka.annotations import KafkaMessage
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.contracts import Topic
from libs.messaging.consumer import BatchConsumer, Delivery, EventMessage, decode_envelope, keep_raw_records
from libs.service_host import Runtime
from services.fulfillment.service_layer.mirroring import apply_allocation_results, apply_order_events

UseCase = Callable[[AsyncConnection, Sequence[EventMessage]], Awaitable[None]]


def register(runtime: Runtime, group_id: str) -> None:
    for topic, use_case, description in (
        (
            Topic.ORDERS,
            apply_order_events,
            "Placed orders: line SKUs, unit prices (for refunds) and the ship_complete flag.",
        ),
        (
            Topic.ALLOCATIONS,
            apply_allocation_results,
            "Allocation results: the newest snapshot of each order's allocations (pick lists, packing "
            "checks); AllocationPacked / PackRejected answer pack requests and publish OrderPacked.",
        ),
    ):
        _subscribe(runtime, f"{group_id}.{topic}", topic, use_case, description)


def _subscribe(runtime: Runtime, group_id: str, topic: str, use_case: UseCase, description: str) -> None:
    kafka = runtime.kafka

    async def process(deliveries: Sequence[Delivery[EventMessage]]) -> None:
        async with runtime.engine.begin() as conn:
            await use_case(conn, [d.message for d in deliveries])
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
        group_id=group_id,  # one consumer group per topic: independent lag
        batch=True,
        max_records=kafka.max_batch,
        batch_timeout_ms=kafka.batch_wait_ms,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        fetch_max_wait_ms=kafka.fetch_max_wait_ms,
        decoder=keep_raw_records,  # BatchConsumer decodes the raw records itself
        description=description,
    )
    async def on_events(msg: KafkaMessage) -> None:
        await consumer.handle(msg.raw_message)
