"""Dropship locations in the pure allocation book: when the policy lets lines go to a supplier,
never beyond its stated stock less what is already requested, the request locks the units, and
a refusal releases them to be allocated again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.allocation.domain.book import AllocationBook, QueueSlice
from services.allocation.domain.model import Location, Order, OrderLine
from services.allocation.domain.policy import Policy, parse_policy

T0 = datetime(2026, 3, 1, tzinfo=UTC)
WH = Location("WH", "warehouse", "DE", priority=5)
SUP = Location("SUP", "supplier", "DE", kind="dropship", priority=9)
SUPPLIER_BIN = "SUPPLIER"


def book(*policies: Policy, locations: tuple[Location, ...] = (WH, SUP)) -> AllocationBook:
    skus = ("A", "B")
    return AllocationBook(locations=list(locations), policies=list(policies), positions=[], orders=[], skus=skus,
                          queues={s: QueueSlice(True) for s in skus}, now=T0,
                          location_allocations_loaded=[loc.location_id for loc in locations])


def stock(b: AllocationBook, sku: str, on_hand: int, *, loc: str, delta: int | None = None, reason: str = "receipt",
          allocation_id: int | None = None, order_id: str | None = None) -> None:
    p = b.positions.get((sku, loc, SUPPLIER_BIN if loc == "SUP" else "B1", ""))
    seq = (p.seq if p else 0) + 1
    before = p.on_hand if p else 0
    b.adjust_stock(sku=sku, location_id=loc, bin=SUPPLIER_BIN if loc == "SUP" else "B1", lot="", on_hand=on_hand,
                   delta=on_hand - before if delta is None else delta, seq=seq, reason=reason,
                   allocation_id=allocation_id, order_id=order_id)
    b.finish()


def place(b: AllocationBook, oid: str, *lines: tuple[str, int], minutes: int = 0) -> Order:
    order = Order(oid, "web", T0 + timedelta(minutes=minutes), country="DE")
    for i, (sku, qty) in enumerate(lines, 1):
        order.lines[str(i)] = OrderLine(order, str(i), sku, qty)
    b.place_order(order)
    b.finish()
    return b.orders[oid]


def where(order: Order) -> list[tuple[str, str, int, str]]:
    return sorted((a.line_id, a.location_id, a.qty, a.status) for a in order.live_allocations())


def stored(b: AllocationBook) -> None:
    """Give new allocations ids, as the writer does."""
    next_id = max(b.allocations_by_id, default=0) + 1
    for o in b.orders.values():
        for a in o.live_allocations():
            if a.allocation_id is None:
                a.allocation_id = next_id
                b.allocations_by_id[next_id] = a
                next_id += 1


def test_fallback_uses_the_supplier_only_for_what_own_locations_cannot_give() -> None:
    b = book()
    stock(b, "A", 3, loc="WH")
    stock(b, "A", 10, loc="SUP")
    order = place(b, "o1", ("A", 5))
    assert where(order) == [("1", "SUP", 2, "allocated"), ("1", "WH", 3, "allocated")]
    [sup] = [a for a in order.live_allocations() if a.location_id == "SUP"]
    assert "dropship: no own location can fill it" in sup.rule


def test_fallback_never_asks_the_supplier_when_own_stock_fills_the_line() -> None:
    b = book()
    stock(b, "A", 5, loc="WH")
    stock(b, "A", 10, loc="SUP")
    assert where(place(b, "o1", ("A", 5))) == [("1", "WH", 5, "allocated")]


def test_always_for_listed_skus_sends_them_to_the_supplier_first() -> None:
    b = book(Policy(dropship_mode="always", dropship_skus=("A",)))
    stock(b, "A", 10, loc="WH")
    stock(b, "B", 10, loc="WH")
    stock(b, "A", 4, loc="SUP")
    stock(b, "B", 10, loc="SUP")
    order = place(b, "o1", ("A", 6), ("B", 2))
    assert where(order) == [("1", "SUP", 4, "allocated"), ("1", "WH", 2, "allocated"), ("2", "WH", 2, "allocated")]


def test_never_leaves_the_supplier_out_and_backorders() -> None:
    b = book(Policy(dropship_mode="never"))
    stock(b, "A", 1, loc="WH")
    stock(b, "A", 10, loc="SUP")
    line = place(b, "o1", ("A", 3)).lines["1"]
    assert where(b.orders["o1"]) == [("1", "WH", 1, "allocated")]
    assert line.backordered == 2


def test_the_supplier_never_gives_beyond_its_stated_stock_less_what_is_requested() -> None:
    b = book()
    stock(b, "A", 4, loc="SUP")
    first = place(b, "o1", ("A", 3))
    second = place(b, "o2", ("A", 3), minutes=1)
    assert where(first) == [("1", "SUP", 3, "allocated")]
    assert where(second) == [("1", "SUP", 1, "allocated")]
    assert second.lines["1"].backordered == 2
    p = b.positions[("A", "SUP", SUPPLIER_BIN, "")]
    assert (p.on_hand, p.reserved) == (4, 4)


def test_a_dropship_request_locks_only_the_suppliers_units_and_a_pack_never_takes_them() -> None:
    b = book()
    stock(b, "A", 3, loc="WH")
    stock(b, "A", 10, loc="SUP")
    order = place(b, "o1", ("A", 5))
    b.request_pack("o1", "ship-1", None)
    b.pack_for_supplier("o1", "dsr-1", None, "SUP")
    b.finish()
    assert sorted((a.location_id, a.status, a.shipment_id) for a in order.live_allocations()) == [
        ("SUP", "packed", "dsr-1"), ("WH", "packed", "ship-1")]
    assert [r.event_type for r in b.results[-2:]] == ["AllocationPacked", "AllocationPacked"]


def test_a_dropship_request_for_a_location_that_is_not_a_supplier_is_rejected() -> None:
    b = book()
    stock(b, "A", 3, loc="WH")
    place(b, "o1", ("A", 3))
    b.pack_for_supplier("o1", "dsr-1", None, "WH")
    assert b.results[-1].event_type == "PackRejected"
    assert "not a dropship location" in (b.results[-1].detail or "")
    assert where(b.orders["o1"]) == [("1", "WH", 3, "allocated")]


def test_a_refusal_releases_the_units_and_they_go_to_another_location() -> None:
    b = book()
    stock(b, "A", 2, loc="SUP")
    order = place(b, "o1", ("A", 2))
    stored(b)
    b.pack_for_supplier("o1", "dsr-1", None, "SUP")
    b.finish()
    stock(b, "A", 5, loc="WH")  # own stock arrives while the supplier holds the request
    [a] = order.live_allocations()
    assert (a.location_id, a.status) == ("SUP", "packed")
    # Inventory books the refusal: the stated stock falls by the refused units, naming them.
    stock(b, "A", 0, loc="SUP", reason="dropship_refused", allocation_id=a.allocation_id, order_id="o1")
    line = order.lines["1"]
    assert where(order) == [("1", "WH", 2, "allocated")]
    assert (line.allocated, line.backordered, line.packed) == (2, 0, 0)
    assert line.conserved()
    p = b.positions[("A", "SUP", SUPPLIER_BIN, "")]
    assert (p.on_hand, p.reserved) == (0, 0)
    assert any(r.change == "dropship refused" for r in b.results)


def test_a_refusal_with_nowhere_else_to_go_backorders_with_the_reason() -> None:
    b = book()
    stock(b, "A", 3, loc="SUP")
    order = place(b, "o1", ("A", 2))
    stored(b)
    b.pack_for_supplier("o1", "dsr-1", None, "SUP")
    b.finish()
    [a] = order.live_allocations()
    stock(b, "A", 1, loc="SUP", reason="dropship_refused", allocation_id=a.allocation_id, order_id="o1")
    line = order.lines["1"]
    # The one unit the supplier still states is allocated again; the rest waits.
    assert where(order) == [("1", "SUP", 1, "allocated")]
    assert (line.allocated, line.backordered) == (1, 1)
    assert line.conserved()


def test_policy_dropship_fields_are_validated_and_round_trip() -> None:
    policy, problems = parse_policy({"dropship_mode": "sometimes", "dropship_skus": "A"}, [])
    assert policy is None
    assert {p.field for p in problems} == {"dropship_mode", "dropship_skus"}
    policy, problems = parse_policy({"dropship_mode": "always", "dropship_skus": ["A"]}, [])
    assert policy is not None and not problems
    assert policy.to_json()["dropship_mode"] == "always"
    assert policy.to_json()["dropship_skus"] == ["A"]
    assert parse_policy(policy.to_json(), [])[0] == policy


def test_the_feed_promises_a_channel_supplier_stock_only_where_its_policy_may_send_the_sku_there() -> None:
    from services.allocation.service_layer.availability import availability_of

    policies = {"*": Policy(), "pos": Policy(channel="pos", dropship_mode="never"),
                "b2b": Policy(channel="b2b", dropship_skus=("B",))}
    data = availability_of("A", {"WH": 3, "SUP": 10}, policies, T0, frozenset({"SUP"}))
    assert data["total"] == 13
    assert data["channels"] == {"*": 13, "pos": 3, "b2b": 3}
    assert sorted((x["location_id"], x["available"]) for x in data["locations"]) == [("SUP", 10), ("WH", 3)]
