"""Fairness across a crash: a redelivered backlog arrives partition after partition in one batch;
its new orders are allocated in fair-queue order, not in the order the batch lists them (issue 8,
defect 9; the guarantee is stated in docs/decisions.md)."""

from __future__ import annotations

from typing import Any

import pytest
from allocation_support import env, fresh_engine, line_state, location, order, stock
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.contracts.events import OrderCancelled
from services.allocation.service_layer import allocating

pytestmark = pytest.mark.integration


async def feed(engine: AsyncEngine, *events: Any) -> Any:
    async with engine.begin() as conn:
        return await allocating.apply_events(conn, list(events))


async def test_a_backlog_batch_allocates_older_and_higher_priority_orders_first(database_url: str) -> None:
    engine = await fresh_engine(database_url)
    try:
        await feed(engine, location("WH1"), stock("HOT", 6, 6, 1))
        # One batch as a consumer sees it after a restart: partition 1's records, then partition 0's.
        await feed(
            engine,
            order("new-a", [("1", "HOT", 3)], minutes=30),
            order("new-b", [("1", "HOT", 3)], minutes=31),
            order("old", [("1", "HOT", 3)], minutes=1),
            order("vip", [("1", "HOT", 3)], minutes=40, priority=5),
            env(OrderCancelled(order_id="vip")),  # its own change still comes after it is placed
        )
        allocated = {oid: (await line_state(engine, oid))["1"]["allocated"] for oid in ("old", "new-a", "new-b")}
        assert allocated == {"old": 3, "new-a": 3, "new-b": 0}  # vip went first, then was cancelled: its 3 to new-a
        assert (await line_state(engine, "vip"))["1"]["cancelled"] == 3
    finally:
        await engine.dispose()
