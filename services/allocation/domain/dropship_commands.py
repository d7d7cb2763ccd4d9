"""Commands of dropship requests (see ``dropship``):

- ``DropshipCommands.pack_for_supplier``: fulfillment's dropship request locks the units the
  supplier is asked to ship (they become packed under the request's id, so no reallocation
  moves them while the supplier works on them);
- ``release_refused``: the supplier refused; the units go back to the line's backorder at its
  queue place and are allocated again (inventory lowers the stated stock by the same units in
  the same StockAdjusted, so the supplier is not asked for them again).
"""

from __future__ import annotations

from services.allocation.domain.aggregate import BookCore
from services.allocation.domain.changes import OrderResult
from services.allocation.domain.dropship import is_dropship


class DropshipCommands(BookCore):
    """PackRequested of a dropship request (``location_id`` set)."""

    def pack_for_supplier(self, order_id: str, shipment_id: str, line_ids: list[str] | None, location_id: str) -> None:
        """Lock the lines' allocated units at the dropship location under the request's id
        (packed: the supplier has them now), or refuse (PackRejected) when there are none."""
        order = self.orders.get(order_id)
        if order is None:
            self.changes.results.append(
                OrderResult(order_id, "PackRejected", "pack rejected", "unknown order", shipment_id, 0, [], []))
            return
        if any(a.shipment_id == shipment_id for a in order.live_allocations()):  # the same request again
            self.changes.touch(order, "dropship requested", "already requested", kind="AllocationPacked",
                               shipment_id=shipment_id)
            self._emit()
            return
        wanted = order.lines.keys() if line_ids is None else [lid for lid in line_ids if lid in order.lines]
        allocs = [a for lid in wanted for a in order.lines[lid].allocations
                  if a.status == "allocated" and a.location_id == location_id]
        reason = None
        if not is_dropship(self.locations.get(location_id)):
            reason = f"{location_id} is not a dropship location"
        elif not allocs:
            reason = f"nothing allocated at dropship location {location_id}"
        if reason:
            self._reject_pack(order, shipment_id, reason)
            return
        self._mark_packed(order, allocs, shipment_id)
        detail = ", ".join(f"{a.line_id}: {a.qty} {a.sku}" for a in allocs)
        self.changes.touch(order, "dropship requested", f"from supplier {location_id}: {detail}",
                           kind="AllocationPacked", shipment_id=shipment_id)
        self._emit()


def release_refused(book: BookCore, allocation_id: int, qty: int, order_id: str | None) -> None:
    """A supplier refused ``qty`` units of a requested (packed) allocation: they go back to the
    line's backorder at its queue place; the queue allocates them again (another location, or
    what the supplier still states it has)."""
    a = book.allocations_by_id.get(allocation_id)
    if a is None:
        book._require_order(order_id)
        return
    if a.status != "packed" or not is_dropship(book.locations.get(a.location_id)):
        return  # already shipped, or released meanwhile: the stock mirror alone changes
    a.status = "allocated"  # the supplier has given them back: releasable like any allocation
    a.shipment_id = None
    book._release_to_backorder(
        a, qty, change="dropship refused", what=f"refused by dropship supplier {a.location_id}",
        reason=f"refused by dropship supplier {a.location_id}: waiting to be allocated again")
    book._release_ship_complete_partial(book.orders[a.order_id])
