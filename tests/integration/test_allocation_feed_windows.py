"""The availability feed's two windows on real PostgreSQL (decision 14): orders that take a little
from plenty are published after the calm window, one event for all of them; a SKU near its edge,
or one whose stock was received or counted, in the next short window, and it brings a calm SKU's
event forward."""

from __future__ import annotations

import pytest
from allocation_support import fresh_engine, location, order, outbox, stock
from sqlalchemy import text

from services.allocation.adapters import repository
from services.allocation.service_layer import allocating
from services.allocation.service_layer.availability import publish_dirty

pytestmark = pytest.mark.integration


async def feed(engine) -> dict[str, list[int]]:  # type: ignore[no-untyped-def]
    """Totals published per SKU, in order."""
    totals: dict[str, list[int]] = {}
    for e in await outbox(engine):
        if e["event_type"] == "AvailabilityChanged":
            totals.setdefault(e["data"]["sku"], []).append(e["data"]["total"])
    return totals


async def test_calm_changes_wait_and_coalesce_prompt_ones_go_at_once(database_url: str) -> None:
    assert repository.CALM_MS == 10_000 and repository.PROMPT_MARGIN == 20  # the defaults documented
    engine = await fresh_engine(database_url)
    try:
        async with engine.begin() as conn:
            await allocating.apply_events(conn, [location("WH1"), stock("PLENTY", 500, 500, 1), stock("FEW", 25, 25, 1)])
            assert await publish_dirty(conn) == 2  # received: prompt
        for i in range(3):  # three batches of orders, far from PLENTY's edge
            async with engine.begin() as conn:
                await allocating.apply_events(conn, [order(f"o{i}", [("1", "PLENTY", 10)], minutes=i)])
                assert await publish_dirty(conn) == 0  # waits for the calm window
        async with engine.begin() as conn:
            await allocating.apply_events(conn, [order("o9", [("1", "FEW", 6)], minutes=9)])  # 19 left
            assert await publish_dirty(conn) == 1
        assert await feed(engine) == {"PLENTY": [500], "FEW": [25, 19]}
        async with engine.begin() as conn:  # the calm window passes
            await conn.execute(text("UPDATE skus SET availability_due = availability_due - interval '10 seconds'"
                                    " WHERE availability_dirty"))
            assert await publish_dirty(conn) == 1
        assert (await feed(engine))["PLENTY"] == [500, 470]  # three orders, one event

        async with engine.begin() as conn:  # a calm change, then a count of the same SKU: prompt wins
            await allocating.apply_events(conn, [order("o10", [("1", "PLENTY", 1)], minutes=10)])
            await allocating.apply_events(conn, [stock("PLENTY", 460, -9, 2, reason="count")])
            assert await publish_dirty(conn) == 1
        async with engine.begin() as conn:  # and a prompt SKU stays prompt when a calm change follows
            await allocating.apply_events(conn, [stock("PLENTY", 450, -10, 3, reason="count")])
            await allocating.apply_events(conn, [order("o11", [("1", "PLENTY", 1)], minutes=11)])
            assert await publish_dirty(conn) == 1
        async with engine.begin() as conn:  # a draining instance publishes calm SKUs too
            await allocating.apply_events(conn, [order("o12", [("1", "PLENTY", 1)], minutes=12)])
            assert await publish_dirty(conn) == 0
            assert await publish_dirty(conn, calm_too=True) == 1
        assert (await feed(engine))["PLENTY"] == [500, 470, 429, 418, 417]  # on_hand counted 460 and 450, less 31 and 32 reserved
    finally:
        await engine.dispose()
