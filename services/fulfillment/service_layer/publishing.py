"""How fulfillment publishes: every event names ``SOURCE``; one about an order goes on the
fulfillment topic keyed and correlated by the order (through the outbox, in the caller's
transaction)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from libs.contracts import Topic, new_envelope
from libs.contracts.events import Event
from libs.messaging import OutboxMessage, write_outbox
from services.fulfillment.adapters.tables import SCHEMA

SOURCE = "fulfillment"


async def publish_about_order(conn: AsyncConnection, order_id: str, event: Event) -> None:
    """Write ``event`` to the outbox for the fulfillment topic, keyed and correlated by ``order_id``."""
    await write_outbox(conn, SCHEMA, [OutboxMessage(
        Topic.FULFILLMENT, order_id, new_envelope(event, source=SOURCE, correlation_id=order_id))])
