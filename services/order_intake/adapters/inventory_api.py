"""Location ids read from inventory's public HTTP API (``GET /v1/locations``).

Configuration: ``OMS_INVENTORY_URL`` (default ``http://127.0.0.1:8002``) and the staff token
intake presents, ``OMS_INVENTORY_TOKEN`` (a viewer token is enough; default the embedded
development viewer token). One short-lived client per call: rules are written rarely.
"""

from __future__ import annotations

import os

import httpx

from services.order_intake.service_layer.locations import LocationsUnavailable

DEFAULT_URL = "http://127.0.0.1:8002"
DEFAULT_TOKEN = "dev-viewer-token"


class InventoryLocations:
    """The ``KnownLocations`` port over inventory's HTTP API."""

    def __init__(self, base_url: str | None = None, token: str | None = None, *,
                 transport: httpx.AsyncBaseTransport | None = None, timeout: float = 10.0) -> None:
        self._base_url = (base_url or os.environ.get("OMS_INVENTORY_URL") or DEFAULT_URL).rstrip("/")
        self._token = token or os.environ.get("OMS_INVENTORY_TOKEN") or DEFAULT_TOKEN
        self._transport = transport
        self._timeout = timeout

    async def ids(self) -> set[str]:
        try:
            async with httpx.AsyncClient(base_url=self._base_url, transport=self._transport, timeout=self._timeout,
                                         headers={"Authorization": f"Bearer {self._token}"}) as client:
                resp = await client.get("/v1/locations")
        except httpx.HTTPError as exc:
            raise LocationsUnavailable(f"inventory at {self._base_url} not reachable: {type(exc).__name__}") from exc
        if resp.status_code != 200:
            raise LocationsUnavailable(f"inventory answered HTTP {resp.status_code} for its locations")
        body = resp.json()
        if not isinstance(body, list):
            raise LocationsUnavailable("inventory's location list is not a list")
        return {str(loc["location_id"]) for loc in body if isinstance(loc, dict) and "location_id" in loc}
