"""Order prices read from order intake's public HTTP API (``GET /v1/orders/{order_id}``).

Configuration: ``OMS_ORDER_INTAKE_URL`` (default ``http://127.0.0.1:8001``) and the staff token
fulfillment presents, ``OMS_ORDER_INTAKE_TOKEN`` (a viewer token is enough; default the
embedded development viewer token). The call itself (one short-lived client, the retry
policy) is ``libs.service_host.peers``: returns are rare.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

from libs.service_host.peers import PeerAdapter
from services.fulfillment.service_layer.prices import OrderPrices, PricesUnavailable

DEFAULT_URL = "http://127.0.0.1:8001"


class IntakeOrders(PeerAdapter):
    """Order intake as fulfillment reads it: one order's view."""

    service = "order_intake"
    url_variable = "OMS_ORDER_INTAKE_URL"
    token_variable = "OMS_ORDER_INTAKE_TOKEN"
    default_url = DEFAULT_URL

    async def order_view(self, order_id: str, what: str) -> dict[str, Any] | None:
        """Order intake's view of one order (``None`` when it does not know the order)."""
        body = await self.get_json(f"/v1/orders/{quote(order_id, safe='')}", what, missing_ok=True)
        if body is not None and not isinstance(body, dict):
            raise self.port_unavailable(f"order intake's order view for {what} is not an object")
        return body


class IntakePrices(IntakeOrders):
    """The ``Prices`` port over order intake's HTTP API."""

    port_unavailable = PricesUnavailable

    async def of_order(self, order_id: str) -> OrderPrices | None:
        body = await self.order_view(order_id, "the order's prices")
        if body is None:
            return None
        try:
            return OrderPrices(
                currency=str(body["currency"]),
                unit_prices={str(ln["line_id"]): Decimal(str(ln["unit_price"])) for ln in body["lines"]},
            )
        except (ValueError, KeyError, TypeError, InvalidOperation) as exc:
            raise PricesUnavailable(f"order intake's order view has no usable prices: {type(exc).__name__}") from exc
