"""Allocation's results carry the order's ship_complete flag: fulfillment packs from them alone
(it reads no order events), so a ship_complete order must say so in every snapshot."""

from __future__ import annotations

import pytest
from allocation_support import fresh_engine, location, order, outbox, stock

from libs.contracts import decode_event
from libs.contracts.events import AllocationResult
from services.allocation.service_layer import allocating

pytestmark = pytest.mark.integration


async def test_every_result_says_whether_the_order_ships_complete(database_url: str) -> None:
    import orjson

    engine = await fresh_engine(database_url)
    try:
        async with engine.begin() as conn:
            await allocating.apply_events(conn, [
                location("WH1"), stock("F1", 10, 10, 1),
                order("whole-1", [("1", "F1", 2), ("2", "F2", 1)], ship_complete=True),
                order("parts-1", [("1", "F1", 1)]),
            ])
        results = {}
        for row in await outbox(engine):
            if row["topic"] == "oms.allocations.v1":
                _, event = decode_event(orjson.dumps({k: v for k, v in row.items() if k not in ("topic", "key")}))
                assert isinstance(event, AllocationResult)
                results[event.order_id] = event
    finally:
        await engine.dispose()
    assert results["whole-1"].ship_complete is True
    assert results["whole-1"].lines[0].backordered == 2  # waits whole: F2 has no stock
    assert results["parts-1"].ship_complete is False
