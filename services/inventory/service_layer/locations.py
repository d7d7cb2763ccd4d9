"""Use cases for locations: create or replace, change some fields (e.g. deactivate), list.

Every change is announced as LocationChanged (key location_id) in the same transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.contracts import Topic, new_envelope
from libs.contracts.events import LocationChanged
from libs.messaging import OutboxMessage, write_outbox
from services.inventory.adapters.tables import SCHEMA

SOURCE = "inventory"


class LocationNotFound(LookupError):
    pass


_COLUMNS = "id, name, kind, country, lat, lon, active, priority, ships_to, channels, pickup, updated_at"


async def save_location(conn: AsyncConnection, location: LocationChanged) -> bool:
    """Create or replace a location and announce it; True when it was new."""
    row = (
        await conn.execute(
            text(
                "INSERT INTO locations (id, name, kind, country, lat, lon, active, priority, ships_to,"
                " channels, pickup)"
                " VALUES (:id, :name, :kind, :country, :lat, :lon, :active, :priority, :ships_to, :channels,"
                " :pickup)"
                " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind,"
                " country = EXCLUDED.country, lat = EXCLUDED.lat, lon = EXCLUDED.lon,"
                " active = EXCLUDED.active,"
                " priority = EXCLUDED.priority, ships_to = EXCLUDED.ships_to, channels = EXCLUDED.channels,"
                " pickup = EXCLUDED.pickup, updated_at = now()"
                " RETURNING (xmax = 0) AS created"
            ),
            {
                "id": location.location_id,
                "name": location.name,
                "kind": location.kind,
                "country": location.country,
                "lat": location.lat,
                "lon": location.lon,
                "active": location.active,
                "priority": location.priority,
                "ships_to": list(location.ships_to),
                "channels": list(location.channels) if location.channels is not None else None,
                "pickup": location.pickup,
            },
        )
    ).one()
    envelope = new_envelope(location, source=SOURCE, correlation_id=f"location:{location.location_id}")
    await write_outbox(conn, SCHEMA, [OutboxMessage(Topic.INVENTORY, location.location_id, envelope)])
    return bool(row.created)


async def get_location(conn: AsyncConnection, location_id: str, *, lock: bool = False) -> dict[str, Any]:
    row = (
        (
            await conn.execute(
                text(f"SELECT {_COLUMNS} FROM locations WHERE id = :id" + (" FOR UPDATE" if lock else "")),
                {"id": location_id},
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise LocationNotFound(location_id)
    return _view(row)


async def list_locations(conn: AsyncConnection, active: bool | None = None) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text(
            f"SELECT {_COLUMNS} FROM locations WHERE (CAST(:a AS boolean) IS NULL OR active = :a) ORDER BY id"
        ),
        {"a": active},
    )
    return [_view(r) for r in rows.mappings()]


def _view(row: Any) -> dict[str, Any]:
    view = dict(row)
    view["location_id"] = view.pop("id")
    view["ships_to"] = list(view["ships_to"] or [])
    return view
