"""Commands that come with an order's own events: placed, pack requested, cancelled, modified."""

from __future__ import annotations

from services.allocation.domain.aggregate import BookCore
from services.allocation.domain.changes import OrderResult
from services.allocation.domain.dropship import is_dropship
from services.allocation.domain.model import Allocation, Order, OrderLine, StockPosition
from services.allocation.domain.queue import SliceTooSmall


class OrderCommands(BookCore):
    """OrderPlaced, PackRequested, OrderCancelled, OrderModified."""

    def place_order(self, order: Order) -> None:
        """OrderPlaced: allocate every line now; what cannot be allocated waits as backorder."""
        if order.order_id in self.orders:
            return  # already known: a replay under another event id changes nothing
        self._settle({ln.sku for ln in order.lines.values()})
        self._add_order(order)
        self.changes.order(order)
        for line in order.lines.values():
            line.backordered = line.qty
            self.changes.line(line)
        self.changes.touch(order, "placed")
        self._allocate_open(order, list(order.lines.values()))
        for line in order.lines.values():
            if line.backordered and line.backorder_reason is None:
                line.backorder_reason = self._why_waiting(order, line, None)
        self._emit()

    def request_pack(self, order_id: str, shipment_id: str, line_ids: list[str] | None) -> None:
        """PackRequested: the still-allocated units of those lines become packed, or the pack is refused."""
        order = self.orders.get(order_id)
        if order is None:
            self.changes.results.append(
                OrderResult(order_id, "PackRejected", "pack rejected", "unknown order", shipment_id, 0, [], []))
            return
        already = [a for a in order.live_allocations() if a.shipment_id == shipment_id]
        if already:  # the same pack request again: answer the same
            self.changes.touch(order, "packed", "already packed", kind="AllocationPacked", shipment_id=shipment_id)
            self._emit()
            return
        wanted = order.lines.keys() if line_ids is None else [lid for lid in line_ids if lid in order.lines]
        unknown = [] if line_ids is None else [lid for lid in line_ids if lid not in order.lines]
        allocs = [a for lid in wanted for a in order.lines[lid].allocations if a.status == "allocated"
                  and not is_dropship(self.locations.get(a.location_id))]  # a supplier ships those
        if allocs and self._refuse_pack_on_expired_lots(order, allocs, shipment_id):
            return
        reason = None
        if order.hold is not None:  # held by staff (order_holds.py)
            reason = f"order on hold: {order.hold}"
        elif not allocs:
            reason = "nothing allocated to pack" + (f" (unknown lines: {', '.join(unknown)})" if unknown else "")
        elif order.ship_complete and any(ln.backordered for ln in order.lines.values()):
            reason = "ship_complete order is not fully allocated"
        if reason:
            self._reject_pack(order, shipment_id, reason)
            return
        self._mark_packed(order, allocs, shipment_id)
        detail = ", ".join(f"{a.line_id}: {a.qty} {a.sku} from {a.location_id}/{a.bin}" for a in allocs)
        if unknown:
            detail += f" (unknown lines ignored: {', '.join(unknown)})"
        self.changes.touch(order, "packed", detail, kind="AllocationPacked", shipment_id=shipment_id)
        self._emit()

    def _refuse_pack_on_expired_lots(self, order: Order, allocs: list[Allocation], shipment_id: str) -> bool:
        """Packing re-checks expiry: a lot may have expired since its units were allocated (the
        expiry sweep releases them within its interval; a pack in between must not take them).
        Then the pack is refused, those units are released to backorder at their queue place and
        re-allocated from stock that has not expired; the packer packs again from the new pick
        list. True when refused."""
        if any(a.position_key not in self.positions for a in allocs):
            # the positions of every loaded order's allocations at once: at most one rerun for a
            # batch of pack requests (one per request could exceed the reruns a batch may take)
            raise SliceTooSmall(positions={a.position_key for o in self.orders.values() for a in o.live_allocations()
                                           if a.position_key not in self.positions})
        expired: list[tuple[Allocation, StockPosition]] = []
        for a in allocs:
            p = self.positions[a.position_key]
            if p.expired(self.now):
                if p.key not in self.position_allocations_loaded:
                    raise SliceTooSmall(positions={p.key})
                expired.append((a, p))
        if not expired:
            return False
        lots = []
        for a, p in sorted(expired, key=lambda ap: ap[0].recency()):
            expiry = p.expires_at.date().isoformat() if p.expires_at else "?"
            lot = p.lot or "(none)"
            self._release_to_backorder(
                a, reason=f"lot {lot} at {p.location_id} expired on {expiry}: waiting to be re-allocated",
                change="lot expired", what=f"released, lot {lot} at {p.location_id}/{p.bin} expired on {expiry}")
            self.changes.availability.add(p.sku)
            lots.append(f"lot {lot} at {p.location_id}/{p.bin} expired on {expiry}")
        self._release_ship_complete_partial(order)
        self.run_pending_fills()
        self.changes.touch(order, "pack rejected", "; ".join(dict.fromkeys(lots)) + ": re-allocated, pack again",
                           kind="PackRejected", shipment_id=shipment_id)
        self._emit()
        return True

    def cancel(self, order_id: str, line_ids: list[str] | None, reason: str = "") -> None:
        """OrderCancelled: backorders are cancelled first, then unpacked allocations released."""
        order = self.orders.get(order_id)
        if order is None:
            return
        lines = list(order.lines.values()) if line_ids is None else [order.lines[i] for i in line_ids if i in order.lines]
        details = []
        for line in lines:
            cancelled = self._cancel_open(line, None)
            if cancelled:
                details.append(f"{line.line_id}: {cancelled} cancelled")
        if not details:
            details.append("nothing open to cancel")
        if order.ship_complete:
            for ln in order.lines.values():
                if ln.in_queue:
                    self.queue.owe(ln.sku)  # the rest may now complete
        self.changes.touch(order, "cancelled", "; ".join(details) + (f" ({reason})" if reason else ""),
                           kind="AllocationCancelled")
        self._emit()

    def _cancel_open(self, line: OrderLine, limit: int | None) -> int:
        """Cancel up to ``limit`` open units of a line: backorder first, then newest allocations."""
        left = line.backordered + line.allocated if limit is None else limit
        take = min(left, line.backordered)
        line.backordered -= take
        total = take + self._release_newest(line, left - take)
        line.cancelled += total
        if line.backordered == 0:
            line.backorder_reason = None
            line.on_hold = False  # nothing left waiting: a hold has nothing to hold back
        self.changes.line(line)
        return total

    def _reduce(self, line: OrderLine, by: int) -> int:
        """Lower a line's ordered quantity: backorder first, then newest allocations, then cancelled."""
        take = min(by, line.backordered)
        line.backordered -= take
        left = by - take
        left -= self._release_newest(line, left)
        take = min(left, line.cancelled)
        line.cancelled -= take
        left -= take
        line.qty -= by - left
        if line.backordered == 0:
            line.backorder_reason = None
        self.changes.line(line)
        return by - left

    def modify(self, order_id: str, changes: list[tuple[str, str, int]], priority: int | None = None) -> None:
        """OrderModified: quantities down release, up or new lines allocate; priority moves the queue place."""
        order = self.orders.get(order_id)
        if order is None:
            return
        touch = self.changes.touch
        touch(order, "modified")
        if priority is not None and priority != order.priority:
            order.priority = priority
            self.changes.order(order)
            for ln in order.lines.values():
                self.changes.line(ln)
                if ln.in_queue:
                    self.queue.owe(ln.sku)
            touch(order, "modified", f"priority -> {priority}")
        grow: list[OrderLine] = []
        for line_id, sku, qty in changes:
            line = order.lines.get(line_id)
            if line is None:
                if qty <= 0:
                    continue
                self._require_skus([sku])
                line = OrderLine(order, line_id, sku, qty, backordered=qty)
                order.lines[line_id] = line
                self.lines_by_sku.setdefault(sku, []).append(line)
                self.changes.line(line)
                grow.append(line)
                touch(order, "modified", f"{line_id}: new line of {qty} {sku}")
            elif qty == 0:
                n = self._cancel_open(line, None)
                touch(order, "modified", f"{line_id}: {n} cancelled")
            elif qty > line.qty:
                diff = qty - line.qty
                line.qty = qty
                line.backordered += diff
                self.changes.line(line)
                grow.append(line)
                touch(order, "modified", f"{line_id}: +{diff}")
            elif qty < line.qty:
                n = self._reduce(line, line.qty - qty)
                touch(order, "modified", f"{line_id}: -{n}")
        if grow:
            self._allocate_open(order, grow)
            for line in grow:
                if line.backordered and line.backorder_reason is None:
                    line.backorder_reason = self._why_waiting(order, line, None)
        self._emit()

    def _release_newest(self, line: OrderLine, up_to: int) -> int:
        """Give back up to ``up_to`` allocated (never packed) units of a line to stock, newest
        allocation first; the line no longer wants them (cancelled or ordered less)."""
        left = up_to
        for a in sorted((a for a in line.allocations if a.status == "allocated"), key=Allocation.recency, reverse=True):
            if left <= 0:
                break
            left -= self._release(a, left)
        return up_to - left
