"""The inbox: which events a service has already applied, written in the effect's transaction.

A redelivered or replayed event finds its id here and is skipped, so it has no second effect.
Rows older than the topics' retention are pruned (``prune_inbox``): no replay can bring their
records back.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import Column, DateTime, MetaData, Table, func, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


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


_PRUNE = text(
    "DELETE FROM inbox WHERE ctid IN (SELECT ctid FROM inbox WHERE processed_at < now() - make_interval(secs => :s)"
    " LIMIT :n)"
)


async def prune_inbox(engine: AsyncEngine, retention_seconds: float, *, chunk: int = 10_000) -> int:
    """Delete inbox rows older than ``retention_seconds``, in short transactions; return how many.

    Exactly-once on replay holds for every record the topic still keeps, so the inbox must keep
    ids at least as long as the topics keep records (Kafka's ``retention.ms``, default 7 days):
    a replay from offset 0 cannot bring back a record older than that."""
    total = 0
    while True:
        async with engine.begin() as conn:
            deleted = (await conn.execute(_PRUNE, {"s": retention_seconds, "n": chunk})).rowcount or 0
        total += deleted
        if deleted < chunk:
            return total
