"""Order prices read from order intake's public HTTP API (``GET /v1/orders/{order_id}``).

Configuration: ``OMS_ORDER_INTAKE_URL`` (default ``http://127.0.0.1:8001``) and the staff token
fulfillment presents, ``OMS_ORDER_INTAKE_TOKEN`` (a viewer token is enough; default the
embedded development viewer token). One short-lived client per call: returns are rare.
"""

from __future__ import annotations

import os
from decimal import Decimal, InvalidOperation
from urllib.parse import quote

import httpx

from services.fulfillment.service_layer.prices import OrderPrices, PricesUnavailable

DEFAULT_URL = "http://127.0.0.1:8001"
DEFAULT_TOKEN = "dev-viewer-token"


class IntakePrices:
    """The ``Prices`` port over order intake's HTTP API."""

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._base_url = (base_url or os.environ.get("OMS_ORDER_INTAKE_URL") or DEFAULT_URL).rstrip("/")
        self._token = token or os.environ.get("OMS_ORDER_INTAKE_TOKEN") or DEFAULT_TOKEN
        self._transport = transport
        self._timeout = timeout

    async def of_order(self, order_id: str) -> OrderPrices | None:
        try:
            async with httpx.AsyncClient(
                base_url=self._base_url, transport=self._transport, timeout=self._timeout,
                headers={"Authorization": f"Bearer {self._token}"},
            ) as client:
                resp = await client.get(f"/v1/orders/{quote(order_id, safe='')}")
        except httpx.HTTPError as exc:
            raise PricesUnavailable(f"order intake at {self._base_url} not reachable: {type(exc).__name__}") from exc
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise PricesUnavailable(f"order intake answered HTTP {resp.status_code} for the order's prices")
        try:
            body = resp.json()
            return OrderPrices(
                currency=str(body["currency"]),
                unit_prices={str(ln["line_id"]): Decimal(str(ln["unit_price"])) for ln in body["lines"]},
            )
        except (ValueError, KeyError, TypeError, InvalidOperation) as exc:
            raise PricesUnavailable(f"order intake's order view has no usable prices: {type(exc).__name__}") from exc
