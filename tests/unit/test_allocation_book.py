"""Rules of the pure allocation book, one behaviour per test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.allocation.domain.book import AllocationBook, CommandRefused, QueueSlice, SliceTooSmall
from services.allocation.domain.model import Location, Order, OrderLine
from services.allocation.domain.policy import Policy, SafetyStock, parse_policy

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def book(*locations: Location, skus: tuple[str, ...] = ("A", "B"), policies: tuple[Policy, ...] = ()) -> AllocationBook:
    locs = locations or (Location("W1", "w1", "DE"),)
    return AllocationBook(locations=list(locs), policies=list(policies), positions=[], orders=[], skus=skus,
                          queues={s: QueueSlice(True) for s in skus}, now=T0,
                          location_allocations_loaded=[loc.location_id for loc in locs])


def receive(b: AllocationBook, sku: str, qty: int, *, loc: str = "W1", bin: str = "B1", lot: str = "", seq: int = 1,
            expires: int | None = None, received: int = 0, on_hand: int | None = None, reason: str = "receipt") -> None:
    b.adjust_stock(sku=sku, location_id=loc, bin=bin, lot=lot, on_hand=qty if on_hand is None else on_hand, delta=qty,
                   seq=seq, reason=reason, received_at=T0 - timedelta(days=received),
                   expires_at=T0 + timedelta(days=expires) if expires is not None else None)
    b.finish()


def place(b: AllocationBook, oid: str, *lines: tuple[str, int], minutes: int = 0, **kw: object) -> Order:
    order = Order(oid, str(kw.pop("channel", "web")), T0 + timedelta(minutes=minutes), country=str(kw.pop("country", "DE")),
                  **kw)  # type: ignore[arg-type]
    for i, (sku, qty) in enumerate(lines, 1):
        order.lines[str(i)] = OrderLine(order, str(i), sku, qty)
    b.place_order(order)
    b.finish()
    return b.orders[oid]


def test_lots_are_taken_earliest_expiry_first_then_first_received() -> None:
    b = book()
    receive(b, "A", 5, lot="old-no-expiry", received=30)
    receive(b, "A", 5, lot="expires-late", expires=60, received=1)
    receive(b, "A", 5, lot="expires-soon", expires=10, received=2)
    order = place(b, "o1", ("A", 12))
    taken = [(a.lot, a.qty) for a in order.lines["1"].allocations]
    assert taken == [("expires-soon", 5), ("expires-late", 5), ("old-no-expiry", 2)]
    assert "FEFO" in order.lines["1"].allocations[0].rule


def test_fewest_splits_prefers_one_location_that_fills_the_whole_order() -> None:
    near = Location("NEAR", "near", "DE", priority=5)
    far = Location("FAR", "far", "DE", priority=1)
    b = book(near, far)
    receive(b, "A", 3, loc="NEAR")
    receive(b, "B", 3, loc="NEAR")
    receive(b, "A", 10, loc="FAR")
    receive(b, "B", 10, loc="FAR")
    order = place(b, "o1", ("A", 5), ("B", 5))
    assert {a.location_id for a in order.live_allocations()} == {"FAR"}
    assert "one location" in order.live_allocations()[0].rule


def test_without_fewest_splits_the_best_ranked_location_gives_first() -> None:
    near = Location("NEAR", "near", "DE", priority=5)
    far = Location("FAR", "far", "DE", priority=1)
    b = book(near, far, policies=(Policy(fewest_splits=False),))
    receive(b, "A", 3, loc="NEAR")
    receive(b, "A", 10, loc="FAR")
    order = place(b, "o1", ("A", 5))
    assert sorted((a.location_id, a.qty) for a in order.live_allocations()) == [("FAR", 2), ("NEAR", 3)]


def test_location_cap_leaves_the_rest_backordered_with_the_reason() -> None:
    b = book(Location("X", "x", "DE", priority=2), Location("Y", "y", "DE", priority=1),
             policies=(Policy(fewest_splits=False, max_locations_per_order=1),))
    receive(b, "A", 3, loc="X")
    receive(b, "A", 3, loc="Y")
    line = place(b, "o1", ("A", 5)).lines["1"]
    assert (line.allocated, line.backordered) == (3, 2)
    assert "max_locations_per_order" in (line.backorder_reason or "")


def test_ship_complete_order_reserves_nothing_until_all_of_it_can_be_allocated() -> None:
    b = book()
    receive(b, "A", 10)
    order = place(b, "o1", ("A", 5), ("B", 5), ship_complete=True)
    assert [ln.allocated for ln in order.lines.values()] == [0, 0]
    assert "ship_complete" in (order.lines["1"].backorder_reason or "")
    receive(b, "B", 5)
    assert [ln.allocated for ln in order.lines.values()] == [5, 5]


def test_pickup_order_only_uses_its_store() -> None:
    b = book(Location("WH", "wh", "DE", priority=9), Location("STORE", "store", "DE", kind="store", pickup=True))
    receive(b, "A", 10, loc="WH")
    receive(b, "A", 1, loc="STORE")
    line = place(b, "o1", ("A", 2), pickup_location_id="STORE").lines["1"]
    assert [(a.location_id, a.qty) for a in line.allocations] == [("STORE", 1)]
    assert line.backordered == 1


def test_order_to_a_country_nobody_ships_to_waits_with_the_reason() -> None:
    b = book()
    receive(b, "A", 10)
    line = place(b, "o1", ("A", 2), country="US").lines["1"]
    assert line.backordered == 2 and "no eligible location" in (line.backorder_reason or "")


def test_sku_without_stock_anywhere_is_backordered_with_that_reason() -> None:
    b = book()
    assert place(b, "o1", ("A", 2)).lines["1"].backorder_reason == "no stock anywhere"


def test_newer_order_never_overtakes_backorder() -> None:
    b = book()
    receive(b, "A", 2)
    old = place(b, "old", ("A", 5), minutes=0)
    receive(b, "A", 3, seq=2, on_hand=5)
    assert old.lines["1"].allocated == 5
    new = place(b, "new", ("A", 1), minutes=10)
    assert new.lines["1"].backordered == 1


def test_higher_priority_backorder_is_filled_first_then_older_first() -> None:
    b = book()
    place(b, "older", ("A", 2), minutes=0)
    place(b, "vip", ("A", 2), minutes=5, priority=5)
    place(b, "newer", ("A", 2), minutes=10)
    receive(b, "A", 4)
    assert [b.orders[o].lines["1"].allocated for o in ("vip", "older", "newer")] == [2, 2, 0]


def test_shrink_releases_the_newest_allocation_first_and_backorders_it() -> None:
    b = book()
    receive(b, "A", 10)
    first = place(b, "first", ("A", 4), minutes=0)
    second = place(b, "second", ("A", 4), minutes=1)
    receive(b, "A", -5, seq=2, on_hand=5, reason="adjustment")
    assert first.lines["1"].allocated == 4
    assert (second.lines["1"].allocated, second.lines["1"].backordered) == (1, 3)
    assert b.positions[("A", "W1", "B1", "")].reserved == 5


def test_shrink_never_releases_packed_units() -> None:
    b = book()
    receive(b, "A", 10)
    order = place(b, "o1", ("A", 6))
    b.request_pack("o1", "s1", None)
    receive(b, "A", -6, seq=2, on_hand=4, reason="adjustment")
    assert order.lines["1"].packed == 6


def test_shipment_closes_the_packed_allocation_instead_of_shrinking() -> None:
    b = book()
    receive(b, "A", 10)
    order = place(b, "o1", ("A", 6))
    place(b, "o2", ("A", 4), minutes=1)
    b.request_pack("o1", "s1", None)
    alloc = order.lines["1"].allocations[0]
    alloc.allocation_id = 77
    b.allocations_by_id[77] = alloc
    b.adjust_stock(sku="A", location_id="W1", bin="B1", lot="", on_hand=4, delta=-6, seq=2, reason="shipment",
                   allocation_id=77, order_id="o1")
    b.finish()
    assert order.lines["1"].shipped == 6
    assert b.orders["o2"].lines["1"].allocated == 4
    assert b.results[-1].event_type == "AllocationShipped"


def test_stale_stock_event_is_ignored_and_counted() -> None:
    b = book()
    receive(b, "A", 10, seq=5)
    assert not b.adjust_stock(sku="A", location_id="W1", bin="B1", lot="", on_hand=99, delta=89, seq=5, reason="count")
    assert b.positions[("A", "W1", "B1", "")].on_hand == 10 and b.stale_stock_events == 1


def test_pack_without_allocated_units_is_rejected() -> None:
    b = book()
    place(b, "o1", ("A", 3))
    b.request_pack("o1", "s1", None)
    assert b.results[-1].event_type == "PackRejected"


def test_deallocated_line_is_held_and_skipped_until_released() -> None:
    b = book()
    receive(b, "A", 5)
    held = place(b, "held", ("A", 5), minutes=0)
    b.deallocate("held", ["1"])
    b.finish()
    assert (held.lines["1"].backordered, held.lines["1"].on_hold) == (5, True)
    later = place(b, "later", ("A", 3), minutes=10)
    assert later.lines["1"].allocated == 3
    b.release_hold("held", None)
    b.finish()
    assert (held.lines["1"].allocated, held.lines["1"].backordered) == (2, 3)


def test_cancel_takes_backorder_first_then_releases_to_the_queue() -> None:
    b = book()
    receive(b, "A", 4)
    first = place(b, "first", ("A", 6), minutes=0)
    waiting = place(b, "waiting", ("A", 3), minutes=5)
    b.cancel("first", None)
    b.finish()
    assert (first.lines["1"].cancelled, first.lines["1"].allocated) == (6, 0)
    assert waiting.lines["1"].allocated == 3


def test_modify_down_reduces_backorder_before_allocation() -> None:
    b = book()
    receive(b, "A", 4)
    order = place(b, "o1", ("A", 6))
    b.modify("o1", [("1", "A", 3)])
    b.finish()
    ln = order.lines["1"]
    assert (ln.qty, ln.allocated, ln.backordered) == (3, 3, 0)
    assert b.positions[("A", "W1", "B1", "")].reserved == 3


def test_transfer_moves_units_between_orders_and_refuses_too_much() -> None:
    b = book()
    receive(b, "A", 4)
    src = place(b, "src", ("A", 4), minutes=0)
    dst = place(b, "dst", ("A", 3), minutes=1)
    with pytest.raises(CommandRefused) as refused:
        b.transfer("src", "dst", "A", 9)
    assert len(refused.value.problems) == 2
    b.transfer("src", "dst", "A", 2)
    b.finish()
    assert (src.lines["1"].allocated, src.lines["1"].backordered) == (2, 2)
    assert (dst.lines["1"].allocated, dst.lines["1"].backordered) == (2, 1)


def test_transfer_source_backorder_takes_stock_already_free_beside_it_unless_held() -> None:
    b = book()
    receive(b, "A", 6)
    src = place(b, "src", ("A", 2), minutes=0)
    dst = place(b, "dst", ("A", 1), minutes=1)
    b.deallocate("dst", ["1"])  # dst waits on hold, so the 4 free units stay free
    b.finish()
    b.transfer("src", "dst", "A", 1)
    # The moved unit goes to dst; src's new backorder is an ordinary queue entry and takes a free unit
    # in the same step (a move is not a hold), so no backorder is left beside free stock.
    assert (src.lines["1"].allocated, src.lines["1"].backordered) == (2, 0)
    assert (dst.lines["1"].allocated, dst.lines["1"].backordered) == (1, 0)
    published = [r for r in b.results if r.order_id == "src"][-1]  # one result: moved out and refilled
    assert (published.event_type, published.lines[0][3:5]) == ("OrderReallocated", (2, 0))
    b.finish()
    assert b.positions[("A", "W1", "B1", "")].reserved == 3
    # Moving units out of a line on hold leaves its backorder on hold: the queue does not refill it.
    other = place(b, "other", ("A", 3), minutes=2)
    b.deallocate("other", ["1"])
    b.finish()
    b.transfer("dst", "other", "A", 1)
    b.finish()
    assert (dst.lines["1"].allocated, dst.lines["1"].backordered, dst.lines["1"].on_hold) == (0, 1, True)
    assert other.lines["1"].allocated == 1


def test_line_waiting_on_the_location_cap_is_filled_once_its_order_leaves_a_location() -> None:
    near, far = Location("NEAR", "near", "DE", priority=5), Location("FAR", "far", "DE", priority=1)
    b = book(near, far, policies=(Policy(max_locations_per_order=1),))
    receive(b, "A", 2, loc="NEAR")
    receive(b, "B", 3, loc="FAR")
    order = place(b, "o1", ("A", 2), ("B", 3))
    assert (order.lines["2"].backordered, order.lines["2"].backorder_reason) == (3, "max_locations_per_order (1) reached")
    b.deallocate("o1", ["1"])  # releases A at NEAR: the order no longer uses any location
    b.finish()
    assert (order.lines["2"].allocated, order.lines["2"].backordered) == (3, 0)
    assert (order.lines["1"].backordered, order.lines["1"].on_hold) == (2, True)


def test_fully_cancelled_held_line_leaves_hold_so_a_later_increase_is_allocated() -> None:
    b = book()
    receive(b, "A", 5)
    order = place(b, "o1", ("A", 1))
    b.deallocate("o1", ["1"])
    b.cancel("o1", ["1"])
    b.finish()
    ln = order.lines["1"]
    assert (ln.cancelled, ln.backordered, ln.on_hold) == (1, 0, False)  # SPEC 3.2: held until released or cancelled
    b.modify("o1", [("1", "A", 3)])
    b.finish()
    assert (ln.allocated, ln.backordered, ln.cancelled) == (2, 0, 1)


def test_reallocate_moves_the_order_to_the_preferred_location() -> None:
    b = book(Location("X", "x", "DE", priority=5), Location("Y", "y", "DE", priority=1))
    receive(b, "A", 5, loc="X")
    receive(b, "A", 5, loc="Y")
    order = place(b, "o1", ("A", 3))
    assert {a.location_id for a in order.live_allocations()} == {"X"}
    b.reallocate("o1", "Y")
    b.finish()
    assert {a.location_id for a in order.live_allocations()} == {"Y"}
    assert b.results[-1].event_type == "OrderReallocated"


def test_deactivated_location_hands_its_allocations_to_another() -> None:
    x, y = Location("X", "x", "DE", priority=5), Location("Y", "y", "DE", priority=1)
    b = book(x, y)
    receive(b, "A", 5, loc="X")
    receive(b, "A", 5, loc="Y")
    order = place(b, "o1", ("A", 3))
    b.change_location(Location("X", "x", "DE", priority=5, active=False))
    b.finish()
    assert [(a.location_id, a.qty) for a in order.live_allocations()] == [("Y", 3)]


def test_safety_stock_and_channel_buffer_hold_units_back() -> None:
    b = book(policies=(Policy(safety_stock=(SafetyStock("*", "W1", 2),)), Policy(channel="pos", buffer=3)))
    receive(b, "A", 10)
    assert place(b, "web", ("A", 10)).lines["1"].allocated == 8
    receive(b, "A", 5, seq=2, on_hand=15)
    assert place(b, "pos", ("A", 5), channel="pos", minutes=1).lines["1"].allocated == 2


def test_policy_validation_lists_every_problem() -> None:
    policy, problems = parse_policy(
        {"rank_by": ["priority", "cost"], "max_locations_per_order": 0, "buffer": -1,
         "safety_stock": [{"sku": "A", "location_id": "NOWHERE", "qty": -2}]},
        known_locations=["W1"],
    )
    assert policy is None
    assert {p.field for p in problems} == {"rank_by.1", "max_locations_per_order", "buffer",
                                           "safety_stock.0.location_id", "safety_stock.0.qty"}


def test_book_asks_for_what_is_outside_its_slice() -> None:
    b = book(skus=("A",))
    with pytest.raises(SliceTooSmall) as more:
        place(b, "o1", ("B", 1))
    assert more.value.skus == {"B"}


def test_a_lot_past_its_expiry_is_never_allocated_although_it_expires_first() -> None:
    b = book()
    receive(b, "A", 5, lot="expired", expires=-1, received=30)
    receive(b, "A", 5, lot="expires-at-now", expires=0, received=20)
    receive(b, "A", 5, lot="good", expires=10, received=10)
    order = place(b, "o1", ("A", 8))
    assert [(a.lot, a.qty) for a in order.lines["1"].allocations] == [("good", 5)]
    assert order.lines["1"].backordered == 3
    assert b.available_at("A", "W1", Policy()) == 0


def test_units_on_a_lot_that_expires_while_allocated_are_released_and_reallocated() -> None:
    b = book()
    receive(b, "A", 5, lot="soon", expires=1, received=30)
    receive(b, "A", 3, lot="later", expires=30, received=10)
    packed = place(b, "o0", ("A", 1))  # packed units are never released, expired or not
    b.request_pack("o0", "s0", None)
    order = place(b, "o1", ("A", 6), minutes=1)
    soon = ("A", "W1", "B1", "soon")
    b.release_expired([soon])  # not expired yet: nothing changes
    assert order.lines["1"].allocated == 6 and b.positions[soon].reserved == 5
    b.now = T0 + timedelta(days=2)  # the caller's clock moved past the lot's expiry
    b.release_expired([soon])
    line = order.lines["1"]
    assert {a.lot for a in line.allocations if a.live} == {"later"}
    assert (line.allocated, line.backordered) == (3, 3)
    assert b.positions[soon].reserved == 1 and packed.lines["1"].packed == 1
    assert b.results[-1].event_type == "OrderReallocated" and "expired on 2026-03-02" in (b.results[-1].detail or "")
    assert line.conserved()
