"""What allocation consumes: one consumer (group ``oms-allocation``) over its three input
topics, delivery settings stated below (libs/messaging/subscriber.py says what they mean)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from faststream import AckPolicy

from libs.contracts import Topic
from libs.messaging.consumer import Delivery, EventMessage
from libs.messaging.subscriber import subscribe_batches
from libs.service_host import Runtime
from services.allocation.service_layer.allocating import apply_events

INPUTS: dict[str, str] = {
    Topic.ORDERS: "OrderPlaced, OrderCancelled, OrderModified, OrderHeld, OrderHoldReleased: allocate, release, "
                  "backorder, hold; publishes "
                  "allocation results on oms.allocations.v1.",
    Topic.INVENTORY: "StockAdjusted and LocationChanged: mirror on_hand (stale seq ignored), close shipped "
                     "allocations, release on shrink, fill backorders on arrival, re-allocate on deactivation.",
    Topic.FULFILLMENT: "PackRequested: mark the still-allocated units packed (AllocationPacked) or refuse "
                       "(PackRejected); the race-free hand-over to packing.",
}


def register(runtime: Runtime, group_id: str, on_filling: Callable[[], None] = lambda: None) -> None:
    """``on_filling``: called after a commit that left a long backorder queue being filled
    (service_layer/refill.py fills the rest)."""
    async def process(deliveries: Sequence[Delivery[EventMessage]]) -> None:
        async with runtime.transaction() as conn:
            book = await apply_events(conn, [d.message for d in deliveries])
        if book is not None:
            if book.queue.filling:
                on_filling()
            book.release()

    subscribe_batches(
        runtime,
        group_id=group_id,
        inputs=INPUTS,
        process=process,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
    )
