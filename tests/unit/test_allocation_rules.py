"""Location rules of SPEC 3.1 with exact expected locations: distance ranking, the fewest-splits
search over two and three locations, the cap on locations per order, and pickup orders only at
a location that offers pickup (issue 10, deliverable 3)."""

from __future__ import annotations

from datetime import UTC, datetime

from services.allocation.domain.book import AllocationBook, QueueSlice
from services.allocation.domain.model import Location, Order, OrderLine
from services.allocation.domain.policy import Policy

T0 = datetime(2026, 3, 1, tzinfo=UTC)
BERLIN = {"lat": 52.520, "lon": 13.405}
HAM = Location("HAM", "hamburg", "DE", lat=53.551, lon=9.993)  # 255 km from Berlin
FRA = Location("FRA", "frankfurt", "DE", lat=50.110, lon=8.682)  # 424 km
MUC = Location("MUC", "munich", "DE", lat=48.137, lon=11.575)  # 504 km


def book(*locations: Location, policy: Policy | None = None) -> AllocationBook:
    return AllocationBook(locations=list(locations), policies=[policy] if policy else [], positions=[], orders=[],
                          skus=["X", "Y"], queues={"X": QueueSlice(True), "Y": QueueSlice(True)}, now=T0,
                          location_allocations_loaded=[loc.location_id for loc in locations])


def stock(b: AllocationBook, **at: int) -> None:
    for i, (loc, qty) in enumerate(at.items(), 1):
        b.adjust_stock(sku="X", location_id=loc, bin="B1", lot="", on_hand=qty, delta=qty, seq=i, reason="receipt")
    b.finish()


def place(b: AllocationBook, qty: int, *, oid: str = "o1", **kw: object) -> Order:
    order = Order(oid, str(kw.pop("channel", "web")), T0, country="DE", **kw)  # type: ignore[arg-type]
    order.lines["1"] = OrderLine(order, "1", "X", qty)
    b.place_order(order)
    b.finish()
    return order


def taken(order: Order) -> list[tuple[str, int]]:
    return [(a.location_id, a.qty) for a in order.lines["1"].allocations if a.live]


def test_the_nearest_location_to_the_ship_to_point_ranks_first() -> None:
    b = book(MUC, FRA, HAM)
    stock(b, MUC=5, FRA=5, HAM=5)
    order = place(b, 2, **BERLIN)
    assert [loc.location_id for loc, _ in b.candidates(order, b.policy_for("web"))] == ["HAM", "FRA", "MUC"]
    assert taken(order) == [("HAM", 2)]
    assert "ranked #1 by priority, distance (priority 0, 255 km away)" in order.lines["1"].allocations[0].rule
    # Without stock at the nearest, the next nearest gives.
    b2 = book(MUC, FRA, HAM)
    stock(b2, MUC=5, FRA=5)
    assert taken(place(b2, 2, **BERLIN)) == [("FRA", 2)]


def test_location_priority_ranks_before_distance_and_distance_alone_when_asked() -> None:
    far_but_first = Location("MUC", "munich", "DE", lat=48.137, lon=11.575, priority=1)
    b = book(far_but_first, FRA, HAM)
    stock(b, MUC=5, FRA=5, HAM=5)
    assert taken(place(b, 2, **BERLIN)) == [("MUC", 2)]
    b2 = book(far_but_first, FRA, HAM, policy=Policy(rank_by=("distance",)))
    stock(b2, MUC=5, FRA=5, HAM=5)
    assert taken(place(b2, 2, **BERLIN)) == [("HAM", 2)]


def test_an_order_without_coordinates_ranks_locations_by_priority_then_id() -> None:
    b = book(MUC, FRA, HAM)
    stock(b, MUC=5, FRA=5, HAM=5)
    order = place(b, 2)
    assert [loc.location_id for loc, _ in b.candidates(order, b.policy_for("web"))] == ["FRA", "HAM", "MUC"]
    assert "distance unknown" in order.lines["1"].allocations[0].rule


def ranked(*stock_per_location: int) -> list[Location]:
    """Locations A, B, C, ... ranked in that order by priority."""
    n = len(stock_per_location)
    return [Location(chr(ord("A") + i), f"loc{i}", "DE", priority=n - i) for i in range(n)]


def test_fewest_splits_takes_the_first_pair_of_locations_that_fills_the_order() -> None:
    b = book(*ranked(4, 5, 6))
    stock(b, A=4, B=5, C=6)  # by rank alone: A 4 + B 5 + C 1, three locations
    order = place(b, 10)
    assert taken(order) == [("A", 4), ("C", 6)]
    assert "fewest splits: 2 locations fill all of it" in order.lines["1"].allocations[0].rule


