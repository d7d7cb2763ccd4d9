"""The order a consumed batch is applied in: new orders in fair-queue order, each order's own
events in the order they came, never across a stock, location or pack event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from libs.contracts import new_envelope
from libs.contracts.envelope import Envelope, EventMessage
from libs.contracts.events import Event, OrderCancelled, OrderLine, OrderPlaced, StockAdjusted
from libs.contracts.orders import Address, Customer
from services.allocation.service_layer.allocating import in_queue_order

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def placed(order_id: str, minutes: int, priority: int = 0) -> tuple[Envelope, Event]:
    ev = OrderPlaced(order_id=order_id, channel="web", external_id=order_id, placed_at=T0 + timedelta(minutes=minutes),
                     currency="EUR", customer=Customer(), ship_to=Address(country="DE"), priority=priority,
                     lines=[OrderLine(line_id="1", sku="A", qty=1, unit_price=1)])
    return EventMessage(new_envelope(ev, source="test", correlation_id=order_id), ev)


def cancelled(order_id: str) -> tuple[Envelope, Event]:
    ev = OrderCancelled(order_id=order_id)
    return EventMessage(new_envelope(ev, source="test", correlation_id=order_id), ev)


def received() -> tuple[Envelope, Event]:
    ev = StockAdjusted(sku="A", location_id="W", bin="B", delta=1, on_hand=1, seq=1, reason="receipt")
    return EventMessage(new_envelope(ev, source="test", correlation_id="x"), ev)


def names(batch: list[tuple[Envelope, Event]]) -> list[str]:
    return [f"{type(ev).__name__[5:]}:{getattr(ev, 'order_id', None)}" for _, ev in batch]


def test_new_orders_go_first_in_queue_order_and_changes_keep_their_order() -> None:
    batch = [placed("c", 3), cancelled("x"), placed("a", 1), cancelled("c"), placed("b", 9, priority=1)]
    assert names(in_queue_order(batch)) == ["Placed:b", "Placed:a", "Placed:c", "Cancelled:x", "Cancelled:c"]


def test_a_stock_event_is_a_barrier_nothing_moves_across() -> None:
    batch = [placed("late", 9), received(), placed("early", 1)]
    assert names(in_queue_order(batch)) == ["Placed:late", "Adjusted:None", "Placed:early"]
