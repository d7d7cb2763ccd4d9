"""A hold staff put on a whole order (``OrderHeld`` / ``OrderHoldReleased`` from order intake).

While an order is held:
- nothing more is allocated to it: every line with open units is on hold (one with an open
  backorder is out of the fair queue, which reads ``on_hold``), and lines that grow or are
  added while it is held go on hold too;
- what is already allocated stays reserved (so the hold does not give the order's stock to
  others), but it cannot be packed: a pack request is rejected ("order on hold");
- units packed before the hold reached allocation stay packed and may ship;
- cancelling it, or some of its lines, works as for any order.

Releasing puts every line back in the queue at its original place (lines held by hand with
``deallocate`` too: the order's release is the staff's word on the whole order) and fills
them in queue order. Pure: no I/O.
"""

from __future__ import annotations

from services.allocation.domain.aggregate import BookCore
from services.allocation.domain.held import keep_held


class OrderHolds(BookCore):
    """Hold and release a whole order."""

    def hold_order(self, order_id: str, reason: str) -> None:
        order = self.orders.get(order_id)
        if order is None:
            return  # unknown here (never announced, or a replay of a forgotten order): nothing to hold
        order.hold = reason or "held"
        self.changes.order(order)
        keep_held(order, list(order.lines.values()), self.changes)
        for line in order.lines.values():  # allocated lines too: the order reads "on_hold" everywhere
            if line.allocated and not line.on_hold:
                line.on_hold = True
                self.changes.line(line)
        allocated = sum(ln.allocated for ln in order.lines.values())
        self.changes.touch(order, "held", f"{reason}; {allocated} allocated unit(s) stay reserved and cannot be packed")
        self._emit()

    def release_order_hold(self, order_id: str) -> None:
        order = self.orders.get(order_id)
        if order is None:
            return
        order.hold = None
        self.changes.order(order)
        for line in order.lines.values():
            if line.on_hold:
                line.on_hold = False
                line.backorder_reason = "back in the queue at its original place" if line.backordered else None
                self.changes.line(line)
                if line.backordered:
                    self.queue.owe(line.sku)
        self.changes.touch(order, "hold released", "the order is back in the queue")
        self.run_pending_fills()
        self._emit()
