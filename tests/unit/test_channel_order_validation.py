"""What a connector author sees when an order is wrong: every problem, each naming its field."""

from __future__ import annotations

from libs.contracts.orders import validate_channel_order

GOOD = {
    "channel": "shopify-eu",
    "external_id": "1001",
    "placed_at": "2026-11-22T10:00:00Z",
    "currency": "EUR",
    "ship_to": {"country": "DE", "postal_code": "10115"},
    "lines": [{"line_id": "1", "sku": "BRASS-SCREW", "qty": 25, "unit_price": "0.10"}],
}


def test_a_complete_order_is_accepted() -> None:
    order, problems = validate_channel_order(GOOD)
    assert problems == []
    assert order is not None and order.key == "shopify-eu:1001"


def test_every_problem_is_listed_with_its_field() -> None:
    bad = {
        **GOOD,
        "currency": "EUX",
        "ship_to": {"country": "XX"},
        "lines": [
            {"line_id": "1", "sku": "A", "qty": 0, "unit_price": "1"},
            {"line_id": "2", "sku": "B", "qty": -3, "unit_price": "1"},
            {"line_id": "3", "sku": "C", "qty": "two", "unit_price": "1"},
        ],
    }
    del bad["external_id"]
    order, problems = validate_channel_order(bad)
    assert order is None
    fields = {p.field for p in problems}
    assert {"external_id", "currency", "ship_to.country", "lines.0.qty", "lines.1.qty", "lines.2.qty"} <= fields
    assert any("EUX" in p.problem for p in problems if p.field == "currency")


def test_a_line_quantity_given_as_text_is_refused_not_coerced() -> None:
    _, problems = validate_channel_order({**GOOD, "lines": [{**GOOD["lines"][0], "qty": "25"}]})
    assert [p.field for p in problems] == ["lines.0.qty"]


def test_duplicate_line_ids_are_refused() -> None:
    line = GOOD["lines"][0]
    _, problems = validate_channel_order({**GOOD, "lines": [line, line]})
    assert problems and problems[0].field == "lines"


def test_a_time_without_zone_is_refused() -> None:
    _, problems = validate_channel_order({**GOOD, "placed_at": "2026-11-22T10:00:00"})
    assert [p.field for p in problems] == ["placed_at"]


def test_a_body_that_is_not_an_object_is_refused() -> None:
    _, problems = validate_channel_order(["not", "an", "order"])
    assert problems[0].field == "(body)"
