"""Returns: never more than shipped minus already returned; refund is unit price times quantity."""

from decimal import Decimal

import pytest

from services.fulfillment.domain.returns import ReturnableLine, ReturnRefused, ReturnRequestLine, check_return

LINES = {"L1": ReturnableLine("L1", "SCREW", Decimal("1.2500"), shipped=10, returned=3, shipped_from=frozenset({"WH1"}))}


def ret(qty: int, *, line_id: str = "L1", condition: str = "sellable") -> ReturnRequestLine:
    return ReturnRequestLine(line_id, qty, condition, "WH1", "R-1")


def test_refund_is_unit_price_times_quantity():
    [line] = check_return([ret(4)], LINES)
    assert line.refund == Decimal("5.0000") and line.sku == "SCREW"


def test_cannot_return_more_than_shipped_minus_returned():
    with pytest.raises(ReturnRefused) as exc:
        check_return([ret(8)], LINES)
    [problem] = exc.value.problems
    assert problem.field == "lines.0.qty" and "at most 7" in problem.problem


def test_a_line_named_twice_counts_both_against_the_limit():
    with pytest.raises(ReturnRefused) as exc:
        check_return([ret(4), ret(4, condition="damaged")], LINES)
    assert [p.field for p in exc.value.problems] == ["lines.1.qty"]


def test_every_problem_is_listed():
    with pytest.raises(ReturnRefused) as exc:
        check_return([ret(1, line_id="NOPE"), ret(1, condition="lost")], LINES)
    assert [p.field for p in exc.value.problems] == ["lines.0.line_id", "lines.1.condition"]


def test_units_go_back_to_a_location_the_line_shipped_from():
    elsewhere = ReturnRequestLine("L1", 1, "sellable", "NOWHERE", "R-1")
    with pytest.raises(ReturnRefused) as exc:
        check_return([ret(1), elsewhere], LINES)
    [problem] = exc.value.problems
    assert problem.field == "lines.1.location_id"
    assert "shipped from WH1" in problem.problem and "'NOWHERE'" in problem.problem
