"""SQL that several of inventory's use cases ask, written once (the rest of each use case's SQL
stays beside it, in its service_layer module)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


async def location_exists(conn: AsyncConnection, location_id: str) -> bool:
    """Whether inventory knows the location (active or not)."""
    found = (await conn.execute(text("SELECT 1 FROM locations WHERE id = :l"), {"l": location_id})).first()
    return found is not None
