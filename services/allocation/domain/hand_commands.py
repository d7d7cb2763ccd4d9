"""Commands staff give by hand (SPEC 3.2 "Manual"): deallocate lines onto hold, release the
hold, move units between orders, re-allocate an order to a preferred location."""

from __future__ import annotations

from services.allocation.domain.aggregate import BookCore, CommandRefused, Problem, UnknownOrder
from services.allocation.domain.model import Allocation, Order, OrderLine


class HandCommands(BookCore):
    """Deallocate, release hold, transfer, reallocate: refused whole (``CommandRefused``) when wrong."""

    def _order_or_404(self, order_id: str) -> Order:
        order = self.orders.get(order_id)
        if order is None:
            raise UnknownOrder(order_id)
        return order

    def deallocate(self, order_id: str, line_ids: list[str]) -> None:
        """Remove the lines' unpacked allocations by hand: the units become backorder on hold."""
        order = self._order_or_404(order_id)
        problems = [Problem(f"line_ids.{i}", f"unknown line {lid!r}") for i, lid in enumerate(line_ids) if lid not in order.lines]
        if not line_ids:
            problems.append(Problem("line_ids", "name at least one line"))
        if problems:
            raise CommandRefused(problems)
        for lid in dict.fromkeys(line_ids):
            line = order.lines[lid]
            released = sum(self._release_to_backorder(a) for a in line.allocations if a.status == "allocated")
            line.on_hold = True
            line.backorder_reason = self._why_waiting(order, line, None) if line.backordered else None
            self.changes.line(line)
            t = self.changes.touch(order, "deallocated", f"{lid}: {released} released, line on hold")
            t.released = t.released or released > 0
        self._release_ship_complete_partial(order)
        self._emit()

    def release_hold(self, order_id: str, line_ids: list[str] | None) -> None:
        """Put held lines back in the queue at their original place and fill."""
        order = self._order_or_404(order_id)
        ids = list(order.lines) if line_ids is None else line_ids
        problems = [Problem(f"line_ids.{i}", f"unknown line {lid!r}") for i, lid in enumerate(ids) if lid not in order.lines]
        if problems:
            raise CommandRefused(problems)
        held = [order.lines[lid] for lid in dict.fromkeys(ids) if order.lines[lid].on_hold]
        for line in held:
            line.on_hold = False
            line.backorder_reason = "back in the queue at its original place" if line.backordered else None
            self.changes.line(line)
            if line.backordered:
                self.queue.owe(line.sku)
        self.changes.touch(order, "hold released", ", ".join(ln.line_id for ln in held) or "no line was on hold")
        self.run_pending_fills()
        self._emit()

    def transfer(self, from_order_id: str, to_order_id: str, sku: str, qty: int, location_id: str | None = None) -> None:
        """Move allocated units of ``sku`` from one order to another's backorder, by hand.

        The units go straight to the other order; the source line waits at its own queue place
        (a move is not a hold), and the fill the release owes runs after the move."""
        src = self._order_or_404(from_order_id)
        dst = self._order_or_404(to_order_id)
        movable = sorted(
            (a for ln in src.lines.values() if ln.sku == sku for a in ln.allocations
             if a.status == "allocated" and (location_id is None or a.location_id == location_id)),
            key=Allocation.recency, reverse=True,
        )
        targets = [ln for ln in dst.lines.values() if ln.sku == sku and ln.backordered > 0]
        problems = self._transfer_problems(src, dst, sku, qty, location_id, movable, targets)
        if problems:
            raise CommandRefused(problems)
        left = qty
        for a in movable:
            if left == 0:
                break
            t = min(left, a.qty)
            p = self.positions[a.position_key]
            self._release_to_backorder(a, t, reason=f"{t} moved by hand to order {to_order_id}", change="moved out",
                                       what=f"{sku} moved to {to_order_id}")
            while t > 0:
                dst_line = next(ln for ln in targets if ln.backordered > 0)
                n = min(t, dst_line.backordered)
                self._new_allocation(dst_line, p, n, f"{p.location_id}: moved by hand from order {from_order_id};"
                                     f" lot {p.lot or '(none)'} bin {p.bin}", manual=True)
                dst_line.backordered -= n
                if dst_line.backordered == 0:
                    dst_line.backorder_reason = None
                self.changes.line(dst_line)
                self.changes.touch(dst, "moved in", f"{dst_line.line_id}: {n} {sku} moved from {from_order_id}").allocated = True
                t -= n
                left -= n
        self._release_ship_complete_partial(src)
        self.run_pending_fills()
        self._emit()

    @staticmethod
    def _transfer_problems(src: Order, dst: Order, sku: str, qty: int, location_id: str | None,
                           movable: list[Allocation], targets: list[OrderLine]) -> list[Problem]:
        problems: list[Problem] = []
        if src.order_id == dst.order_id:
            problems.append(Problem("to_order_id", "must differ from from_order_id"))
        if qty <= 0:
            problems.append(Problem("qty", "must be > 0"))
        have = sum(a.qty for a in movable)
        if have < qty:
            where = f" at {location_id}" if location_id else ""
            problems.append(Problem("qty", f"order {src.order_id} has only {have} unpacked {sku} allocated{where}"))
        want = sum(ln.backordered for ln in targets)
        if want < qty:
            problems.append(Problem("qty", f"order {dst.order_id} has only {want} {sku} backordered"))
        elif dst.ship_complete and sum(ln.backordered for ln in dst.lines.values()) != qty:
            problems.append(Problem("to_order_id", f"order {dst.order_id} is ship_complete: a transfer must cover"
                                                   " all of its backorder at once"))
        return problems

    def reallocate(self, order_id: str, location_id: str) -> None:
        """Release the order's unpacked allocations and allocate again preferring ``location_id``.

        The order gets first go at the stock it lets go of: it plans before the fills its release
        owes the queue run, and its new allocations are choices made by hand."""
        order = self._order_or_404(order_id)
        loc = self.locations.get(location_id)
        problems = []
        if loc is None:
            problems.append(Problem("location_id", f"unknown location {location_id!r}"))
        elif not loc.active:
            problems.append(Problem("location_id", f"location {location_id} is inactive"))
        elif location_id not in {c.location_id for c, _ in self.candidates(order, self.policy_for(order.channel))}:
            problems.append(Problem("location_id", f"location {location_id} is not eligible for this order "
                                                   "(channel, ship-to country or pickup)"))
        if problems:
            raise CommandRefused(problems)
        for line in order.lines.values():
            for a in line.allocations:
                if a.status == "allocated":
                    self._release_to_backorder(a)
        self.changes.touch(order, "reallocated", f"preferring {location_id}", kind="OrderReallocated")
        self._allocate_open(order, [ln for ln in order.lines.values() if ln.in_queue], prefer=location_id,
                            manual=True, settle=False)
        for line in order.lines.values():
            if line.in_queue and line.backorder_reason is None:
                line.backorder_reason = self._why_waiting(order, line, None)
        self.run_pending_fills()
        self._emit()
