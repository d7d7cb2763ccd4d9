"""Kafka subscribers of order intake. Each states its delivery settings where it is declared:
offsets are committed only after the handler (and so the database transaction) succeeded
(``AckPolicy.NACK_ON_ERROR``: on an infrastructure error the batch is rewound and redelivered),
a new consumer group starts from the beginning of the topic (``earliest``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from faststream import AckPolicy
from faststream.kafka.annotations import KafkaMessage

from libs.contracts import Topic
from libs.contracts.orders import Problem
from libs.messaging import claim_new_events
from libs.messaging.consumer import BatchConsumer, Delivery, EventMessage, decode_envelope, keep_raw_records
from libs.service_host import Runtime
from services.order_intake.service_layer.placing import Incoming, parse_json, place_orders, record_ref
from services.order_intake.service_layer.tracking import apply_downstream_events


def _decode_channel_order(record: Any) -> tuple[Any, Problem | None]:
    """The document, or the JSON parser's own words when the value is not JSON (also invalid
    UTF-8): such an order is rejected with them, never dead-lettered (it is a connector bug)."""
    return parse_json(record.value)


def register(runtime: Runtime, group_id: str) -> None:
    broker, kafka = runtime.broker, runtime.kafka

    async def handle_channel_orders(deliveries: Sequence[Delivery[Any]]) -> None:
        async with runtime.engine.begin() as conn:
            refs = [record_ref(d.record.topic, d.record.partition, d.record.offset) for d in deliveries]
            fresh = await claim_new_events(conn, refs)
            incoming = [
                Incoming(
                    document=d.message[0],
                    key=(d.record.key or b"").decode(errors="replace"),
                    correlation_id=_header(d.record, "correlation_id"),
                    parse_problem=d.message[1],
                )
                for d, ref in zip(deliveries, refs, strict=True)
                if ref in fresh
            ]
            await place_orders(conn, incoming, publish_rejections=True)
        runtime.relay.notify()

    channel_orders = BatchConsumer(
        topic=Topic.CHANNEL_ORDERS, group_id=f"{group_id}.{Topic.CHANNEL_ORDERS}", producer=runtime.producer, settings=kafka,
        process=handle_channel_orders, decode=_decode_channel_order, engine=runtime.engine,
    )

    @broker.subscriber(
        Topic.CHANNEL_ORDERS,
        group_id=f"{group_id}.{Topic.CHANNEL_ORDERS}",  # one consumer group per topic: independent lag
        batch=True,
        max_records=kafka.max_batch,
        batch_timeout_ms=kafka.batch_wait_ms,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        fetch_max_wait_ms=kafka.fetch_max_wait_ms,
        decoder=keep_raw_records,  # BatchConsumer decodes the raw records itself
        description="Orders from channel connectors: validated, stored, announced as OrderPlaced, "
        "or answered on oms.channel-orders.rejected.v1.",
    )
    async def on_channel_orders(msg: KafkaMessage) -> None:
        await channel_orders.handle(msg.raw_message)

    async def handle_downstream(deliveries: Sequence[Delivery[EventMessage]]) -> None:
        async with runtime.engine.begin() as conn:
            await apply_downstream_events(conn, deliveries)

    for topic, description in (
        (Topic.ALLOCATIONS, "Allocation results: line quantities by state and the order timeline."),
        (Topic.FULFILLMENT, "Packing, shipping and returns: the order timeline."),
    ):
        _subscribe_downstream(runtime, group_id, topic, description, handle_downstream)


def _subscribe_downstream(runtime: Runtime, group_id: str, topic: str, description: str, process: Any) -> None:
    kafka = runtime.kafka
    group_id = f"{group_id}.{topic}"
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
    async def on_downstream(msg: KafkaMessage) -> None:
        await consumer.handle(msg.raw_message)


def _header(record: Any, name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name:
            return value.decode(errors="replace")
    return None
