"""Location ids read from inventory's public HTTP API (``GET /v1/locations``).

Configuration: ``OMS_INVENTORY_URL`` (default ``http://127.0.0.1:8002``) and the staff token
intake presents, ``OMS_INVENTORY_TOKEN`` (a viewer token is enough; default the embedded
development viewer token). The call itself (one short-lived client, the retry policy) is
``libs.service_host.peers``: rules are written rarely.
"""

from __future__ import annotations

import httpx

from libs.service_host.peers import Peer, PeerUnavailable
from services.order_intake.service_layer.locations import LocationsUnavailable

DEFAULT_URL = "http://127.0.0.1:8002"


class InventoryLocations:
    """The ``KnownLocations`` port over inventory's HTTP API."""

    def __init__(self, base_url: str | None = None, token: str | None = None, *,
                 transport: httpx.AsyncBaseTransport | None = None, timeout: float = 10.0) -> None:
        self._inventory = Peer("inventory", url_variable="OMS_INVENTORY_URL", token_variable="OMS_INVENTORY_TOKEN",
                               default_url=DEFAULT_URL, base_url=base_url, token=token, transport=transport,
                               timeout=timeout)

    async def ids(self) -> set[str]:
        try:
            body = await self._inventory.get_json("/v1/locations", "its locations")
        except PeerUnavailable as exc:
            raise LocationsUnavailable(str(exc)) from exc
        if not isinstance(body, list):
            raise LocationsUnavailable("inventory's location list is not a list")
        return {str(loc["location_id"]) for loc in body if isinstance(loc, dict) and "location_id" in loc}
