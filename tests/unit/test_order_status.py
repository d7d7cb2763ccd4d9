from libs.contracts.events import LineState
from services.order_intake.domain.orders import order_status


def line(**kw: int) -> LineState:
    return LineState(line_id="1", sku="S", **kw)  # type: ignore[arg-type]


def test_an_order_not_yet_allocated_is_pending() -> None:
    assert order_status([], known=False) == "pending"


def test_partly_backordered_order_is_partially_allocated() -> None:
    assert order_status([line(qty=25, allocated=22, backordered=3)], known=True) == "partially_allocated"


def test_fully_packed_order_is_packed() -> None:
    assert order_status([line(qty=25, packed=25), line(qty=3, packed=3)], known=True) == "packed"


def test_cancelled_rest_of_shipped_order_is_shipped() -> None:
    assert order_status([line(qty=10, shipped=6, cancelled=4)], known=True) == "shipped"


def test_line_on_hold_shows_on_the_order() -> None:
    held = LineState(line_id="1", sku="S", qty=10, backordered=10, on_hold=True)
    assert order_status([held], known=True) == "on_hold"
