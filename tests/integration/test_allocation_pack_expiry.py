"""Packing re-checks expiry (issue 8): a lot that expired after its units were allocated, before
the expiry sweep released them, is not packed. The pack is refused, those units are released and
re-allocated from a lot that has not expired, and a pack request after that packs the good lot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from allocation_support import env, fresh_engine, line_state, location, order, outbox
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.contracts.events import PackRequested, StockAdjusted
from services.allocation.service_layer import allocating

pytestmark = pytest.mark.integration
NOW = datetime.now(UTC)


async def feed(engine: AsyncEngine, *events: Any) -> Any:
    async with engine.begin() as conn:
        return await allocating.apply_events(conn, list(events))


def lot(sku: str, name: str, qty: int, expires_in_days: float) -> Any:
    return env(StockAdjusted(sku=sku, location_id="WH1", bin="A1", lot=name, delta=qty, on_hand=qty, seq=1,
                             reason="receipt", received_at=NOW - timedelta(days=60),
                             expires_at=NOW + timedelta(days=expires_in_days)))


async def lots(engine: AsyncEngine, order_id: str) -> dict[tuple[str, str], int]:
    async with engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT lot, status, sum(qty) FROM allocations WHERE order_id = :o AND status IN ('allocated', 'packed')"
            " GROUP BY lot, status"), {"o": order_id})).all()
    return {(r[0], r[1]): int(r[2]) for r in rows}


async def test_a_pack_on_a_lot_that_expired_since_allocation_is_refused_and_the_units_reallocated(
        database_url: str) -> None:
    engine = await fresh_engine(database_url)
    try:
        await feed(engine, location("WH1"), lot("CREAM", "soon", 3, 1), lot("CREAM", "later", 10, 30))
        await feed(engine, order("c-1", [("1", "CREAM", 2)]), order("c-2", [("1", "CREAM", 1)]))
        assert await lots(engine, "c-1") == {("soon", "allocated"): 2}  # FEFO while the lot is good
        async with engine.begin() as conn:  # time passes: the lot expires, the sweep has not run yet
            await conn.execute(text("UPDATE positions SET expires_at = now() - interval '1 minute' WHERE lot = 'soon'"))
            # a change made outside allocation clears the version its processes keep positions by
            await conn.execute(text("UPDATE skus SET positions_version = NULL WHERE sku = 'CREAM'"))

        await feed(engine, env(PackRequested(order_id="c-1", shipment_id="shp-1")))
        assert await lots(engine, "c-1") == {("later", "allocated"): 2}  # refused, re-allocated from good stock
        line = (await line_state(engine, "c-1"))["1"]
        assert (line["allocated"], line["packed"], line["backordered"]) == (2, 0, 0)
        results = [e for e in await outbox(engine) if e["key"] == "c-1"]
        # one answer to the pack request: refused, with the order's new allocations for the pick list
        assert [e["event_type"] for e in results] == ["OrderAllocated", "PackRejected"]
        rejected = results[-1]["data"]
        assert rejected["shipment_id"] == "shp-1"
        assert "lot soon at WH1/A1 expired on" in rejected["detail"] and "re-allocated" in rejected["detail"]
        assert {(a["lot"], a["status"], a["qty"]) for a in rejected["allocations"]} == {("later", "allocated", 2)}
        async with engine.connect() as conn:
            reserved = dict((await conn.execute(text("SELECT lot, reserved FROM positions WHERE sku = 'CREAM'"))).all())
        assert reserved == {"soon": 1, "later": 2}  # c-2 stays until the sweep: only the packed order moved

        await feed(engine, env(PackRequested(order_id="c-1", shipment_id="shp-2")))
        assert await lots(engine, "c-1") == {("later", "packed"): 2}
    finally:
        await engine.dispose()


async def test_a_batch_of_pack_requests_checks_expiry_with_at_most_one_rerun(database_url: str) -> None:
    """The check needs the positions of the packed allocations: loaded for the whole batch at
    once, so a batch of more pack requests than the reruns a batch may take still goes through."""
    engine = await fresh_engine(database_url)
    try:
        await feed(engine, location("WH1"), *[lot("BUTTER", f"l{i}", 1, 10 + i) for i in range(25)])
        await feed(engine, *[order(f"b-{i}", [("1", "BUTTER", 1)]) for i in range(25)])
        reruns = allocating.SLICE_RERUNS._value.get()
        await feed(engine, *[env(PackRequested(order_id=f"b-{i}", shipment_id=f"shp-b{i}")) for i in range(25)])
        assert allocating.SLICE_RERUNS._value.get() - reruns <= 1
        for i in range(25):
            assert sum((await lots(engine, f"b-{i}")).values()) == 1
            assert (await line_state(engine, f"b-{i}"))["1"]["packed"] == 1
    finally:
        await engine.dispose()
