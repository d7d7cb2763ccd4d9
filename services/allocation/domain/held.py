"""The one rule every allocating path obeys for an order staff hold (see ``order_holds.py``):
a held order's open lines go on hold instead of being allocated. Pure: no I/O."""

from __future__ import annotations

from services.allocation.domain.changes import ChangeRecord
from services.allocation.domain.model import Order, OrderLine

HELD_REASON = "on hold: the whole order is held by staff ({why}); nothing more is allocated until it is released"


def keep_held(order: Order, lines: list[OrderLine], changes: ChangeRecord) -> bool:
    """True when ``order`` is held: its ``lines`` with open backorders go on hold instead of
    being allocated (the guard at the top of ``_allocate_open``)."""
    if order.hold is None:
        return False
    for line in lines:
        if line.backordered and not line.on_hold:
            line.on_hold = True
            line.backorder_reason = HELD_REASON.format(why=order.hold)
            changes.line(line)
    return True
