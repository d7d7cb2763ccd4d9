"""Orders with a shipped, packed or returned line on real PostgreSQL: every later operation
(cancel, modify up and down, deallocate, release-hold, reallocate, transfer, refill, shrink)
works, keeps allocated + backordered + packed + shipped + cancelled = qty per line, and the
published snapshots carry the shipped quantities (issue 8, defect 1)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from allocation_support import env, fresh_engine, line_state, location, order, outbox, stock
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.contracts.events import LineChange, OrderCancelled, OrderModified, PackRequested, StockAdjusted
from services.allocation.service_layer import allocating

pytestmark = pytest.mark.integration


async def feed(engine: AsyncEngine, *events: Any) -> Any:
    async with engine.begin() as conn:
        return await allocating.apply_events(conn, list(events))


async def ship(engine: AsyncEngine, shipment_id: str, seq: int, on_hand: dict[tuple[str, str], int],
               *, qty: int | None = None) -> None:
    """What inventory publishes for a shipment: one StockAdjusted(reason=shipment) per packed allocation."""
    async with engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT allocation_id, order_id, sku, location_id, bin, lot, qty FROM allocations"
            " WHERE shipment_id = :s AND status = 'packed' ORDER BY allocation_id"), {"s": shipment_id})).all()
    assert rows, f"nothing packed in {shipment_id}"
    events = []
    for r in rows:
        shipped = r.qty if qty is None else qty
        on_hand[(r.sku, r.location_id)] -= shipped
        events.append(env(StockAdjusted(
            sku=r.sku, location_id=r.location_id, bin=r.bin, lot=r.lot, delta=-shipped,
            on_hand=on_hand[(r.sku, r.location_id)], seq=seq, reason="shipment", reference=shipment_id,
            order_id=r.order_id, allocation_id=r.allocation_id)))
    await feed(engine, *events)


async def partly_shipped(engine: AsyncEngine, *, ship_it: bool = True) -> dict[tuple[str, str], int]:
    """Order "ps": line 1 = 4 A (packed, then shipped), line 2 = 5 B (allocated); WH2 holds spare stock."""
    on_hand = {("A", "WH1"): 10, ("B", "WH1"): 10, ("A", "WH2"): 10, ("B", "WH2"): 10}
    await feed(engine, location("WH1", priority=5), location("WH2", priority=1),
               *[stock(s, q, q, 1, location_id=loc) for (s, loc), q in on_hand.items()])
    await feed(engine, order("ps", [("1", "A", 4), ("2", "B", 5)]))
    await feed(engine, env(PackRequested(order_id="ps", shipment_id="s1", line_ids=["1"])))
    if ship_it:
        await ship(engine, "s1", 2, on_hand)
    return on_hand


async def assert_conserved_and_published(engine: AsyncEngine, order_id: str) -> dict[str, dict[str, Any]]:
    """Every line adds up, and the newest snapshot published for the order says the same."""
    lines = await line_state(engine, order_id)
    for ln in lines.values():
        assert ln["allocated"] + ln["backordered"] + ln["packed"] + ln["shipped"] + ln["cancelled"] == ln["qty"], ln
    newest = [e for e in await outbox(engine) if e["key"] == order_id][-1]
    published = {ln["line_id"]: ln for ln in newest["data"]["lines"]}
    for line_id, ln in lines.items():
        assert {k: published[line_id][k] for k in ("qty", "allocated", "backordered", "packed", "shipped",
                                                    "cancelled")} == \
            {k: ln[k] for k in ("qty", "allocated", "backordered", "packed", "shipped", "cancelled")}
    return lines


async def test_cancelling_a_partly_shipped_order_cancels_the_open_line_and_keeps_the_shipment(
        database_url: str) -> None:
    engine = await fresh_engine(database_url)
    try:
        await partly_shipped(engine)
        await feed(engine, env(OrderCancelled(order_id="ps")))
        lines = await assert_conserved_and_published(engine, "ps")
        assert (lines["1"]["shipped"], lines["1"]["cancelled"]) == (4, 0)
        assert (lines["2"]["allocated"], lines["2"]["cancelled"]) == (0, 5)
    finally:
        await engine.dispose()


def _modify(changes: list[tuple[str, str, int]]) -> Any:
    return env(OrderModified(order_id="ps", lines=[LineChange(line_id=i, sku=s, qty=q, unit_price=1)
                                                   for i, s, q in changes]))


async def _deallocate(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await allocating.deallocate(conn, "ps", ["1", "2"])


async def _deallocate_and_release(engine: AsyncEngine) -> None:
    await _deallocate(engine)
    async with engine.begin() as conn:
        await allocating.release_hold(conn, "ps", None)


async def _reallocate(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await allocating.reallocate(conn, "ps", "WH2")


async def _transfer_out(engine: AsyncEngine) -> None:
    await feed(engine, order("other", [("1", "B", 30)], minutes=5))  # 15 allocated, 15 backordered
    async with engine.begin() as conn:
        await allocating.transfer(conn, "ps", "other", "B", 2, None)


async def _transfer_in(engine: AsyncEngine) -> None:
    await feed(engine, order("giver", [("1", "A", 3)], minutes=5))  # 3 of the 16 free A
    await feed(engine, _modify([("1", "A", 24)]))  # line 1 wants 20 more: 13 allocated, 7 backordered
    async with engine.begin() as conn:
        await allocating.transfer(conn, "giver", "ps", "A", 1, None)


async def _refill(engine: AsyncEngine) -> None:
    await feed(engine, _modify([("2", "B", 30)]))  # 20 B in stock, 5 already ps's: 15 more, 10 backordered
    await feed(engine, stock("B", 20, 10, 2, location_id="WH2"))


async def _shrink(engine: AsyncEngine) -> None:
    await feed(engine, stock("B", 2, -8, 2, reason="adjustment"))


OPERATIONS: dict[str, tuple[Callable[[AsyncEngine], Awaitable[None]] | list[Any], dict[str, int]]] = {
    # operation: (what to do, what line 2 holds afterwards besides line 1's 4 shipped)
    "cancel line 2": ([env(OrderCancelled(order_id="ps", line_ids=["2"]))], {"cancelled": 5}),
    "modify up": ([_modify([("2", "B", 8)])], {"allocated": 8}),
    "modify down": ([_modify([("2", "B", 3)])], {"allocated": 3}),
    "modify the shipped line": ([_modify([("1", "A", 6)])], {"allocated": 5}),
    "modify below what shipped": ([_modify([("1", "A", 1)])], {"allocated": 5}),
    "deallocate": (_deallocate, {"backordered": 5}),
    "release hold": (_deallocate_and_release, {"allocated": 5}),
    "reallocate": (_reallocate, {"allocated": 5}),
    "transfer out": (_transfer_out, {"allocated": 3}),
    "transfer in": (_transfer_in, {"allocated": 5}),
    "refill": (_refill, {"allocated": 30}),
    "shrink": (_shrink, {"allocated": 5}),
    # a return books stock back (inventory's StockAdjusted); the line's units stay shipped in allocation
    "return, then cancel": ([stock("A", 14, 4, 3, reason="return"), env(OrderCancelled(order_id="ps"))],
                            {"cancelled": 5}),
}


@pytest.mark.parametrize("ship_it", [True, False], ids=["shipped", "packed"])
@pytest.mark.parametrize("name", list(OPERATIONS))
async def test_every_operation_on_a_partly_shipped_order_keeps_its_lines_whole(
        database_url: str, name: str, ship_it: bool) -> None:
    engine = await fresh_engine(database_url)
    try:
        await partly_shipped(engine, ship_it=ship_it)
        operation, line2 = OPERATIONS[name]
        if callable(operation):
            await operation(engine)
        else:
            await feed(engine, *operation)
        lines = await assert_conserved_and_published(engine, "ps")
        assert lines["1"]["shipped" if ship_it else "packed"] == 4
        assert {k: v for k, v in lines["2"].items() if k in line2} == line2
    finally:
        await engine.dispose()


async def test_partial_shipment_of_one_allocation_survives_a_cancel(database_url: str) -> None:
    engine = await fresh_engine(database_url)
    try:
        on_hand = await partly_shipped(engine, ship_it=False)
        await ship(engine, "s1", 2, on_hand, qty=3)  # 3 of the 4 packed units left: 3 shipped, 1 still packed
        await feed(engine, env(OrderCancelled(order_id="ps")))
        lines = await assert_conserved_and_published(engine, "ps")
        assert (lines["1"]["shipped"], lines["1"]["packed"], lines["2"]["cancelled"]) == (3, 1, 5)
    finally:
        await engine.dispose()


async def test_a_shipment_of_an_order_allocation_never_had_still_moves_on_hand(database_url: str) -> None:
    """A StockAdjusted(shipment) naming an order allocation never received (its OrderPlaced went
    elsewhere, or another test's record on a shared topic): the on_hand mirror still follows,
    instead of asking for the order 16 times, failing the batch and dead-lettering the stock
    change (which left on_hand too high: stock that was gone could be promised)."""
    engine = await fresh_engine(database_url)
    try:
        await feed(engine, location("WH1"), stock("A", 10, 10, 1))
        await feed(engine, env(StockAdjusted(sku="A", location_id="WH1", bin="A1", lot="", delta=-3, on_hand=7, seq=2,
                                             reason="shipment", reference="elsewhere", order_id="never-placed",
                                             allocation_id=987654)))
        async with engine.connect() as conn:
            on_hand = (await conn.execute(text("SELECT on_hand FROM positions WHERE sku = 'A'"))).scalar()
        assert on_hand == 7
    finally:
        await engine.dispose()
