"""Changes that came before their order are not kept for ever.

A cancellation or change that reaches allocation before its OrderPlaced is kept in
``early_order_events`` and applied when the order arrives (allocating.py). An order that never
arrives (its OrderPlaced dead-lettered and never replayed, or never published) would leave its
changes there for ever, so they are pruned after a retention, like the inbox
(libs/service_host/host.py ``_prune_inbox_forever``): ``OMS_EARLY_CHANGES_RETENTION_HOURS``,
168 h by default, Kafka's default ``retention.ms`` of oms.orders.v1. The OrderPlaced of a kept
change was published before it, on the same partition (both are keyed by order id), so after
that long it can no longer be read from the topic: nothing that could still apply the change is
lost. Each pruned change is logged as a warning with its order id and event id (the order's
own record in order intake still shows the change as requested), every
``OMS_EARLY_CHANGES_PRUNE_INTERVAL_S`` (3600 s)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

log = logging.getLogger(__name__)

RETENTION_HOURS = 168.0
PRUNE_INTERVAL_S = 3600.0


async def prune_early_changes(conn: AsyncConnection, older_than: datetime) -> list[tuple[str, uuid.UUID]]:
    """Delete the kept changes received before ``older_than``; (order_id, event_id) of each."""
    rows = (await conn.execute(
        text("DELETE FROM early_order_events WHERE received_at < :t RETURNING order_id, event_id"),
        {"t": older_than},
    )).all()
    for r in rows:
        log.warning("dropped change %s of order %s: its OrderPlaced never came within the retention",
                    r.event_id, r.order_id)
    return [(r.order_id, r.event_id) for r in rows]


async def run_early_change_pruning(
    transaction: Callable[[], AbstractAsyncContextManager[AsyncConnection]],
    retention_hours: float = RETENTION_HOURS,
    interval: float = PRUNE_INTERVAL_S,
) -> None:
    """Background loop of the service: never dies on a database hiccup."""
    while True:
        await asyncio.sleep(interval)
        try:
            async with transaction() as conn:
                await prune_early_changes(conn, datetime.now(UTC) - timedelta(hours=retention_hours))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - an outage: try again next interval
            log.warning("pruning early changes failed (%s); next try in %.0f s", type(exc).__name__, interval)
