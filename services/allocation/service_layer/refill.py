"""The rest of a long backorder queue's fill, chunk by chunk.

A transaction loads at most ``QUEUE_CHUNK`` open backorders of a SKU (adapters/repository.py). When
new stock could fill more than that, the book fills the loaded chunk and marks the SKU as
*filling* (``skus.filling``, in the same transaction): until the queue is filled, or the stock is
gone, no order takes the SKU's free units in queue order (a new order waits in the queue at its
place) and the availability feed keeps the SKU's last figure. This loop takes the next filling
SKU nobody holds (``SKIP LOCKED``: several instances share the work) and fills its next chunk,
one transaction each, until none is left; the consumer wakes it after a commit that left a SKU
filling, and it looks on its own every ``idle_poll`` seconds (a flag left by a crash or by
another instance).

So a receipt for 100,000 waiting lines holds one chunk in memory at a time, results stream out
chunk by chunk while the next is computed, and the fair queue holds across chunks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from prometheus_client import Counter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.allocation.adapters.repository import Need
from services.allocation.service_layer.allocating import run_commands

log = logging.getLogger(__name__)

CHUNKS = Counter("oms_allocation_refill_chunks_total", "Chunks of long backorder queues filled after the first")


async def fill_next_chunk(conn: AsyncConnection) -> str | None:
    """Fill the next chunk of one filling SKU's queue; return the SKU, or None when none waits."""
    sku = (await conn.execute(text(
        "SELECT sku FROM skus WHERE filling ORDER BY sku LIMIT 1 FOR UPDATE SKIP LOCKED"))).scalar()
    if sku is None:
        return None
    book = await run_commands(conn, Need(skus={sku}, queues={sku}),
                              [(None, f"refill:{sku}", lambda b: b.fill_queue(sku))])
    book.release()  # its memory back now, not at the next full garbage collection
    CHUNKS.inc()
    return str(sku)


class QueueRefill:
    """The background loop of one allocation process (``run``), and its doorbell (``wake``)."""

    def __init__(self, transaction: Callable[[], AbstractAsyncContextManager[AsyncConnection]],
                 idle_poll: float = 5.0) -> None:
        self._transaction = transaction
        self._idle_poll = idle_poll
        self._bell = asyncio.Event()

    def wake(self) -> None:
        self._bell.set()

    async def run(self) -> None:
        """Never dies on a database hiccup (a deadlock with a consumer's batch is retried)."""
        while True:
            self._bell.clear()
            try:
                async with self._transaction() as conn:
                    sku = await fill_next_chunk(conn)
                if sku is not None:
                    continue  # more may wait: no pause until none is left
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - log and keep filling
                log.exception("backorder refill failed; retrying")
                await asyncio.sleep(1.0)
                continue
            try:
                await asyncio.wait_for(self._bell.wait(), self._idle_poll)
            except TimeoutError:
                pass
