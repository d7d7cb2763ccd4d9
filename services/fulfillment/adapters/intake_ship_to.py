"""Ship-to addresses read from order intake's public HTTP API (``GET /v1/orders/{order_id}``),
configured like ``intake_api`` (``OMS_ORDER_INTAKE_URL``, ``OMS_ORDER_INTAKE_TOKEN``)."""

from __future__ import annotations

import httpx
from pydantic import ValidationError

from libs.contracts.orders import Address
from libs.service_host.peers import PeerUnavailable
from services.fulfillment.adapters.intake_api import order_intake, order_view
from services.fulfillment.service_layer.ship_to import ShipToUnavailable


class IntakeShipTo:
    """The ``ShipTo`` port over order intake's HTTP API."""

    def __init__(self, base_url: str | None = None, token: str | None = None, *,
                 transport: httpx.AsyncBaseTransport | None = None, timeout: float = 10.0) -> None:
        self._intake = order_intake(base_url, token, transport=transport, timeout=timeout)

    async def of_order(self, order_id: str) -> Address | None:
        try:
            body = await order_view(self._intake, order_id, "the order's address")
        except PeerUnavailable as exc:
            raise ShipToUnavailable(str(exc)) from exc
        if body is None:
            return None
        try:
            return Address.model_validate(body["ship_to"])
        except (KeyError, TypeError, ValidationError) as exc:
            raise ShipToUnavailable(f"order intake's order view has no usable ship_to: {type(exc).__name__}") from exc
