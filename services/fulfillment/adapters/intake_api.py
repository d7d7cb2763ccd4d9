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

import httpx

from libs.service_host.peers import Peer, PeerUnavailable
from services.fulfillment.service_layer.prices import OrderPrices, PricesUnavailable

DEFAULT_URL = "http://127.0.0.1:8001"


def order_intake(base_url: str | None = None, token: str | None = None, *,
                 transport: httpx.AsyncBaseTransport | None = None, timeout: float = 10.0) -> Peer:
    """Order intake as fulfillment reads it."""
    return Peer("order_intake", url_variable="OMS_ORDER_INTAKE_URL", token_variable="OMS_ORDER_INTAKE_TOKEN",
                default_url=DEFAULT_URL, base_url=base_url, token=token, transport=transport, timeout=timeout)


async def order_view(peer: Peer, order_id: str, what: str) -> dict[str, Any] | None:
    """Order intake's view of one order (``None`` when it does not know the order)."""
    body = await peer.get_json(f"/v1/orders/{quote(order_id, safe='')}", what, missing_ok=True)
    if body is not None and not isinstance(body, dict):
        raise peer.unavailable(f"order intake's order view for {what} is not an object")
    return body


class IntakePrices:
    """The ``Prices`` port over order intake's HTTP API."""

    def __init__(self, base_url: str | None = None, token: str | None = None, *,
                 transport: httpx.AsyncBaseTransport | None = None, timeout: float = 10.0) -> None:
        self._intake = order_intake(base_url, token, transport=transport, timeout=timeout)

    async def of_order(self, order_id: str) -> OrderPrices | None:
        try:
            body = await order_view(self._intake, order_id, "the order's prices")
        except PeerUnavailable as exc:
            raise PricesUnavailable(str(exc)) from exc
        if body is None:
            return None
        try:
            return OrderPrices(
                currency=str(body["currency"]),
                unit_prices={str(ln["line_id"]): Decimal(str(ln["unit_price"])) for ln in body["lines"]},
            )
        except (ValueError, KeyError, TypeError, InvalidOperation) as exc:
            raise PricesUnavailable(f"order intake's order view has no usable prices: {type(exc).__name__}") from exc
