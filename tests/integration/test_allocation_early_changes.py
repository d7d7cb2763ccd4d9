"""A cancellation or change that reaches allocation before its OrderPlaced is kept and applied
when the order arrives, never recorded as processed and lost (issue 8, defect 10)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from allocation_support import env, fresh_engine, line_state, location, order, outbox, stock
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.contracts.events import LineChange, OrderCancelled, OrderModified
from services.allocation.service_layer import allocating, early_changes

pytestmark = pytest.mark.integration


async def feed(engine: AsyncEngine, *events: Any) -> Any:
    async with engine.begin() as conn:
        return await allocating.apply_events(conn, list(events))


async def kept(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM early_order_events"))).scalar() or 0)


async def reserved(engine: AsyncEngine, sku: str) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT coalesce(sum(reserved), 0) FROM positions WHERE sku = :s"),
                                       {"s": sku})).scalar() or 0)


async def test_cancel_that_arrives_before_its_order_is_applied_when_the_order_comes(database_url: str) -> None:
    engine = await fresh_engine(database_url)
    try:
        await feed(engine, location("WH1"), stock("E", 10, 10, 1))
        cancel = env(OrderCancelled(order_id="e-1", line_ids=["2"]))
        await feed(engine, cancel)
        assert await kept(engine) == 1
        await feed(engine, cancel)  # delivered again: kept once
        assert await kept(engine) == 1
        await feed(engine, order("e-1", [("1", "E", 3), ("2", "E", 4)]))
        lines = await line_state(engine, "e-1")
        assert (lines["1"]["allocated"], lines["2"]["cancelled"], lines["2"]["allocated"]) == (3, 4, 0)
        assert await reserved(engine, "E") == 3 and await kept(engine) == 0
        newest = [e for e in await outbox(engine) if e["key"] == "e-1"][-1]
        assert newest["event_type"] == "AllocationCancelled"
        assert newest["data"]["lines"][1]["cancelled"] == 4
    finally:
        await engine.dispose()


async def test_change_and_cancel_ahead_of_the_order_in_one_batch_apply_in_arrival_order(database_url: str) -> None:
    engine = await fresh_engine(database_url)
    try:
        await feed(engine, location("WH1"), stock("F", 10, 10, 1), stock("G", 10, 10, 1))
        await feed(engine, env(OrderModified(order_id="f-1", lines=[LineChange(line_id="1", sku="F", qty=6,
                                                                               unit_price=1)])))
        await feed(
            engine,
            env(OrderModified(order_id="f-1", lines=[LineChange(line_id="2", sku="G", qty=2, unit_price=1)])),
            env(OrderCancelled(order_id="f-1", line_ids=["3"])),
            order("f-1", [("1", "F", 1), ("3", "F", 2)]),
        )
        lines = await line_state(engine, "f-1")
        assert (lines["1"]["qty"], lines["1"]["allocated"]) == (6, 6)
        assert (lines["2"]["qty"], lines["2"]["allocated"]) == (2, 2)
        assert (lines["3"]["cancelled"], await reserved(engine, "F")) == (2, 6)
        assert await kept(engine) == 0
    finally:
        await engine.dispose()


async def test_early_changes_whose_order_never_came_are_pruned_after_the_retention(database_url: str) -> None:
    engine = await fresh_engine(database_url)
    try:
        await feed(engine, location("WH1"), stock("P", 10, 10, 1))
        stale, fresh = env(OrderCancelled(order_id="p-old")), env(OrderCancelled(order_id="p-new"))
        await feed(engine, stale, fresh)
        async with engine.begin() as conn:  # the first one waits for longer than the retention
            await conn.execute(text("UPDATE early_order_events SET received_at = now() - interval '8 days' "
                                    "WHERE order_id = 'p-old'"))
        async with engine.begin() as conn:
            pruned = await early_changes.prune_early_changes(
                conn, datetime.now(UTC) - timedelta(hours=early_changes.RETENTION_HOURS))
        assert pruned == [("p-old", stale[0].event_id)]
        assert await kept(engine) == 1
        # the young one still applies when its order comes
        await feed(engine, order("p-new", [("1", "P", 2)]))
        assert (await line_state(engine, "p-new"))["1"]["cancelled"] == 2
        assert await kept(engine) == 0
    finally:
        await engine.dispose()
