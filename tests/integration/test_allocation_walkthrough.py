"""SPEC section 8 (the public acceptance walkthrough) on real PostgreSQL through the use cases."""

from __future__ import annotations

import pytest
from allocation_support import env, fresh_engine, line_state, location, order, outbox, stock

from libs.contracts.events import OrderCancelled, PackRequested
from services.allocation.service_layer import allocating
from services.allocation.service_layer.views import allocation_view

pytestmark = pytest.mark.integration


async def test_walkthrough_of_section_8(database_url: str) -> None:
    engine = await fresh_engine(database_url)
    try:
        async def feed(*events):  # type: ignore[no-untyped-def]
            async with engine.begin() as conn:
                return await allocating.apply_events(conn, list(events))

        await feed(
            location("WH1"),
            stock("BRASS-SCREW", 15, 15, 1, lot="A", received_days_ago=10),
            stock("BRASS-SCREW", 15, 15, 1, lot="B", received_days_ago=5),
            stock("SELF-TAP", 22, 22, 1),
        )
        # 1. Order 1: BRASS-SCREW 25 from two lots (15 A, 10 B); SELF-TAP 22 + backorder 3.
        await feed(order("o1", [("1", "BRASS-SCREW", 25), ("2", "SELF-TAP", 25)]))
        async with engine.connect() as conn:
            view = await allocation_view(conn, "o1")
        brass = sorted((a["lot"], a["qty"]) for a in view["allocations"] if a["sku"] == "BRASS-SCREW")
        assert brass == [("A", 15), ("B", 10)]
        lines = await line_state(engine, "o1")
        assert (lines["2"]["allocated"], lines["2"]["backordered"]) == (22, 3)
        assert all(a["explanation"] for a in view["allocations"])
        assert view["backorders"][0]["reason"]

        # 2. Pack: packed lines of 25 and 22; the backorder of 3 remains.
        await feed(env(PackRequested(order_id="o1", shipment_id="s1")))
        lines = await line_state(engine, "o1")
        assert (lines["1"]["packed"], lines["2"]["packed"], lines["2"]["backordered"]) == (25, 22, 3)
        events = await outbox(engine)
        assert events[-1]["event_type"] == "AllocationPacked" and events[-1]["data"]["shipment_id"] == "s1"

        # 3. Goods receipt of 100 SELF-TAP: the backorder of 3 is allocated.
        await feed(stock("SELF-TAP", 122, 100, 2))
        lines = await line_state(engine, "o1")
        assert (lines["2"]["allocated"], lines["2"]["backordered"]) == (3, 0)

        # 4. Pack again: a packed line of 3.
        await feed(env(PackRequested(order_id="o1", shipment_id="s2")))
        lines = await line_state(engine, "o1")
        assert lines["2"]["packed"] == 25

        # 5. Order 2: 10 BRASS-SCREW with 5 available: 5 allocated (lot B), 5 backordered.
        await feed(order("o2", [("1", "BRASS-SCREW", 10)], minutes=5))
        async with engine.connect() as conn:
            view = await allocation_view(conn, "o2")
        assert [(a["lot"], a["qty"], a["status"]) for a in view["allocations"]] == [("B", 5, "allocated")]
        assert view["lines"][0]["backordered"] == 5

        # 6. Remove order 2's allocation lines: 10 backordered, on hold, nothing refilled.
        async with engine.begin() as conn:
            await allocating.deallocate(conn, "o2", ["1"])
        lines = await line_state(engine, "o2")
        assert (lines["1"]["allocated"], lines["1"]["backordered"], lines["1"]["on_hold"]) == (0, 10, True)

        # 7. Cancel order 2's line: 10 cancelled; BRASS-SCREW has 5 available again.
        async with engine.begin() as conn:
            await allocating.apply_events(conn, [env(OrderCancelled(order_id="o2", line_ids=["1"]))])
        lines = await line_state(engine, "o2")
        assert (lines["1"]["cancelled"], lines["1"]["backordered"]) == (10, 0)
        from services.allocation.service_layer.views import stock_report

        async with engine.connect() as conn:
            [report] = await stock_report(conn, "BRASS-SCREW", 10, 0)
        assert report["available"] == 5 and report["on_hand"] == 30 and report["reserved"] == 25
        # Every result carries a full snapshot whose lines add up.
        for e in await outbox(engine):
            if e["topic"] == "oms.allocations.v1":
                for ln in e["data"]["lines"]:
                    assert ln["allocated"] + ln["backordered"] + ln["packed"] + ln["shipped"] + ln["cancelled"] == ln["qty"]
    finally:
        await engine.dispose()
