"""What inventory consumes: one consumer (group ``oms-inventory``), delivery settings stated
below (libs/messaging/subscriber.py says what they mean)."""

from __future__ import annotations

from collections.abc import Sequence

from faststream import AckPolicy

from libs.contracts import Topic
from libs.messaging.consumer import Delivery, EventMessage, PermanentMessageError
from libs.messaging.subscriber import subscribe_batches
from libs.service_host import Runtime
from services.inventory.service_layer.events import apply_fulfillment_events
from services.inventory.service_layer.stock import StockRefused

INPUTS: dict[str, str] = {
    Topic.FULFILLMENT: "OrderShipped: one StockAdjusted(reason=shipment) per line; ReturnReceived: stock back at "
                       "the position (sellable) or into the location's QUARANTINE bin (damaged). Other types are "
                       "ignored.",
}


def register(runtime: Runtime, group_id: str) -> None:
    async def process(deliveries: Sequence[Delivery[EventMessage]]) -> None:
        try:
            async with runtime.transaction() as conn:
                await apply_fulfillment_events(conn, [d.message for d in deliveries])
        except StockRefused as exc:
            # e.g. a return to a location inventory does not know: retrying cannot help.
            raise PermanentMessageError(str(exc)) from exc

    subscribe_batches(
        runtime,
        group_id=group_id,
        inputs=INPUTS,
        process=process,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
    )
