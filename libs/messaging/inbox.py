"""The inbox: which events a service has already applied, written in the effect's transaction.

A redelivered or replayed event finds its id here and is skipped, so it has no second effect.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import Column, DateTime, MetaData, Table, func, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import AsyncConnection


def inbox_table(metadata: MetaData) -> Table:
    return Table(
        "inbox",
        metadata,
        Column("event_id", UUID(as_uuid=True), primary_key=True),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


_CLAIM = text(
    "INSERT INTO inbox (event_id) SELECT unnest(CAST(:ids AS uuid[])) "
    "ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
)


async def claim_new_events(conn: AsyncConnection, event_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Record ``event_ids`` as processed; return the ones that were not processed before.

    Call inside the transaction that applies the effects, so both commit or neither does.
    """
    if not event_ids:
        return set()
    rows = await conn.execute(_CLAIM, {"ids": list(event_ids)})
    return {row[0] for row in rows}
