"""Expired lots on real PostgreSQL: never allocated, never promised, and units allocated on a lot
that expires afterwards are released by the sweep and re-allocated from good stock (issue 8,
defect 5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from allocation_support import env, fresh_engine, line_state, location, order, outbox
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.contracts.events import StockAdjusted
from services.allocation.service_layer import allocating
from services.allocation.service_layer.availability import publish_dirty
from services.allocation.service_layer.expiry import release_expired_lots
from services.allocation.service_layer.views import stock_report

pytestmark = pytest.mark.integration
NOW = datetime.now(UTC)


async def feed(engine: AsyncEngine, *events: Any) -> Any:
    async with engine.begin() as conn:
        return await allocating.apply_events(conn, list(events))


def lot(sku: str, name: str, qty: int, expires_in_days: float) -> Any:
    return env(StockAdjusted(sku=sku, location_id="WH1", bin="A1", lot=name, delta=qty, on_hand=qty, seq=1,
                             reason="receipt", received_at=NOW - timedelta(days=60),
                             expires_at=NOW + timedelta(days=expires_in_days)))


async def live_lots(engine: AsyncEngine, order_id: str) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT lot, sum(qty) FROM allocations WHERE order_id = :o AND status IN ('allocated', 'packed')"
            " GROUP BY lot"), {"o": order_id})).all()
    return {r[0]: int(r[1]) for r in rows}


async def test_an_expired_lot_is_neither_allocated_nor_promised(database_url: str) -> None:
    engine = await fresh_engine(database_url)
    try:
        await feed(engine, location("WH1"), lot("MILK", "expired", 5, -1), lot("MILK", "fresh", 4, 10))
        await feed(engine, order("m-1", [("1", "MILK", 6)]))
        assert await live_lots(engine, "m-1") == {"fresh": 4}
        assert (await line_state(engine, "m-1"))["1"]["backordered"] == 2
        async with engine.begin() as conn:
            await publish_dirty(conn)
        [feed_event] = [e for e in await outbox(engine) if e["event_type"] == "AvailabilityChanged"]
        assert feed_event["data"]["total"] == 0  # the 5 expired units are not offered to any storefront
        async with engine.connect() as conn:
            [report] = await stock_report(conn, "MILK", 10, 0)
        assert (report["on_hand"], report["reserved"], report["available"]) == (9, 4, 0)
    finally:
        await engine.dispose()


async def test_units_on_a_lot_that_expires_while_allocated_are_moved_to_good_stock(database_url: str) -> None:
    engine = await fresh_engine(database_url)
    try:
        await feed(engine, location("WH1"), lot("YOG", "soon", 5, 1), lot("YOG", "later", 10, 30))
        await feed(engine, order("y-1", [("1", "YOG", 7)]))
        assert await live_lots(engine, "y-1") == {"soon": 5, "later": 2}  # FEFO while both are good
        async with engine.begin() as conn:
            assert await release_expired_lots(conn, NOW) == 0  # nothing expired yet
        async with engine.begin() as conn:
            assert await release_expired_lots(conn, NOW + timedelta(days=2)) == 1
        assert await live_lots(engine, "y-1") == {"later": 7}
        line = (await line_state(engine, "y-1"))["1"]
        assert (line["allocated"], line["backordered"]) == (7, 0)
        async with engine.connect() as conn:
            reserved = dict((await conn.execute(text("SELECT lot, reserved FROM positions WHERE sku = 'YOG'"))).all())
            dirty = (await conn.execute(text("SELECT availability_dirty FROM skus WHERE sku = 'YOG'"))).scalar()
        assert reserved == {"soon": 0, "later": 7} and dirty
        newest = [e for e in await outbox(engine) if e["key"] == "y-1"][-1]
        assert newest["event_type"] == "OrderReallocated" and "expired on" in newest["data"]["detail"]
        async with engine.begin() as conn:  # swept once: the next sweep finds nothing to do
            assert await release_expired_lots(conn, NOW + timedelta(days=2, minutes=1), NOW + timedelta(days=2)) == 0
    finally:
        await engine.dispose()
