"""SQL that several of fulfillment's use cases ask, written once (the rest of each use case's SQL
stays beside it, in its service_layer module)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.contracts.events import ShipmentLine


class OrderShipmentLine(NamedTuple):
    """A packed line as ``shipment_lines`` stores it: the shipment's id and order beside it."""

    shipment_id: str
    order_id: str
    line: ShipmentLine


async def shipment_lines(conn: AsyncConnection, shipment_id: str) -> Sequence[RowMapping]:
    """A shipment's lines (with serials), by line then allocation."""
    return (
        (
            await conn.execute(
                text(
                    "SELECT allocation_id, line_id, sku, location_id, bin, lot, qty, serials"
                    " FROM shipment_lines"
                    " WHERE shipment_id = :s ORDER BY line_id, allocation_id"
                ),
                {"s": shipment_id},
            )
        )
        .mappings()
        .all()
    )
