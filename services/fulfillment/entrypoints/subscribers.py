"""What fulfillment consumes: one consumer (group ``oms-fulfillment``), delivery settings stated
below (libs/messaging/subscriber.py says what they mean). Only allocation's results: what
packing needs of the order comes with them, and returns ask order intake for prices."""

from __future__ import annotations

from collections.abc import Sequence

from faststream import AckPolicy

from libs.contracts import Topic
from libs.messaging.consumer import Delivery, EventMessage
from libs.messaging.subscriber import subscribe_batches
from libs.service_host import Runtime
from services.fulfillment.service_layer.mirroring import apply_allocation_results

INPUTS: dict[str, str] = {
    Topic.ALLOCATIONS: "Allocation results: the newest snapshot of each order's allocations with the order's lines "
                       "and ship_complete flag (pick lists, packing checks); AllocationPacked / PackRejected answer "
                       "pack requests and publish OrderPacked.",
}


def register(runtime: Runtime, group_id: str) -> None:
    async def process(deliveries: Sequence[Delivery[EventMessage]]) -> None:
        async with runtime.transaction() as conn:
            await apply_allocation_results(conn, [d.message for d in deliveries])

    subscribe_batches(
        runtime,
        group_id=group_id,
        inputs=INPUTS,
        process=process,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
    )
