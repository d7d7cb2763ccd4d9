"""What order intake consumes: one consumer (group ``oms-order-intake``) over channel orders and
the downstream events that keep the order view current, delivery settings stated below
(libs/messaging/subscriber.py says what they mean)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiokafka import ConsumerRecord
from faststream import AckPolicy
from pydantic import BaseModel, ConfigDict, Field

from libs.contracts import Topic
from libs.contracts.events import EVENT_TYPES, AllocationResult, Event
from libs.messaging.consumer import Delivery, EventMessage, correlation_of, decode_envelope
from libs.messaging.subscriber import by_topic, subscribe_batches
from libs.service_host import Runtime
from services.order_intake.service_layer.placing import Incoming, parse_json, place_orders
from services.order_intake.service_layer.tracking import apply_downstream_events

INPUTS: dict[str, str] = {
    Topic.CHANNEL_ORDERS: "Orders from channel connectors: validated, stored, announced as OrderPlaced, "
                          "or answered on oms.channel-orders.rejected.v1.",
    Topic.ALLOCATIONS: "Allocation results: line quantities by state and the order timeline.",
    Topic.FULFILLMENT: "Packing, shipping and returns: the order timeline.",
}


def _decode(record: ConsumerRecord[Any, Any]) -> Any:
    """Channel orders: the document, or the JSON parser's own words when the value is not JSON
    (also invalid UTF-8): such an order is rejected with them, never dead-lettered (it is a
    connector bug). Everything else is one of our events."""
    if record.topic == Topic.CHANNEL_ORDERS:
        return parse_json(record.value)
    return decode_envelope(record, _AS_INTAKE_READS)


class UnreadAllocation(BaseModel):
    """One of a result's allocations, which order intake does not read (which bin, lot and
    location: its view has none of it): checked to be an object, nothing of it kept."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class AllocationSnapshot(AllocationResult):
    """An allocation result as order intake reads it: ``allocations`` not validated item by item
    (half the CPU of validating every allocation line too) nor built as dicts (the decoder
    parses the bytes itself: an empty object per allocation costs ~20 % less of the decode than
    a dict of ten keys). A value it cannot read is refused as the full decoder refuses it, naming
    the problem (and dead-lettered)."""

    allocations: list[UnreadAllocation] = Field(default_factory=list)  # type: ignore[assignment]


# Every allocation result type read as an AllocationSnapshot; every other event as it is.
_AS_INTAKE_READS: dict[str, type[Event]] = {
    name: AllocationSnapshot if issubclass(model, AllocationResult) else model for name, model in EVENT_TYPES.items()}


def register(runtime: Runtime, group_id: str) -> None:
    async def process(deliveries: Sequence[Delivery[Any]]) -> None:
        topics = by_topic(deliveries)
        orders = topics.pop(Topic.CHANNEL_ORDERS, [])
        events: list[EventMessage] = [d.message for ds in topics.values() for d in ds]

        async def place() -> None:
            async with runtime.transaction() as conn:
                await place_orders(conn, _incoming(orders), publish_rejections=True)

        async def track() -> None:
            async with runtime.transaction() as conn:
                await apply_downstream_events(conn, events)

        # Two transactions side by side (they touch different orders: new ones, and ones placed
        # before): new orders do not wait for the order view's updates. Each is idempotent
        # (orders by their channel key, the rest by the inbox), so when one fails and the batch is redelivered, the other's repeat is a no-op.
        outcomes = await asyncio.gather(*([place()] if orders else []), *([track()] if events else []),
                                        return_exceptions=True)
        for outcome in outcomes:  # both finished (committed or rolled back): report the first failure
            if isinstance(outcome, BaseException):
                raise outcome

    subscribe_batches(
        runtime,
        group_id=group_id,
        inputs=INPUTS,
        process=process,
        decode=_decode,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
    )


def _incoming(deliveries: list[Delivery[Any]]) -> list[Incoming]:
    """The channel orders of a batch, each with where its record is: a redelivered order finds
    itself stored (placing.py), a redelivered rejection its record in the inbox."""
    return [
        Incoming(
            document=d.message[0],
            key=(d.record.key or b"").decode(errors="replace"),
            correlation_id=correlation_of(d.record),
            parse_problem=d.message[1],
            record=(d.record.topic, d.record.partition, d.record.offset),
        )
        for d in deliveries
    ]
