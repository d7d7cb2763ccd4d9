"""What fulfillment consumes: one consumer (group ``oms-fulfillment``), delivery settings stated
below (libs/messaging/subscriber.py says what they mean)."""

from __future__ import annotations

from collections.abc import Sequence

from faststream import AckPolicy

from libs.contracts import Topic
from libs.messaging.consumer import Delivery, EventMessage
from libs.messaging.subscriber import by_topic, subscribe_batches
from libs.service_host import Runtime
from services.fulfillment.service_layer.mirroring import apply_allocation_results, apply_order_events

INPUTS: dict[str, str] = {
    Topic.ORDERS: "Placed orders: line SKUs, unit prices (for refunds) and the ship_complete flag.",
    Topic.ALLOCATIONS: "Allocation results: the newest snapshot of each order's allocations (pick lists, packing "
                       "checks); AllocationPacked / PackRejected answer pack requests and publish OrderPacked.",
}


def register(runtime: Runtime, group_id: str) -> None:
    async def process(deliveries: Sequence[Delivery[EventMessage]]) -> None:
        topics = by_topic(deliveries)
        async with runtime.transaction() as conn:
            # Orders first: a snapshot in the same batch may be about an order placed in it.
            if orders := topics.get(Topic.ORDERS):
                await apply_order_events(conn, [d.message for d in orders])
            if results := topics.get(Topic.ALLOCATIONS):
                await apply_allocation_results(conn, [d.message for d in results])

    subscribe_batches(
        runtime,
        group_id=group_id,
        inputs=INPUTS,
        process=process,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
    )
