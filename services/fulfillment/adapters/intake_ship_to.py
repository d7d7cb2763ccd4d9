"""Ship-to addresses read from order intake's public HTTP API (``GET /v1/orders/{order_id}``),
configured like ``intake_api`` (``OMS_ORDER_INTAKE_URL``, ``OMS_ORDER_INTAKE_TOKEN``)."""

from __future__ import annotations

import os
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from libs.contracts.orders import Address
from services.fulfillment.adapters.intake_api import DEFAULT_TOKEN, DEFAULT_URL
from services.fulfillment.service_layer.ship_to import ShipToUnavailable


class IntakeShipTo:
    """The ``ShipTo`` port over order intake's HTTP API."""

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

    async def of_order(self, order_id: str) -> Address | None:
        try:
            async with httpx.AsyncClient(
                base_url=self._base_url, transport=self._transport, timeout=self._timeout,
                headers={"Authorization": f"Bearer {self._token}"},
            ) as client:
                resp = await client.get(f"/v1/orders/{quote(order_id, safe='')}")
        except httpx.HTTPError as exc:
            raise ShipToUnavailable(f"order intake at {self._base_url} not reachable: {type(exc).__name__}") from exc
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise ShipToUnavailable(f"order intake answered HTTP {resp.status_code} for the order's address")
        try:
            return Address.model_validate(resp.json()["ship_to"])
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            raise ShipToUnavailable(f"order intake's order view has no usable ship_to: {type(exc).__name__}") from exc
