"""Allocation on real PostgreSQL: concurrency on a hot SKU, exactly-once effect, stale stock
events, the slice growing on demand (shrink, deactivation), long queues filled chunk by chunk."""

from __future__ import annotations

import asyncio

import pytest
from allocation_support import env, fresh_engine, line_state, location, order, outbox, stock
from sqlalchemy import text

from libs.contracts.events import LocationChanged
from services.allocation.adapters import repository
from services.allocation.service_layer import allocating, availability, refill
from services.allocation.service_layer.availability import publish_dirty

pytestmark = pytest.mark.integration


async def feed(engine, *events):  # type: ignore[no-untyped-def]
    async with engine.begin() as conn:
        return await allocating.apply_events(conn, list(events))


async def totals(engine, sku: str) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        on_hand, reserved = (await conn.execute(
            text("SELECT coalesce(sum(on_hand), 0), coalesce(sum(reserved), 0) FROM positions WHERE sku = :s"),
            {"s": sku})).one()
        live = (await conn.execute(
            text("SELECT coalesce(sum(qty), 0) FROM allocations WHERE sku = :s AND status IN ('allocated', 'packed')"),
            {"s": sku})).scalar()
    return int(on_hand), int(reserved), int(live)


async def test_concurrent_batches_on_one_hot_sku_never_oversell(database_url: str) -> None:
    engine = await fresh_engine(database_url)
    try:
        await feed(engine, location("WH1"), location("WH2"), stock("HOT", 37, 37, 1), stock("HOT", 20, 20, 1, location_id="WH2"))

        async def burst(prefix: str) -> None:
            for batch in range(6):
                await feed(engine, *[order(f"{prefix}-{batch}-{i}", [("1", "HOT", 2), ("2", "COLD", 1)], minutes=batch)
                                     for i in range(8)])

        await asyncio.gather(burst("a"), burst("b"), burst("c"))
        on_hand, reserved, live = await totals(engine, "HOT")
        assert reserved == live == on_hand == 57  # 144 units wanted: every unit allocated, none twice
        async with engine.connect() as conn:
            allocated, backordered, qty = (await conn.execute(text(
                "SELECT sum(allocated), sum(backordered), sum(qty) FROM order_lines WHERE sku = 'HOT'"))).one()
        assert (allocated, allocated + backordered) == (57, qty)
    finally:
        await engine.dispose()


