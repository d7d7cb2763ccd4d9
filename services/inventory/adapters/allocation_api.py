"""Reservations read from allocation's public HTTP API (``GET /v1/reports/reserved``).

Configuration: ``OMS_ALLOCATION_URL`` (default ``http://127.0.0.1:8003``) and the staff token
inventory presents, ``OMS_ALLOCATION_TOKEN`` (a viewer token is enough; default the embedded
development viewer token). One short-lived client per call: stock takes are rare.
"""

from __future__ import annotations

import os
from typing import Any

import httpx

from services.inventory.service_layer.reservations import (
    PositionAtLocation,
    PositionOfSku,
    ReservationsUnavailable,
)

DEFAULT_URL = "http://127.0.0.1:8003"
DEFAULT_TOKEN = "dev-viewer-token"


class AllocationReservations:
    """The ``Reservations`` port over allocation's HTTP API."""

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._base_url = (base_url or os.environ.get("OMS_ALLOCATION_URL") or DEFAULT_URL).rstrip("/")
        self._token = token or os.environ.get("OMS_ALLOCATION_TOKEN") or DEFAULT_TOKEN
        self._transport = transport
        self._timeout = timeout

    async def at_location(self, location_id: str) -> dict[PositionAtLocation, int]:
        rows = await self._get({"location_id": location_id})
        return {(r["sku"], r["bin"], r["lot"]): int(r["reserved"]) for r in rows}

    async def of_sku(self, sku: str) -> dict[PositionOfSku, int]:
        rows = await self._get({"sku": sku})
        return {(r["location_id"], r["bin"], r["lot"]): int(r["reserved"]) for r in rows}

    async def _get(self, params: dict[str, str]) -> list[dict[str, Any]]:
        try:
            async with httpx.AsyncClient(
                base_url=self._base_url, transport=self._transport, timeout=self._timeout,
                headers={"Authorization": f"Bearer {self._token}"},
            ) as client:
                resp = await client.get("/v1/reports/reserved", params=params)
        except httpx.HTTPError as exc:
            raise ReservationsUnavailable(f"allocation at {self._base_url} not reachable: {type(exc).__name__}") from exc
        if resp.status_code != 200:
            raise ReservationsUnavailable(f"allocation answered HTTP {resp.status_code} for reserved quantities")
        body = resp.json()
        if not isinstance(body, list):
            raise ReservationsUnavailable("allocation's reserved report is not a list")
        return body
