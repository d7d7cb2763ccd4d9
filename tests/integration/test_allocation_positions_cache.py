"""Positions kept in memory per process (repository.py ``PositionsCache``, migration 0009) never
hide a change: not another process's, not a rolled-back one's. Two caches stand for two allocation
processes on one database."""

from __future__ import annotations

from typing import Any

import pytest
from allocation_support import fresh_engine, line_state, location, order, stock
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.allocation.adapters.repository import PositionsCache
from services.allocation.service_layer import allocating

pytestmark = pytest.mark.integration


async def feed(engine: AsyncEngine, cache: PositionsCache, *events: Any) -> None:
    async with engine.begin() as conn:
        await allocating.apply_events(conn, list(events), cache)


async def allocated(engine: AsyncEngine, order_id: str) -> tuple[int, int]:
    line = (await line_state(engine, order_id))["1"]
    return line["allocated"], line["backordered"]


async def reserved(engine: AsyncEngine, sku: str) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT sum(reserved) FROM positions WHERE sku = :s"), {"s": sku})).scalar())


async def test_a_process_never_allocates_from_positions_another_process_changed_since(database_url: str) -> None:
    engine = await fresh_engine(database_url)
    first, second = PositionsCache(100), PositionsCache(100)
    try:
        await feed(engine, first, location("WH1"), stock("TEE", 5, 5, 1))
        await feed(engine, first, order("o-1", [("1", "TEE", 3)]))
        async with engine.connect() as conn:
            version = (await conn.execute(text("SELECT positions_version FROM skus WHERE sku = 'TEE'"))).scalar()
        kept = first.get("TEE", version)  # the first process keeps what it wrote, by the row's version
        assert kept is not None and [(r[0], r[4], r[5]) for r in kept] == [("TEE", 5, 3)]

        await feed(engine, second, order("o-2", [("1", "TEE", 2)]))  # the other process takes the last 2
        await feed(engine, first, order("o-3", [("1", "TEE", 1)]))  # kept: 2 free; the table: none

        assert [await allocated(engine, o) for o in ("o-1", "o-2", "o-3")] == [(3, 0), (2, 0), (0, 1)]
        assert await reserved(engine, "TEE") == 5  # never more than on hand

        await feed(engine, second, stock("TEE", 6, 1, 2))  # a receipt through the other process
        assert await allocated(engine, "o-3") == (1, 0)  # the backorder is filled from it
        await feed(engine, first, order("o-4", [("1", "TEE", 1)]))
        assert await allocated(engine, "o-4") == (0, 1)
        assert await reserved(engine, "TEE") == 6
    finally:
        await engine.dispose()


async def test_positions_kept_by_a_transaction_that_rolled_back_are_not_used(database_url: str) -> None:
    engine = await fresh_engine(database_url)
    cache = PositionsCache(100)
    try:
        await feed(engine, cache, location("WH1"), stock("MUG", 4, 4, 1))
        with pytest.raises(RuntimeError):
            async with engine.begin() as conn:
                await allocating.apply_events(conn, [order("o-gone", [("1", "MUG", 4)])], cache)
                raise RuntimeError("the commit never happens")
        await feed(engine, cache, order("o-1", [("1", "MUG", 4)]))
        assert await allocated(engine, "o-1") == (4, 0)  # the rolled-back reservation is not in the way
        assert await reserved(engine, "MUG") == 4
    finally:
        await engine.dispose()


def test_the_cache_keeps_at_most_its_limit_and_drops_the_skus_kept_longest_ago() -> None:
    cache = PositionsCache(4)
    for i in range(4):
        cache.put(1, {f"S{i}": [("row",)]})
    cache.put(2, {"S0": [("newer",)]})  # used again: kept as the newest
    cache.put(3, {"S4": []})  # over the limit: the oldest quarter and more go
    assert len(cache) <= 4
    assert cache.get("S0", 2) == [("newer",)] and cache.get("S0", 1) is None
    assert cache.get("S1", 1) is None  # the one kept longest ago
    assert cache.get("S4", 3) == [] and cache.get("S4", None) is None