def test_fewest_splits_takes_three_locations_when_no_pair_fills_the_order() -> None:
    b = book(*ranked(3, 1, 3, 3))
    stock(b, A=3, B=1, C=3, D=3)  # by rank alone: A, B, C and D
    order = place(b, 9)
    assert taken(order) == [("A", 3), ("C", 3), ("D", 3)]
    assert "fewest splits: 3 locations fill all of it" in order.lines["1"].allocations[0].rule


def test_beyond_three_locations_the_order_is_split_greedily_by_rank() -> None:
    b = book(*ranked(2, 2, 2, 2))
    stock(b, A=2, B=2, C=2, D=2)
    order = place(b, 8)
    assert taken(order) == [("A", 2), ("B", 2), ("C", 2), ("D", 2)]
    assert "greedy by rank (no small combination of locations fills all of it)" in order.lines["1"].allocations[0].rule


def test_the_cap_on_locations_per_order_leaves_the_rest_backordered() -> None:
    b = book(*ranked(3, 3, 3), policy=Policy(max_locations_per_order=2))
    stock(b, A=3, B=3, C=3)  # all three would fill it; the cap allows two
    order = place(b, 9)
    line = order.lines["1"]
    assert taken(order) == [("A", 3), ("B", 3)]
    assert (line.backordered, line.backorder_reason) == (3, "max_locations_per_order (2) reached")
    # A pair within the cap that fills it all is preferred to the best-ranked location.
    b2 = book(*ranked(3, 3, 6), policy=Policy(max_locations_per_order=1))
    stock(b2, A=3, B=3, C=6)
    assert taken(place(b2, 6)) == [("C", 6)]


def test_the_cap_counts_locations_the_order_already_uses() -> None:
    b = book(*ranked(5, 5), policy=Policy(max_locations_per_order=1))
    stock(b, A=2, B=5)
    order = place(b, 2)
    assert taken(order) == [("A", 2)]
    b.modify("o1", [("1", "X", 4)])  # two more: B has them, but the order already uses A
    b.finish()
    assert taken(order) == [("A", 2)]
    assert (order.lines["1"].backordered, order.lines["1"].backorder_reason) == (2, "max_locations_per_order (1) reached")


def test_a_pickup_order_waits_at_a_location_that_does_not_offer_pickup_until_it_does() -> None:
    wh = Location("WH", "warehouse", "DE", priority=9)
    store = Location("STORE", "store", "DE", kind="store", pickup=True, channels=("pos",))
    b = book(wh, store)
    stock(b, WH=5, STORE=5)
    order = place(b, 2, pickup_location_id="WH")
    line = order.lines["1"]
    assert taken(order) == []
    assert (line.backordered, line.backorder_reason) == (
        2, "no eligible location: pickup location WH does not offer pickup")
    web_at_store = place(b, 1, oid="o2", pickup_location_id="STORE")
    assert web_at_store.lines["1"].backorder_reason == (
        "no eligible location: pickup location STORE does not serve channel web")
    assert taken(place(b, 1, oid="o3", pickup_location_id="STORE", channel="pos")) == [("STORE", 1)]
    b.change_location(Location("WH", "warehouse", "DE", priority=9, pickup=True))  # the warehouse opens a pickup desk
    b.finish()
    assert taken(order) == [("WH", 2)]
    assert line.backordered == 0


def test_the_feed_promises_each_channel_only_the_locations_it_may_use_after_its_buffer() -> None:
    """SPEC 3.7 / issue 10 part 3: per location, SPEC's available (safety stock held back, no
    buffer); per channel, its own buffer and only locations that serve it; the default entry
    only locations that serve every channel; a channel a location is kept for gets its figure."""
    from services.allocation.domain.policy import SafetyStock
    from services.allocation.service_layer.availability import availability_of

    default = Policy(safety_stock=(SafetyStock("*", "WH", 1),))
    web = Policy(channel="web", buffer=2)
    data = availability_of("A", {"WH": 10, "SHOP": 4, "B2B": 6}, {"*": default, "web": web}, T0,
                           serves={"WH": None, "SHOP": ("pos", "web"), "B2B": ("b2b",)})
    assert data["locations"] == [{"location_id": "B2B", "available": 6}, {"location_id": "SHOP", "available": 4},
                                 {"location_id": "WH", "available": 9}]
    assert data["total"] == 19
    assert data["channels"] == {
        "*": 9,              # WH only (SHOP and B2B are kept for named channels), its safety stock held back
        "web": 8 + 2,        # WH 10 - 2 buffer (web's own policy: no safety stock), SHOP 4 - 2; not B2B
        "pos": 9 + 4,        # the default policy: WH 10 - 1 safety, SHOP 4; not B2B
        "b2b": 9 + 6,        # WH and B2B under the default policy
    }
