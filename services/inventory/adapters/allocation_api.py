"""Reservations read from allocation's public HTTP API (``GET /v1/reports/reserved``).

Configuration: ``OMS_ALLOCATION_URL`` (default ``http://127.0.0.1:8003``) and the staff token
inventory presents, ``OMS_ALLOCATION_TOKEN`` (a viewer token is enough; default the embedded
development viewer token). The call itself (one short-lived client, the retry policy) is
``libs.service_host.peers``: stock takes are rare.
"""

from __future__ import annotations

from typing import Any

from libs.service_host.peers import PeerAdapter
from services.inventory.service_layer.reservations import (
    PositionAtLocation,
    PositionOfSku,
    ReservationsUnavailable,
)

DEFAULT_URL = "http://127.0.0.1:8003"


class AllocationReservations(PeerAdapter):
    """The ``Reservations`` port over allocation's HTTP API."""

    service = "allocation"
    url_variable = "OMS_ALLOCATION_URL"
    token_variable = "OMS_ALLOCATION_TOKEN"
    default_url = DEFAULT_URL
    port_unavailable = ReservationsUnavailable

    async def at_location(self, location_id: str) -> dict[PositionAtLocation, int]:
        rows = await self._get({"location_id": location_id})
        return {(r["sku"], r["bin"], r["lot"]): int(r["reserved"]) for r in rows}

    async def of_sku(self, sku: str) -> dict[PositionOfSku, int]:
        rows = await self._get({"sku": sku})
        return {(r["location_id"], r["bin"], r["lot"]): int(r["reserved"]) for r in rows}

    async def _get(self, params: dict[str, str]) -> list[dict[str, Any]]:
        body = await self.get_json("/v1/reports/reserved", "reserved quantities", params=params)
        if not isinstance(body, list):
            raise ReservationsUnavailable("allocation's reserved report is not a list")
        return body
