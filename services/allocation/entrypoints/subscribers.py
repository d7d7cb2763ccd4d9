"""Kafka subscribers of allocation. Each states its delivery settings where it is declared:
offsets are committed only after the handler (and so the database transaction) succeeded
(``AckPolicy.NACK_ON_ERROR``: on an infrastructure error the batch is rewound and redelivered),
a new consumer group starts from the beginning of the topic (``earliest``), one consumer group
per topic (``oms-allocation.<topic>``) so each topic's lag is seen and scaled on its own."""

from __future__ import annotations

from collections.abc import Sequence

from faststream import AckPolicy
from faststream.kafka.annotations import KafkaMessage

from libs.contracts import Topic
from libs.messaging.consumer import BatchConsumer, Delivery, EventMessage, decode_envelope, keep_raw_records
from libs.service_host import Runtime
from services.allocation.service_layer.allocating import apply_events

INPUTS = (
    (Topic.ORDERS, "OrderPlaced, OrderCancelled, OrderModified: allocate, release, backorder; publishes "
                   "allocation results on oms.allocations.v1."),
    (Topic.INVENTORY, "StockAdjusted and LocationChanged: mirror on_hand (stale seq ignored), close shipped "
                      "allocations, release on shrink, fill backorders on arrival, re-allocate on deactivation."),
    (Topic.FULFILLMENT, "PackRequested: mark the still-allocated units packed (AllocationPacked) or refuse "
                        "(PackRejected); the race-free hand-over to packing."),
)


def register(runtime: Runtime, group_prefix: str) -> None:
    async def process(deliveries: Sequence[Delivery[EventMessage]]) -> None:
        async with runtime.engine.begin() as conn:
            book = await apply_events(conn, [(d.message.envelope, d.message.event) for d in deliveries])
        if book is not None and (book.results or book.changed_positions):
            runtime.relay.notify()

    for topic, description in INPUTS:
        _subscribe(runtime, f"{group_prefix}.{topic}", topic, description, process)


def _subscribe(runtime: Runtime, group_id: str, topic: str, description: str, process) -> None:  # type: ignore[no-untyped-def]
    kafka = runtime.kafka
    consumer = BatchConsumer(
        topic=topic, group_id=group_id, producer=runtime.producer, settings=kafka,
        process=process, decode=decode_envelope, engine=runtime.engine,
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
