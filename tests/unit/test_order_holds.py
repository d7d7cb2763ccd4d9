"""A hold staff put on a whole order allocation already knows (OrderHeld / OrderHoldReleased,
issue 11 part 1 "a hold placed by hand on any order"): nothing more is allocated to it, what is
allocated stays reserved but cannot be packed, release refills it at its original queue place,
cancellation works as for any order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.allocation.domain.book import AllocationBook, QueueSlice
from services.allocation.domain.model import Location, Order, OrderLine

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def book() -> AllocationBook:
    b = AllocationBook(locations=[Location("WH", "wh", "DE")], policies=[], positions=[], orders=[], skus=["X", "Y"],
                       queues={"X": QueueSlice(True), "Y": QueueSlice(True)}, now=T0, location_allocations_loaded=["WH"])
    receive(b, "X", 4, 1)
    return b


def receive(b: AllocationBook, sku: str, on_hand: int, seq: int, delta: int | None = None) -> None:
    b.adjust_stock(sku=sku, location_id="WH", bin="B1", lot="", on_hand=on_hand,
                   delta=on_hand if delta is None else delta, seq=seq, reason="receipt")
    b.finish()


def place(b: AllocationBook, oid: str, qty: int, minutes: int) -> Order:
    order = Order(oid, "web", T0 + timedelta(minutes=minutes), country="DE")
    order.lines["1"] = OrderLine(order, "1", "X", qty)
    b.place_order(order)
    b.finish()
    return order


def state(order: Order) -> list[tuple[str, int, int, bool]]:
    return [(ln.line_id, ln.allocated, ln.backordered, ln.on_hold) for ln in order.lines.values()]


def test_a_held_order_gets_nothing_more_keeps_what_it_has_and_cannot_be_packed() -> None:
    b = book()
    old = place(b, "old", 6, 0)  # 4 allocated, 2 backordered
    new = place(b, "new", 3, 5)  # 3 backordered behind it
    b.hold_order("old", "call the customer")
    b.finish()
    assert state(old) == [("1", 4, 2, True)]
    assert b.results[-1].change == "held" and "4 allocated unit(s) stay reserved" in (b.results[-1].detail or "")

    receive(b, "X", 7, 2, delta=3)  # the held order's place in the queue is skipped
    assert state(old) == [("1", 4, 2, True)] and state(new) == [("1", 3, 0, False)]

    b.request_pack("old", "S1", None)
    b.finish()
    assert b.results[-1].event_type == "PackRejected" and "order on hold: call the customer" in (b.results[-1].detail or "")
    assert old.lines["1"].packed == 0

    b.modify("old", [("2", "Y", 1)])  # a new line while held: waits on hold, even with stock there
    receive(b, "Y", 5, 1)
    b.finish()
    assert state(old) == [("1", 4, 2, True), ("2", 0, 1, True)]
    assert "held by staff (call the customer)" in (old.lines["2"].backorder_reason or "")


def test_releasing_the_hold_refills_the_order_at_its_original_queue_place() -> None:
    b = book()
    old = place(b, "old", 6, 0)
    new = place(b, "new", 2, 5)
    b.hold_order("old", "fraud check")
    b.finish()
    b.release_order_hold("old")  # nothing arrived meanwhile: back in the queue, still first
    b.finish()
    assert state(old) == [("1", 4, 2, False)]
    receive(b, "X", 6, 2, delta=2)
    assert state(old) == [("1", 6, 0, False)] and state(new) == [("1", 0, 2, False)]  # older first, as before
    b.request_pack("old", "S1", None)
    b.finish()
    assert b.results[-1].event_type == "AllocationPacked" and old.lines["1"].packed == 6


def test_cancelling_a_held_order_releases_its_stock_to_the_queue() -> None:
    b = book()
    place(b, "old", 4, 0)
    new = place(b, "new", 2, 5)
    b.hold_order("old", "fraud")
    b.finish()
    b.cancel("old", None, "fraud confirmed")
    b.run_pending_fills()
    b.finish()
    assert state(new) == [("1", 2, 0, False)]


def test_a_hold_for_an_order_allocation_does_not_know_changes_nothing() -> None:
    b = book()
    b.hold_order("ghost", "x")
    b.release_order_hold("ghost")
    b.finish()
    assert b.results == []
