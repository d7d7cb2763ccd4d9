"""Channel rules: which orders a rule matches, what it does, in the documented order, and
which rules are refused before they are stored."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from libs.contracts.orders import ChannelOrder, validate_channel_order
from services.order_intake.domain.rules import Rule, RuleIn, evaluate, matches


def order(**changes: Any) -> ChannelOrder:
    base: dict[str, Any] = {
        "channel": "web", "external_id": "1", "placed_at": "2026-11-23T10:00:00Z", "currency": "EUR",
        "customer": {"tags": ["vip"]}, "ship_to": {"country": "DE"},
        "lines": [{"line_id": "1", "sku": "A", "qty": 2, "unit_price": "50.00"},
                  {"line_id": "2", "sku": "B", "qty": 1, "unit_price": "25.00"}],  # total 125.00
    }
    parsed, problems = validate_channel_order(base | changes)
    assert parsed is not None, problems
    return parsed


def rule(rule_id: str, **spec: Any) -> Rule:
    return Rule(rule_id, RuleIn.model_validate({"name": rule_id, **spec}))


@pytest.mark.parametrize(("conditions", "matched"), [
    ({}, True),
    ({"channels": ["web", "pos"]}, True),
    ({"channels": ["pos"]}, False),
    ({"countries": ["de"]}, True),
    ({"countries": ["FR"]}, False),
    ({"currency": "EUR", "total_at_least": "125.00"}, True),
    ({"currency": "EUR", "total_at_least": "125.01"}, False),
    ({"currency": "EUR", "total_below": "125.00"}, False),
    ({"currency": "USD", "total_at_least": "1"}, False),  # another currency's orders are not compared
    ({"skus": ["B", "Z"]}, True),
    ({"skus": ["Z"]}, False),
    ({"customer_tags": ["wholesale", "vip"]}, True),
    ({"customer_tags": ["wholesale"]}, False),
    ({"channels": ["web"], "countries": ["DE"], "skus": ["Z"]}, False),  # every condition must hold
])
def test_a_rule_matches_when_every_condition_it_sets_holds(conditions: dict[str, Any], matched: bool) -> None:
    spec = RuleIn.model_validate({"name": "r", "conditions": conditions, "actions": {"hold": True}})
    assert matches(spec.conditions, order()) is matched


def test_rules_apply_in_position_order_the_first_priority_wins_and_stop_ends_evaluation() -> None:
    rules = [
        rule("late", position=30, actions={"priority": 1, "tags": ["late"]}),
        rule("vip", position=10, conditions={"customer_tags": ["vip"]}, actions={"priority": 50, "tags": ["vip"]}),
        rule("big", position=20, conditions={"currency": "EUR", "total_at_least": "100"},
             actions={"hold": True, "ship_complete": True, "tags": ["vip", "review"]}, stop=True),
        rule("never", position=40, actions={"priority": -5}),
        rule("off", position=0, enabled=False, actions={"priority": 999}),
    ]
    decision = evaluate(rules, order())
    assert decision.priority == 50 and decision.hold and decision.ship_complete
    assert decision.tags == ["vip", "review"]
    assert [(e.name, e.did) for e in decision.effects] == [
        ("vip", ["priority 0 -> 50", "tagged vip"]),
        ("big", ["held for review", "ship complete", "tagged review"]),
    ]  # "late" and "never" come after a stop; "off" is disabled


def test_an_order_no_rule_matches_gets_no_decision() -> None:
    decision = evaluate([rule("fr", conditions={"countries": ["FR"]}, actions={"hold": True})], order())
    assert not decision.changes_anything and not decision.hold and decision.priority is None


@pytest.mark.parametrize(("spec", "field"), [
    ({"conditions": {"weight_above": 3}, "actions": {"hold": True}}, "conditions.weight_above"),  # unknown operator
    ({"conditions": {"countries": ["XX"]}, "actions": {"hold": True}}, "conditions.countries"),
    ({"conditions": {"total_at_least": "10"}, "actions": {"hold": True}}, "conditions"),  # no currency
    ({"conditions": {"currency": "XYZ"}, "actions": {"hold": True}}, "conditions.currency"),
    ({"actions": {}}, "actions"),  # does nothing
    ({"actions": {"priority": 5000}}, "actions.priority"),
    ({"actions": {"restrict_locations": []}}, "actions.restrict_locations"),  # would allow nowhere
    ({"actions": {"location_priorities": {"WH-1": "high"}}}, "actions.location_priorities.WH-1"),
])
def test_a_rule_that_cannot_work_is_refused_naming_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        RuleIn.model_validate({"name": "bad", **spec})
    assert any(".".join(str(p) for p in e["loc"]).startswith(field) for e in exc.value.errors()), exc.value.errors()
