"""The SQL copies of two domain rules answer exactly as the Python definitions do, on real
PostgreSQL (rows written by the allocation writer itself):

- the fair-queue order (``domain.model.queue_key``) as the queue loader, the backorder queue view
  and an order's place in the queue read it (``adapters.queries.QUEUE_ORDER`` / ``QUEUE_KEY``);
- free units per location (``domain.availability.free_by_location``) as the availability feed and
  the stock report add them up (``adapters.queries.FREE_UNITS``)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from allocation_support import fresh_engine, outbox
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.allocation.adapters import repository
from services.allocation.adapters.queries import QUEUE_ORDER, free_units_by_location
from services.allocation.domain.availability import free_by_location
from services.allocation.domain.book import AllocationBook, QueueSlice
from services.allocation.domain.model import Location, Order, OrderLine, StockPosition
from services.allocation.domain.policy import Policy, parse_policy
from services.allocation.service_layer.availability import publish_dirty
from services.allocation.service_layer.views import allocation_view, backorder_queue, stock_report

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)


def waiting_orders(seed: int, n: int) -> list[Order]:
    """Orders that all wait for SKU Q, with many ties on priority and placed_at so that order_id
    and line_id decide. Ids of lower case letters and digits only, as the OMS's own order ids
    (ord_<hex>): those sort alike under every collation (see the note in queries.py)."""
    rnd = random.Random(seed)
    orders = []
    for i in rnd.sample(range(1000), n):
        o = Order(f"o{i % 7}x{i}", "web", T0 + timedelta(minutes=rnd.choice([0, 0, 1, 2])), priority=rnd.choice([0, 0, 1, 3]),
                  country="DE")
        for line_id in rnd.sample(["1", "2", "10", "a", "b"], rnd.randint(1, 2)):
            o.lines[line_id] = OrderLine(o, line_id, "Q", rnd.randint(1, 3))
        orders.append(o)
    return orders


async def test_sql_reads_the_fair_queue_in_the_order_of_queue_key(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = await fresh_engine(database_url)
    book = AllocationBook(locations=[], policies=[], positions=[], orders=[], skus=["Q"],
                          queues={"Q": QueueSlice(True)}, now=T0)
    for o in waiting_orders(seed=9, n=60):
        book.place_order(o)
    expected = [(ln.order_id, ln.line_id) for ln in sorted(book.lines_by_sku["Q"], key=OrderLine.queue_key)]
    try:
        async with engine.begin() as conn:
            await repository.write_changes(conn, book)
        async with engine.begin() as conn:
            rows = (await conn.execute(text(
                f"SELECT order_id, line_id FROM order_lines l WHERE sku = 'Q' ORDER BY {QUEUE_ORDER.format(t='l.')}"
            ))).all()
            assert [tuple(r) for r in rows] == expected
            # The backorder queue view lists it in that order, and each line's place counts those before it.
            assert [(r["order_id"], r["line_id"]) for r in await backorder_queue(conn, "Q", 500, 0)] == expected
            for order_id in {o for o, _ in expected[:15]}:
                for b in (await allocation_view(conn, order_id))["backorders"]:
                    assert b["ahead_in_queue"] == expected.index((order_id, b["line_id"]))
            # The queue loader cut after the 25th entry: the boundary is that entry's queue_key.
            monkeypatch.setattr(repository, "QUEUE_CHUNK", 25)
            sl = repository.Slice()
            await sl.extend(conn, repository.Need(skus={"Q"}, queues={"Q"}))
            o25, l25 = expected[24]
            line25 = book.orders[o25].lines[l25]
            assert sl.queues["Q"] == QueueSlice(False, line25.queue_key())
            assert set(sl.orders) == {o for o, _ in expected[:25]}
    finally:
        await engine.dispose()


async def stored(database_url: str, locations: list[Location], positions: list[StockPosition],
                 *policies: Policy) -> AsyncEngine:
    """A fresh allocation schema holding these rows, written by the allocation writer."""
    book = AllocationBook(locations=locations, policies=[], positions=positions, orders=[],
                          skus={p.sku for p in positions}, now=T0)
    for p in positions:
        book.changes.position(p)
    for loc in locations:
        book.changes.locations[loc.location_id] = loc
    for policy in policies:
        book.changes.policies[policy.channel] = policy
    engine = await fresh_engine(database_url)
    async with engine.begin() as conn:
        await repository.write_changes(conn, book)
    return engine


async def test_sql_adds_up_free_units_as_the_domain_does(database_url: str) -> None:
    now = T0
    locations = [Location("OPEN", "open", "DE"), Location("SHUT", "shut", "DE", active=False),
                 Location("FAR", "far", "FR", ships_to=("FR", "BE"), channels=("web", "pos"))]
    rnd = random.Random(4)
    positions = []
    for i in range(80):
        on_hand = rnd.randint(0, 9)
        positions.append(StockPosition(
            sku=rnd.choice(["A", "B"]), location_id=rnd.choice(["OPEN", "SHUT", "FAR", "GONE"]), bin=f"b{i}", lot="",
            on_hand=on_hand, reserved=rnd.randint(0, on_hand + 3), seq=1, sellable=rnd.random() < 0.8,
            received_at=now - timedelta(days=3),
            expires_at=rnd.choice([None, now, now - timedelta(seconds=1), now + timedelta(seconds=1),
                                   now + timedelta(days=400)])))
    by_id = {loc.location_id: loc for loc in locations}
    expected = {sku: {loc: n for loc, n in free_by_location([p for p in positions if p.sku == sku], by_id, now).items() if n}
                for sku in ("A", "B")}
    engine = await stored(database_url, locations, positions)
    try:
        async with engine.begin() as conn:
            found = await free_units_by_location(conn, ["A", "B"], now)
            assert {sku: {loc: n for loc, n in free.items() if n} for sku, free in found.items()} == expected
            # The stock report judges expiry at the transaction's now(), long after T0: the lots
            # expiring within a second of T0 are expired by then, the 400-day ones are not.
            later = datetime.now(UTC)
            report = {r["sku"]: r for r in await stock_report(conn, None, 10, 0)}
            for sku in ("A", "B"):
                mine = [p for p in positions if p.sku == sku]
                assert report[sku]["available"] == sum(free_by_location(mine, by_id, later).values())
    finally:
        await engine.dispose()


async def test_stock_report_available_is_on_hand_less_reserved_less_safety_stock_like_the_feed(database_url: str) -> None:
    """SPEC 3: available = on_hand - reserved - safety_stock (the default policy's), per location,
    never below zero; the availability feed's total is the same figure."""
    locations = [Location("WH1", "one", "DE"), Location("WH2", "two", "DE"), Location("WH3", "three", "DE")]
    positions = [StockPosition("A", "WH1", "b", "", on_hand=10, reserved=4, seq=1),  # 6 free, 3 held back: 3
                 StockPosition("A", "WH2", "b", "", on_hand=1, reserved=0, seq=1),  # 1 free, 1 held back: 0
                 StockPosition("A", "WH3", "b", "", on_hand=5, reserved=0, seq=1)]  # 5 free, 1 held back: 4
    policy, problems = parse_policy({"safety_stock": [{"sku": "A", "location_id": "WH1", "qty": 3},
                                                      {"sku": "*", "location_id": "*", "qty": 1}]},
                                    ["WH1", "WH2", "WH3"], version=1)
    assert policy is not None, problems
    engine = await stored(database_url, locations, positions, policy)
    try:
        async with engine.begin() as conn:
            [report] = await stock_report(conn, "A", 10, 0)
            assert (report["on_hand"], report["reserved"], report["available"]) == (16, 4, 7)
            await conn.execute(text("INSERT INTO skus (sku, availability_dirty) VALUES ('A', true)"))
            assert await publish_dirty(conn) == 1
        [feed] = [e for e in await outbox(engine) if e["event_type"] == "AvailabilityChanged"]
        assert feed["data"]["total"] == 7
        assert feed["data"]["locations"] == [{"location_id": "WH1", "available": 3},
                                             {"location_id": "WH2", "available": 0},
                                             {"location_id": "WH3", "available": 4}]
    finally:
        await engine.dispose()