async def test_an_order_batch_never_waits_for_the_availability_feed_and_its_change_is_not_lost(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The feed reads the dirty SKUs without locking them: an order batch that commits while a
    feed pass works on its SKU goes through at once, and the pass leaves that SKU dirty (what it
    worked out is already stale), so the next pass publishes the new figure."""
    engine = await fresh_engine(database_url)
    try:
        await feed(engine, location("WH1"), stock("FEED", 10, 10, 1))
        async with engine.begin() as conn:
            assert await publish_dirty(conn) == 1
        await feed(engine, order("f-1", [("1", "FEED", 2)]))  # FEED is dirty again: 8 available
        read_free_units = availability.free_units_by_location

        async def an_order_commits_meanwhile(conn, skus, now):  # type: ignore[no-untyped-def]
            free = await read_free_units(conn, skus, now)
            await asyncio.wait_for(feed(engine, order("f-2", [("1", "FEED", 3)])), 10)  # would wait on a held lock
            return free

        monkeypatch.setattr(availability, "free_units_by_location", an_order_commits_meanwhile)
        async with engine.begin() as conn:
            assert await publish_dirty(conn) == 0  # its figure (8) is stale: not published
        monkeypatch.setattr(availability, "free_units_by_location", read_free_units)
        assert (await line_state(engine, "f-2"))["1"]["allocated"] == 3
        async with engine.begin() as conn:
            assert await publish_dirty(conn) == 1
        events = [e for e in await outbox(engine) if e["event_type"] == "AvailabilityChanged"]
        assert [e["data"]["total"] for e in events] == [10, 5]
    finally:
        await engine.dispose()


async def test_batch_delivered_twice_changes_nothing_and_publishes_nothing_new(database_url: str) -> None:
    engine = await fresh_engine(database_url)
    try:
        batch = [location("WH1"), stock("R1", 5, 5, 1), order("r-1", [("1", "R1", 3)]), order("r-2", [("1", "R1", 4)])]
        await feed(engine, *batch)
        before = await outbox(engine)
        state = (await line_state(engine, "r-1"), await line_state(engine, "r-2"), await totals(engine, "R1"))
        await feed(engine, *batch)  # stock by its event ids (inbox), the orders by their order ids
        assert await outbox(engine) == before
        assert (await line_state(engine, "r-1"), await line_state(engine, "r-2"), await totals(engine, "R1")) == state
    finally:
        await engine.dispose()


async def test_stale_stock_adjustment_is_ignored_and_counted(database_url: str) -> None:
    engine = await fresh_engine(database_url)
    try:
        await feed(engine, location("WH1"), stock("ST", 10, 10, 1), stock("ST", 12, 2, 2))
        stale_before = allocating.STALE_STOCK_EVENTS._value.get()
        await feed(engine, stock("ST", 3, -7, 1, reason="adjustment"))  # an old seq arriving late
        assert (await totals(engine, "ST"))[0] == 12
        assert allocating.STALE_STOCK_EVENTS._value.get() == stale_before + 1
    finally:
        await engine.dispose()


async def test_shrink_reallocates_elsewhere_from_the_database(database_url: str) -> None:
    engine = await fresh_engine(database_url)
    try:
        await feed(engine, location("WH1", priority=5), location("WH2", priority=1),
                   stock("SH", 10, 10, 1), stock("SH", 2, 2, 1, location_id="WH2"))
        await feed(engine, order("sh-old", [("1", "SH", 6)], minutes=0))
        await feed(engine, order("sh-new", [("1", "SH", 4)], minutes=1))
        await feed(engine, stock("SH", 5, -5, 2, reason="adjustment"))  # WH1 now 5 < 10 reserved
        old, new = (await line_state(engine, "sh-old"))["1"], (await line_state(engine, "sh-new"))["1"]
        assert old["allocated"] == 6
        # 5 released, newest first (4 of sh-new, then 1 of sh-old); the queue refills the older first from WH2.
        assert (new["allocated"], new["backordered"]) == (1, 3)
        assert await totals(engine, "SH") == (7, 7, 7)
        kinds = [e["event_type"] for e in await outbox(engine) if e["key"] == "sh-new"]
        assert kinds[-1] == "OrderReallocated"
    finally:
        await engine.dispose()


async def test_deactivated_location_loads_and_moves_its_allocations(database_url: str) -> None:
    engine = await fresh_engine(database_url)
    try:
        await feed(engine, location("WH1", priority=5), location("WH2", priority=1),
                   stock("DA", 5, 5, 1), stock("DA", 5, 5, 1, location_id="WH2"))
        await feed(engine, order("da-1", [("1", "DA", 3)]))
        await feed(engine, env(LocationChanged(location_id="WH1", name="WH1", country="DE", priority=5, active=False)))
        async with engine.connect() as conn:
            rows = (await conn.execute(text(
                "SELECT location_id, qty FROM allocations WHERE order_id = 'da-1' AND status = 'allocated'"))).all()
        assert [tuple(r) for r in rows] == [("WH2", 3)]
    finally:
        await engine.dispose()


async def filling(engine, sku: str) -> bool:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        return bool((await conn.execute(text("SELECT filling FROM skus WHERE sku = :s"), {"s": sku})).scalar())


async def fill_the_rest(engine) -> int:  # type: ignore[no-untyped-def]
    """Run the refill loop's step until no SKU is left filling; return how many chunks it took."""
    chunks = 0
    while True:
        async with engine.begin() as conn:
            if await refill.fill_next_chunk(conn) is None:
                return chunks
        chunks += 1
        assert chunks < 100, "the refill never ends"


async def long_queue(engine, sku: str, lines: int, units: int) -> list[str]:  # type: ignore[no-untyped-def]
    """``lines`` one-unit orders of ``sku`` backordered one minute apart at WH1, then a receipt of
    ``units``: the order ids, oldest first."""
    ids = [f"{sku.lower()}-{i:02d}" for i in range(lines)]
    await feed(engine, location("WH1"))
    await feed(engine, *[order(o, [("1", sku, 1)], minutes=i) for i, o in enumerate(ids)])
    await feed(engine, stock(sku, units, units, 1))
    return ids


async def allocated(engine, order_ids: list[str]) -> list[str]:  # type: ignore[no-untyped-def]
    """The orders among ``order_ids`` whose line 1 has units allocated, in the given order."""
    return [o for o in order_ids if (await line_state(engine, o))["1"]["allocated"]]


async def test_long_queue_is_filled_chunk_by_chunk_in_queue_order(database_url: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(repository, "QUEUE_CHUNK", 3)
    engine = await fresh_engine(database_url)
    try:
        queue = await long_queue(engine, "Q", 20, 15)
        # The receipt's own transaction filled one chunk (3 lines); the rest waits for the refill loop.
        assert await allocated(engine, queue) == ["q-00", "q-01", "q-02"]
        assert await filling(engine, "Q")
        async with engine.begin() as conn:  # the storefronts keep the last figure until the queue had its turn
            assert await publish_dirty(conn) == 0
        # Meanwhile new orders take nothing of the 12 free units: they wait at their place in the queue,
        # a rush order (priority) ahead of the older ones, a plain one behind them.
        await feed(engine, order("q-rush", [("1", "Q", 1)], minutes=30, priority=5),
                   order("q-late", [("1", "Q", 1)], minutes=31))
        rush = (await line_state(engine, "q-rush"))["1"]
        assert (rush["allocated"], rush["backordered"]) == (0, 1)
        assert rush["backorder_reason"].startswith("waits its turn")
        assert await fill_the_rest(engine) == 4  # 3 + 3 + 3 + 3 lines
        assert await allocated(engine, ["q-rush", *queue, "q-late"]) == ["q-rush", *queue[:14]]
        assert await totals(engine, "Q") == (15, 15, 15)
        assert not await filling(engine, "Q")
        async with engine.begin() as conn:
            assert await publish_dirty(conn) == 1  # now its availability (0) goes out
    finally:
        await engine.dispose()


async def test_a_chunk_nobody_in_can_take_the_stock_looks_further(database_url: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(repository, "QUEUE_CHUNK", 2)
    engine = await fresh_engine(database_url)
    try:
        await feed(engine, location("WH1"))
        # Three ship_complete orders at the head of the queue also want a SKU nobody has.
        await feed(engine, *[order(f"sc-{i}", [("1", "W", 1), ("2", "NONE", 1)], minutes=i, ship_complete=True)
                             for i in range(3)])
        await feed(engine, *[order(f"w-{i}", [("1", "W", 1)], minutes=10 + i) for i in range(6)])
        await feed(engine, stock("W", 5, 5, 1))
        await fill_the_rest(engine)
        got = {o: (await line_state(engine, o))["1"]["allocated"] for o in [*(f"sc-{i}" for i in range(3)),
                                                                            *(f"w-{i}" for i in range(6))]}
        assert got == {"sc-0": 0, "sc-1": 0, "sc-2": 0, "w-0": 1, "w-1": 1, "w-2": 1, "w-3": 1, "w-4": 1, "w-5": 0}
        assert not await filling(engine, "W")
    finally:
        await engine.dispose()


async def test_a_fill_left_by_a_crash_is_finished_by_the_next_refill_loop(database_url: str,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The receipt's transaction committed its first chunk and the process died before its refill
    loop ran: the flag is in the database, so a refill loop started later (a restart, or another
    instance, never woken by a consumer) finds it on its own and fills the rest."""
    monkeypatch.setattr(repository, "QUEUE_CHUNK", 4)
    engine = await fresh_engine(database_url)
    try:
        queue = await long_queue(engine, "K", 30, 25)
        assert await filling(engine, "K")
        loop = refill.QueueRefill(engine.begin, idle_poll=0.05)
        task = asyncio.create_task(loop.run())
        try:
            for _ in range(200):
                if not await filling(engine, "K"):
                    break
                await asyncio.sleep(0.05)
        finally:
            task.cancel()
        assert not await filling(engine, "K")
        assert await totals(engine, "K") == (25, 25, 25)
        assert await allocated(engine, queue) == queue[:25]
    finally:
        await engine.dispose()
