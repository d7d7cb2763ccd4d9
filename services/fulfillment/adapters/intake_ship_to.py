"""Ship-to addresses read from order intake's public HTTP API (``GET /v1/orders/{order_id}``),
configured like ``intake_api`` (``OMS_ORDER_INTAKE_URL``, ``OMS_ORDER_INTAKE_TOKEN``)."""

from __future__ import annotations

from pydantic import ValidationError

from libs.contracts.orders import Address
from services.fulfillment.adapters.intake_api import IntakeOrders
from services.fulfillment.service_layer.ship_to import ShipToUnavailable


class IntakeShipTo(IntakeOrders):
    """The ``ShipTo`` port over order intake's HTTP API."""

    port_unavailable = ShipToUnavailable

    async def of_order(self, order_id: str) -> Address | None:
        body = await self.order_view(order_id, "the order's address")
        if body is None:
            return None
        try:
            return Address.model_validate(body["ship_to"])
        except (KeyError, TypeError, ValidationError) as exc:
            raise ShipToUnavailable(f"order intake's order view has no usable ship_to: {type(exc).__name__}") from exc
