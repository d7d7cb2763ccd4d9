"""Lots that expire while stock sits there. No event announces an expiry, so a background sweep
(every ``OMS_EXPIRY_SWEEP_INTERVAL_MS``, 60 s by default) looks for lots past their expiry that
still hold allocated (unpacked) units, or that expired since the last sweep, and runs the book's
``release_expired`` on them: the units go back to the queue at their place and are re-allocated
from stock that has not expired; the SKU's availability is published again without the lot.

New allocations never take an expired lot in the first place (the book's clock is the
transaction's ``now``), so the sweep only bounds how long units allocated before the expiry
stay on a pick list: at most one interval."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.allocation.adapters.repository import Need
from services.allocation.domain.book import PositionKey
from services.allocation.service_layer.allocating import run_commands
from services.allocation.service_layer.presales import review_late_presales

log = logging.getLogger(__name__)
FIRST_LOOK_BACK = timedelta(days=1)
MAX_LOTS_PER_SWEEP = 500


async def release_expired_lots(conn: AsyncConnection, now: datetime, since: datetime | None = None) -> int:
    """Release allocated units on lots expired at ``now``; also refresh the availability of lots
    that expired after ``since``. Returns how many lots were looked at."""
    rows = (await conn.execute(
        text(
            "SELECT p.sku, p.location_id, p.bin, p.lot FROM positions p WHERE p.expires_at <= :now AND ("
            " (CAST(:since AS timestamptz) IS NOT NULL AND p.expires_at > :since AND p.on_hand > 0)"
            " OR EXISTS (SELECT 1 FROM allocations a WHERE a.sku = p.sku AND a.location_id = p.location_id"
            " AND a.bin = p.bin AND a.lot = p.lot AND a.status = 'allocated'))"
            " ORDER BY p.sku, p.location_id, p.bin, p.lot LIMIT :n"
        ),
        {"now": now, "since": since, "n": MAX_LOTS_PER_SWEEP},
    )).all()
    keys: list[PositionKey] = [(r.sku, r.location_id, r.bin, r.lot) for r in rows]
    if not keys:
        return 0
    # Empty correlation: each result correlates with its own order.
    await run_commands(conn, Need(positions=set(keys), queues={sku for sku, _, _, _ in keys}),
                       [(None, "", lambda b: b.release_expired(keys))], now=now)
    return len(keys)


async def run_expiry_sweep(transaction: Callable[[], AbstractAsyncContextManager[AsyncConnection]], interval: float = 60.0) -> None:
    """Background loop of the service: never dies on a database hiccup."""
    since: datetime | None = datetime.now(UTC) - FIRST_LOOK_BACK
    while True:
        now = datetime.now(UTC)
        try:
            async with transaction() as conn:
                n = await release_expired_lots(conn, now, since)
                await review_late_presales(conn, now.date())  # purchase orders that became late
            since = now
            if n >= MAX_LOTS_PER_SWEEP:
                continue  # more waiting: no pause until it is drained
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - log and keep sweeping
            log.exception("expiry sweep failed; retrying")
        await asyncio.sleep(interval)
