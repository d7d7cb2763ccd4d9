"""How soon the availability feed must publish a SKU's new figures (decision 14): promptly when a
storefront's figure is at or near zero, or stock and settings changed; after the calm window when
orders only took a little from plenty."""

from __future__ import annotations

from test_allocation_book import book, place, receive

from services.allocation.domain.book import AllocationBook
from services.allocation.domain.changes import ChangeRecord
from services.allocation.domain.model import Location
from services.allocation.domain.policy import Policy, SafetyStock

MARGIN = 20


def next_transaction(b: AllocationBook) -> None:
    """What the book changed so far is written: the next marks start from nothing."""
    b.changes = ChangeRecord()


def marks(b: AllocationBook) -> tuple[set[str], set[str]]:
    return b.availability_marks(MARGIN)


def test_an_order_taking_a_little_from_plenty_may_wait_for_the_calm_window() -> None:
    b = book()
    receive(b, "A", 100)
    next_transaction(b)
    place(b, "o1", ("A", 2))
    assert marks(b) == (set(), {"A"})


def test_an_order_leaving_a_location_near_zero_is_published_promptly() -> None:
    b = book()
    receive(b, "A", 30)
    receive(b, "B", 100)
    next_transaction(b)
    place(b, "o1", ("A", 10), ("B", 1))  # A: 20 left, at the margin
    assert marks(b) == ({"A"}, {"B"})


def test_a_channels_buffer_and_safety_stock_move_the_edge_up() -> None:
    b = book(policies=(Policy(channel="web", buffer=40), Policy(channel="pos", safety_stock=(SafetyStock("A", "*", 70),))))
    receive(b, "A", 120)
    receive(b, "B", 200)
    next_transaction(b)
    place(b, "o1", ("A", 25), ("B", 39))  # A: 95 left > 70 + 20; B: 161 left > 40 + 20
    assert marks(b) == (set(), {"A", "B"})
    next_transaction(b)
    place(b, "o2", ("A", 5), ("B", 100), minutes=1)  # A: 90 left, at pos's edge; B: 61 left, above web's
    assert marks(b) == ({"A"}, {"B"})
    next_transaction(b)
    place(b, "o3", ("B", 1), minutes=2)  # B: 60 left, at web's edge
    assert marks(b) == ({"B"}, set())


def test_the_edge_is_per_changed_location() -> None:
    b = book(Location("W1", "w1", "DE", priority=2), Location("W2", "w2", "DE", priority=1))
    receive(b, "A", 5, loc="W1")
    receive(b, "A", 100, loc="W2", seq=2)
    next_transaction(b)
    place(b, "o1", ("A", 1))  # taken at W1 (fewest splits, then priority): 4 left there, plenty at W2
    order = b.orders["o1"]
    assert order.lines["1"].allocations[0].location_id == "W1"
    assert marks(b) == ({"A"}, set())


def test_sold_out_and_back_in_stock_are_prompt() -> None:
    b = book()
    receive(b, "A", 100)
    next_transaction(b)
    place(b, "o1", ("A", 100))
    assert marks(b) == ({"A"}, set())
    next_transaction(b)
    place(b, "o2", ("A", 5), minutes=1)  # backordered: nothing changed at any location
    assert marks(b) == (set(), set())
    next_transaction(b)
    receive(b, "A", 200, on_hand=300, seq=2)  # a receipt: the backorder takes 5, 195 left
    assert marks(b) == ({"A"}, set())


def test_a_shipment_changes_no_figure_and_waits() -> None:
    b = book()
    receive(b, "A", 100)
    order = place(b, "o1", ("A", 2))
    b.request_pack("o1", "s1", None)
    alloc = order.lines["1"].allocations[0]
    alloc.allocation_id = 7
    b.allocations_by_id[7] = alloc
    next_transaction(b)
    b.adjust_stock(sku="A", location_id="W1", bin="B1", lot="", on_hand=98, delta=-2, seq=2, reason="shipment",
                   allocation_id=7, order_id="o1")
    b.finish()
    assert order.lines["1"].shipped == 2
    assert marks(b) == (set(), {"A"})


def test_a_count_that_changes_free_units_is_prompt_even_far_from_the_edge() -> None:
    b = book()
    receive(b, "A", 100)
    next_transaction(b)
    receive(b, "A", -3, on_hand=97, seq=2, reason="count")
    assert marks(b) == ({"A"}, set())


def test_a_new_policy_makes_every_loaded_sku_prompt() -> None:
    b = book()
    receive(b, "A", 100)
    receive(b, "B", 100)
    next_transaction(b)
    b.set_policy(Policy(channel="web", buffer=5))
    assert marks(b)[0] == {"A", "B"}

