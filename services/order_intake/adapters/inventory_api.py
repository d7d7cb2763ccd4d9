"""Location ids read from inventory's public HTTP API (``GET /v1/locations``).

Configuration: ``OMS_INVENTORY_URL`` (default ``http://127.0.0.1:8002``) and the staff token
intake presents, ``OMS_INVENTORY_TOKEN`` (a viewer token is enough; default the embedded
development viewer token). The call itself (one short-lived client, the retry policy) is
``libs.service_host.peers``: rules are written rarely.
"""

from __future__ import annotations

from libs.service_host.peers import PeerAdapter
from services.order_intake.service_layer.locations import LocationsUnavailable

DEFAULT_URL = "http://127.0.0.1:8002"


class InventoryLocations(PeerAdapter):
    """The ``KnownLocations`` port over inventory's HTTP API."""

    service = "inventory"
    url_variable = "OMS_INVENTORY_URL"
    token_variable = "OMS_INVENTORY_TOKEN"
    default_url = DEFAULT_URL
    port_unavailable = LocationsUnavailable

    async def ids(self) -> set[str]:
        body = await self.get_json("/v1/locations", "its locations")
        if not isinstance(body, list):
            raise LocationsUnavailable("inventory's location list is not a list")
        return {str(loc["location_id"]) for loc in body if isinstance(loc, dict) and "location_id" in loc}
