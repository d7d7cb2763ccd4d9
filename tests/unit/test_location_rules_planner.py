"""Channel rules that restrict or prefer locations and set per-order location priorities
(issue 11 part 1): how intake's rules combine them, and how allocation's planner honours what
OrderPlaced.locations carries, with exact locations and explanations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from libs.contracts.events import LocationChoice
from libs.contracts.orders import ChannelOrder, validate_channel_order
from services.allocation.domain.book import AllocationBook, QueueSlice
from services.allocation.domain.model import Location, Order, OrderLine
from services.order_intake.domain.rules import Rule, RuleIn, evaluate

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def channel_order() -> ChannelOrder:
    parsed, problems = validate_channel_order({
        "channel": "web", "external_id": "1", "placed_at": "2026-11-23T10:00:00Z", "currency": "EUR",
        "customer": {}, "ship_to": {"country": "DE"},
        "lines": [{"line_id": "1", "sku": "A", "qty": 2, "unit_price": "50.00"}]})
    assert parsed is not None, problems
    return parsed


def rule(rule_id: str, position: int, **actions: Any) -> Rule:
    return Rule(rule_id, RuleIn.model_validate({"name": rule_id, "position": position, "actions": actions}))


# --- intake: the rules' decision ---------------------------------------------------------------


def test_restrictions_narrow_the_first_preference_and_first_priority_per_location_win() -> None:
    decision = evaluate([
        rule("r1", 1, restrict_locations=["A", "B", "C"], prefer_locations=["C", "B"], location_priorities={"A": 5}),
        rule("r2", 2, restrict_locations=["B", "C", "D"], prefer_locations=["A"], location_priorities={"A": 9, "B": 3}),
    ], channel_order())
    assert decision.locations == LocationChoice(
        restrict_to=["B", "C"], restricted_by="rule 'r1' (r1); rule 'r2' (r2)",
        prefer=["C", "B"], preferred_by="rule 'r1' (r1)",
        priorities={"A": 5, "B": 3}, priorities_by="rule 'r1' (r1); rule 'r2' (r2)")
    assert [e.did for e in decision.effects] == [
        ["restricted to locations A, B, C", "prefers locations C, B", "location priorities A 5"],
        ["restricted to locations B, C", "preferred locations overridden by an earlier rule", "location priorities B 3",
         "location priorities of A overridden by an earlier rule"],
    ]


def test_rules_without_location_actions_choose_no_locations() -> None:
    assert evaluate([rule("r1", 1, priority=3)], channel_order()).locations is None


def test_a_rule_naming_locations_lists_them_for_checking_and_refuses_an_empty_restriction() -> None:
    spec = RuleIn.model_validate({"name": "x", "actions": {
        "restrict_locations": ["A"], "prefer_locations": ["B"], "location_priorities": {"C": 1}}})
    assert spec.actions.location_fields() == [("actions.restrict_locations.0", "A"), ("actions.prefer_locations.0", "B"),
                                              ("actions.location_priorities.C", "C")]
    with pytest.raises(ValidationError) as err:
        RuleIn.model_validate({"name": "x", "actions": {"restrict_locations": []}})
    assert err.value.errors()[0]["loc"] == ("actions", "restrict_locations")


# --- allocation: the planner honours the order's locations -------------------------------------


def book(*locations: Location) -> AllocationBook:
    b = AllocationBook(locations=list(locations), policies=[], positions=[], orders=[], skus=["X"],
                       queues={"X": QueueSlice(True)}, now=T0,
                       location_allocations_loaded=[loc.location_id for loc in locations])
    for i, loc in enumerate(locations, 1):
        b.adjust_stock(sku="X", location_id=loc.location_id, bin="B1", lot="", on_hand=5, delta=5, seq=i,
                       reason="receipt")
    b.finish()
    return b


def place(b: AllocationBook, qty: int, choice: LocationChoice | None, oid: str = "o1") -> Order:
    order = Order(oid, "web", T0, country="DE",
                  location_choice=choice.model_dump_json() if choice is not None else None)
    order.lines["1"] = OrderLine(order, "1", "X", qty)
    b.place_order(order)
    b.finish()
    return order


def taken(order: Order) -> list[tuple[str, int]]:
    return [(a.location_id, a.qty) for a in order.lines["1"].allocations if a.live]


# A ranks first on its own priority; B, C after it
A, B, C = Location("A", "a", "DE", priority=3), Location("B", "b", "DE", priority=2), Location("C", "c", "DE", priority=1)


def test_without_rules_the_location_priority_decides() -> None:
    assert taken(place(book(A, B, C), 2, None)) == [("A", 2)]


def test_a_restricted_order_takes_stock_only_from_its_locations_and_says_which_rule() -> None:
    b = book(A, B, C)
    order = place(b, 7, LocationChoice(restrict_to=["B", "C"], restricted_by="rule 'eu only' (rule_1)"))
    assert sorted(taken(order)) == [("B", 5), ("C", 2)]  # never A, though it ranks first
    assert all("channel rules: allowed by rule 'eu only' (rule_1)" in a.rule for a in order.lines["1"].allocations)
    more = place(b, 5, LocationChoice(restrict_to=["B", "C"], restricted_by="rule 'eu only' (rule_1)"), oid="o2")
    assert taken(more) == [("C", 3)] and more.lines["1"].backordered == 2  # A's 5 are not for it


def test_a_restriction_that_leaves_no_location_backorders_naming_the_rule() -> None:
    order = place(book(A, B), 1, LocationChoice(restrict_to=["GONE"], restricted_by="rule 'x' (rule_9)"))
    line = order.lines["1"]
    assert (line.backordered, taken(order)) == (1, [])
    assert line.backorder_reason is not None and line.backorder_reason.startswith(
        "no eligible location: rule 'x' (rule_9) restricts it to GONE")


def test_preferred_locations_rank_first_in_their_order() -> None:
    b = book(A, B, C)
    choice = LocationChoice(prefer=["C", "B"], preferred_by="rule 'ship from c' (rule_2)")
    order = place(b, 2, choice)
    assert taken(order) == [("C", 2)]
    assert [loc.location_id for loc, _ in b.candidates(order, b.policy_for("web"))] == ["C", "B", "A"]
    assert "preferred #1 by rule 'ship from c' (rule_2)" in order.lines["1"].allocations[0].rule


def test_per_order_location_priorities_replace_the_locations_own() -> None:
    b = book(A, B, C)
    order = place(b, 2, LocationChoice(priorities={"C": 10, "A": 0}, priorities_by="rule 'pos' (rule_3)"))
    assert [loc.location_id for loc, _ in b.candidates(order, b.policy_for("web"))] == ["C", "B", "A"]
    assert taken(order) == [("C", 2)]
    assert "priority 10" in order.lines["1"].allocations[0].rule
    assert "priority 10 set by rule 'pos' (rule_3)" in order.lines["1"].allocations[0].rule
