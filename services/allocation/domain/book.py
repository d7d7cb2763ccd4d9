"""The allocation book: the orders and stock of a transaction's slice, and every command on them.

A transaction loads a slice (the SKUs it touches, their positions, the open queue of SKUs whose
availability can rise, the orders involved), builds an ``AllocationBook`` from it, applies the
batch's commands in order and writes back what changed. No I/O happens here: when a command
needs something outside the slice, the book raises ``SliceTooSmall`` naming it, and the caller
loads more and replays the batch on a fresh book.

The book keeps the order/line aggregate and its commands; it leans on four parts, each readable
alone:
- ``planner.LocationPlanner``: eligible locations, ranking, fewest-splits, lot picks (decides only);
- ``queue.FairQueue``: the queue order and the SKUs owed a fill;
- ``availability``: available-to-promise, the formula the feed and the stock report share;
- ``changes.ChangeRecord``: the rows changed for the writer and the results to publish.

Fairness rule: every change that can raise a SKU's availability (stock in, release, hold
released, location (re)activated, policy change) owes the SKU a fill (``FairQueue.owe``); the
fill runs before anything else may take stock of that SKU, and at the end of the batch. So stock
a newer order can see is stock no older eligible backorder can take.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from services.allocation.domain.availability import available_to_promise, free_by_location, usable
from services.allocation.domain.changes import ChangeRecord, OrderResult
from services.allocation.domain.model import (
    Allocation,
    Location,
    Order,
    OrderLine,
    PositionKey,
    StockPosition,
)
from services.allocation.domain.planner import LocationPlanner, Plan, Ranked, pick_lots
from services.allocation.domain.policy import DEFAULT_CHANNEL, Policy
from services.allocation.domain.queue import FairQueue, QueueSlice, SliceTooSmall

__all__ = [
    "AllocationBook", "CommandRefused", "OrderResult", "PositionKey", "Problem", "QueueSlice", "SliceTooSmall",
    "UnknownOrder",
]


@dataclass(frozen=True)
class Problem:
    field: str
    problem: str


class CommandRefused(ValueError):
    """A manual command that would be wrong as a whole: nothing was changed."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.problem}" for p in problems))
        self.problems = problems


class UnknownOrder(LookupError):
    pass


class AllocationBook:
    """An in-memory slice of SKUs and orders with every allocation command; records what changed."""

    def __init__(
        self,
        *,
        locations: Iterable[Location],
        policies: Iterable[Policy],
        positions: Iterable[StockPosition],
        orders: Iterable[Order],
        skus: Iterable[str],
        queues: dict[str, QueueSlice] | None = None,
        position_allocations_loaded: Iterable[PositionKey] = (),
        location_allocations_loaded: Iterable[str] = (),
        now: datetime,
    ) -> None:
        self.locations: dict[str, Location] = {loc.location_id: loc for loc in locations}
        self.policies: dict[str, Policy] = {p.channel: p for p in policies}
        self.skus: set[str] = set(skus)
        self.positions: dict[PositionKey, StockPosition] = {}
        self.positions_by_sku: dict[str, list[StockPosition]] = {s: [] for s in self.skus}
        for p in positions:
            self._add_position(p)
        self.orders: dict[str, Order] = {}
        self.lines_by_sku: dict[str, list[OrderLine]] = {}
        self.allocations_by_id: dict[int, Allocation] = {}
        self.allocations_by_position: dict[PositionKey, list[Allocation]] = {}
        for o in orders:
            self._add_order(o)
        self.position_allocations_loaded = set(position_allocations_loaded)
        self.location_allocations_loaded = set(location_allocations_loaded)
        self.now = now
        self.planner = LocationPlanner(self.locations)
        self.queue = FairQueue(dict(queues or {}))
        self.changes = ChangeRecord()
        # Changes to orders not placed yet (their OrderPlaced is still on its way): the caller
        # keeps them and applies them right after the order is placed. (order_id, the change)
        self.waiting_for_order: list[tuple[str, object]] = []
        self.stale_stock_events = 0
        self._local_seq = 0
        self._builtin_policy = Policy()

    @property
    def results(self) -> list[OrderResult]:
        return self.changes.results

    @property
    def changed_positions(self) -> set[PositionKey]:
        return self.changes.positions

    # ----------------------------------------------------------------- the slice
    def _add_position(self, p: StockPosition) -> None:
        self.positions[p.key] = p
        self.positions_by_sku.setdefault(p.sku, []).append(p)

    def _add_order(self, o: Order) -> None:
        self.orders[o.order_id] = o
        for line in o.lines.values():
            self.lines_by_sku.setdefault(line.sku, []).append(line)
            for a in line.allocations:
                if a.allocation_id is not None:
                    self.allocations_by_id[a.allocation_id] = a
                if a.live:
                    self.allocations_by_position.setdefault(a.position_key, []).append(a)

    def policy_for(self, channel: str) -> Policy:
        # The built-in default is one object per book: candidates are cached by policy identity.
        return self.policies.get(channel) or self.policies.get(DEFAULT_CHANNEL) or self._builtin_policy

    def _require_skus(self, skus: Iterable[str]) -> None:
        missing = {s for s in skus if s not in self.skus}
        if missing:
            raise SliceTooSmall(skus=missing, queues=missing)

    def _sku_positions(self, sku: str) -> list[StockPosition]:
        if sku not in self.skus:
            raise SliceTooSmall(skus={sku}, queues={sku})
        return self.positions_by_sku.get(sku, [])

    def _order_or_404(self, order_id: str) -> Order:
        order = self.orders.get(order_id)
        if order is None:
            raise UnknownOrder(order_id)
        return order

    def _emit(self) -> None:
        self.changes.emit(self.orders)

    # ----------------------------------------------------------------- available-to-promise
    def _usable(self, p: StockPosition) -> bool:
        return usable(p, self.locations, self.now)

    def _free_by_location(self, sku: str) -> dict[str, int]:
        return free_by_location(self._sku_positions(sku), self.locations, self.now)

    def available_at(self, sku: str, location_id: str, policy: Policy) -> int:
        """Units of ``sku`` a channel under ``policy`` may take at a location now."""
        return available_to_promise(self._free_by_location(sku).get(location_id, 0), policy, sku, location_id)

    def _fillable_anywhere(self, sku: str) -> int:
        """Units some channel could still take (per location, the largest of the channels' shares)."""
        policies = list(self.policies.values()) or [Policy()]
        return sum(
            max(available_to_promise(free, pol, sku, loc) for pol in policies)
            for loc, free in self._free_by_location(sku).items()
        )

    def _on_hand_anywhere(self, sku: str) -> int:
        return sum(p.on_hand for p in self._sku_positions(sku) if self._usable(p))

    # ----------------------------------------------------------------- planning and taking stock
    def candidates(self, order: Order, policy: Policy, prefer: str | None = None) -> Ranked:
        """Eligible locations, best first, each with why it ranks there."""
        return self.planner.candidates(order, policy, prefer)

    def _plan(self, order: Order, needs: dict[OrderLine, int], prefer: str | None = None, *,
              settled: bool = True) -> Plan:
        skus = {line.sku for line in needs}
        self._require_skus(skus)
        assert not settled or not (skus & self.queue.owed), "settle owed fills before planning"
        return self.planner.plan(order, needs, self.policy_for(order.channel), self._free_by_location, prefer)

    def _apply_plan(self, order: Order, plan: Plan, *, manual: bool = False) -> int:
        """Take the planned units off the lines' backorders, lot by lot (``pick_lots``)."""
        total = 0
        for line, loc, qty, why in plan.pieces:
            lid = loc.location_id
            here = [p for p in self.positions_by_sku[line.sku] if p.location_id == lid and p.free > 0 and self._usable(p)]
            taken = 0
            for p, t, lot_rule in pick_lots(here, qty):
                rule = f"{lid}: {why}; lot {p.lot or '(none)'} bin {p.bin}: {lot_rule}"
                self._new_allocation(line, p, t, rule, manual=manual)
                taken += t
            line.backordered -= taken
            total += taken
            self.changes.line(line)
        if total:
            self.changes.touch(order, "allocated").allocated = True
        return total

    def _new_allocation(self, line: OrderLine, p: StockPosition, qty: int, rule: str, *, manual: bool = False) -> Allocation:
        """``manual``: a choice made by hand (a move or a re-allocation), exempt from the queue order."""
        self._local_seq += 1
        a = Allocation(
            allocation_id=None, order_id=line.order_id, line_id=line.line_id, sku=line.sku,
            location_id=p.location_id, bin=p.bin, lot=p.lot, qty=qty, status="allocated", rule=rule,
            created_at=self.now, local_seq=self._local_seq, manual=manual,
        )
        line.allocations.append(a)
        self.allocations_by_position.setdefault(p.key, []).append(a)
        p.reserved += qty
        self.changes.position(p)
        self.changes.allocation(a)
        return a

    def _allocate_open(self, order: Order, lines: list[OrderLine], *, prefer: str | None = None,
                       manual: bool = False, settle: bool = True) -> None:
        """Allocate what the lines have backordered, honouring ship_complete (all or nothing).
        Owed fills of their SKUs run first, unless ``settle`` is False (see ``reallocate``)."""
        if settle:
            self._settle({ln.sku for ln in (order.lines.values() if order.ship_complete else lines)})
        if order.ship_complete:
            if not self._try_complete(order, prefer=prefer, manual=manual, settle=settle):
                self._release_ship_complete_partial(order)
            return
        needs = {ln: ln.backordered for ln in lines if ln.in_queue}
        if not needs:
            return
        plan = self._plan(order, needs, prefer, settled=settle)
        self._apply_plan(order, plan, manual=manual)
        for line in needs:
            if line.backordered:
                reason = self._why_waiting(order, line, plan)
                if reason != line.backorder_reason:
                    line.backorder_reason = reason
                    self.changes.line(line)
            elif line.backorder_reason is not None:
                line.backorder_reason = None
                self.changes.line(line)

    def _try_complete(self, order: Order, *, prefer: str | None = None, manual: bool = False,
                      settle: bool = True) -> bool:
        """A ship_complete order gets everything it still needs, or nothing."""
        if settle:
            self._settle({ln.sku for ln in order.lines.values()})
        open_lines = [ln for ln in order.lines.values() if ln.backordered > 0]
        if not open_lines:
            return True
        if any(ln.on_hold for ln in open_lines):
            return False
        plan = self._plan(order, {ln: ln.backordered for ln in open_lines}, prefer, settled=settle)
        if plan.remaining:
            for ln in open_lines:
                reason = self._why_waiting(order, ln, plan, ship_complete_wait=bool(plan.candidates))
                if reason != ln.backorder_reason:
                    ln.backorder_reason = reason
                    self.changes.line(ln)
            return False
        self._apply_plan(order, plan, manual=manual)
        for ln in open_lines:
            ln.backorder_reason = None
            self.changes.line(ln)
        return True

    def _why_waiting(self, order: Order, line: OrderLine, plan: Plan | None, *, ship_complete_wait: bool = False) -> str:
        if line.on_hold:
            return "on hold: deallocated by hand; release the hold to queue it again"
        if plan is not None and not plan.candidates:
            if order.pickup_location_id:
                return f"no eligible location: pickup location {order.pickup_location_id} is unknown, inactive or not for this channel"
            return f"no eligible location: none active ships to {order.country or '?'} for channel {order.channel}"
        if ship_complete_wait:
            return "ship_complete: waits until every line can be allocated at once"
        if self._on_hand_anywhere(line.sku) == 0:
            return "no stock anywhere"
        if plan is not None and plan.cap_hit:
            cap = self.policy_for(order.channel).max_locations_per_order
            return f"max_locations_per_order ({cap}) reached"
        return "not enough stock at eligible locations (the rest is reserved, held back, or waited for by older backorders)"

    # ----------------------------------------------------------------- giving stock back
    def _release(self, a: Allocation, qty: int | None = None) -> int:
        """Give back ``qty`` (default all) of an allocated (never packed) allocation's units to
        stock; the SKU is owed a fill. Returns the units given back."""
        if a.status != "allocated":
            return 0
        self._require_skus([a.sku])
        qty = a.qty if qty is None or qty >= a.qty else qty
        p = self.positions.get(a.position_key)
        if p is not None:
            p.reserved -= qty
            self.changes.position(p)
        if qty == a.qty:
            a.status = "released"
        else:
            a.qty -= qty
        self.changes.allocation(a)
        self.queue.owe(a.sku)
        if a.status == "released":
            self._location_may_be_free(a)
        return qty

    def _release_to_backorder(self, a: Allocation, qty: int | None = None, *, reason: str | None = None,
                              change: str | None = None, what: str | None = None) -> int:
        """Release-to-backorder, the one way units leave an allocation while the line still wants
        them: they go back to stock and the line waits for them at its original queue place.
        ``reason`` becomes the line's backorder reason; ``change`` (with ``what``, as in
        "<line>: <qty> <what>") is what the order's result says."""
        order = self.orders[a.order_id]
        line = order.lines[a.line_id]
        q = self._release(a, qty)
        line.backordered += q
        if reason is not None:
            line.backorder_reason = reason
        self.changes.line(line)
        if change is not None:
            self.changes.touch(order, change, what and f"{line.line_id}: {q} {what}").released = True
        return q

    def _release_each(self, allocations: Iterable[Allocation], *, reason: str, change: str, what: str) -> None:
        """Release these allocations whole to backorder, oldest first (a lot expired, a location closed)."""
        for a in sorted(allocations, key=Allocation.recency):
            self._release_to_backorder(a, reason=reason, change=change, what=what)
            self._release_ship_complete_partial(self.orders[a.order_id])

    def _release_ship_complete_partial(self, order: Order) -> None:
        """A ship_complete order that lost part of its stock holds nothing until it can complete."""
        if not order.ship_complete or not any(ln.backordered for ln in order.lines.values()):
            return
        for ln in order.lines.values():
            for a in ln.allocations:
                if a.status == "allocated":
                    self._release_to_backorder(a, change="released")

    def _release_newest(self, line: OrderLine, up_to: int) -> int:
        """Give back up to ``up_to`` allocated (never packed) units of a line to stock, newest
        allocation first; the line no longer wants them (cancelled or ordered less)."""
        left = up_to
        for a in sorted((a for a in line.allocations if a.status == "allocated"), key=Allocation.recency, reverse=True):
            if left <= 0:
                break
            left -= self._release(a, left)
        return up_to - left

    def _location_may_be_free(self, a: Allocation) -> None:
        """An allocation stopped being live (released or shipped). Under a cap on locations per order, an
        order that no longer uses that location may now reach another one for its other waiting lines,
        so their SKUs are owed a fill (every event that frees stock or eligibility lets the queue act)."""
        order = self.orders.get(a.order_id)
        if order is None or self.policy_for(order.channel).max_locations_per_order is None:
            return
        if any(x.location_id == a.location_id for x in order.live_allocations()):
            return
        for ln in order.lines.values():
            if ln.in_queue:
                self.queue.owe(ln.sku)

    # ----------------------------------------------------------------- the fair queue
    def _settle(self, skus: Iterable[str]) -> None:
        """Stock owed to older backorders goes to them before anyone else may plan with it."""
        skus = set(skus)
        self._require_skus(skus)
        while (sku := self.queue.next_owed(skus)) is not None:
            self.fill_backorders(sku)

    def fill_backorders(self, sku: str) -> None:
        """Fill open backorders of ``sku`` strictly in queue order while eligible stock remains."""
        self.queue.owed.discard(sku)
        self._require_skus([sku])
        q = self.queue.slice(sku)
        if self._fillable_anywhere(sku) <= 0:
            return
        for line in self.queue.in_order(self.lines_by_sku.get(sku, ())):
            if self._fillable_anywhere(sku) <= 0:
                return
            self.queue.require_loaded(sku, line)
            if not line.in_queue:  # filled meanwhile (a ship_complete sibling line)
                continue
            order = line.order
            before = line.backordered
            self._allocate_open(order, [line])
            if line.backordered != before:
                self.changes.touch(order, "backorder filled",
                                   f"{line.line_id}: {before - line.backordered} from the backorder queue")
        if not q.complete and self._fillable_anywhere(sku) > 0:
            raise SliceTooSmall(queues={sku})

    def run_pending_fills(self) -> None:
        while (sku := self.queue.next_owed()) is not None:
            self.fill_backorders(sku)

    def finish(self) -> None:
        """End of a batch: owed fills run now, so no quiet moment leaves stock beside a backorder."""
        self.run_pending_fills()
        self._emit()

    # ================================================================= commands: orders
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
        allocs = [a for lid in wanted for a in order.lines[lid].allocations if a.status == "allocated"]
        reason = None
        if not allocs:
            reason = "nothing allocated to pack" + (f" (unknown lines: {', '.join(unknown)})" if unknown else "")
        elif order.ship_complete and any(ln.backordered for ln in order.lines.values()):
            reason = "ship_complete order is not fully allocated"
        if reason:
            self.changes.touch(order, "pack rejected", reason, kind="PackRejected", shipment_id=shipment_id)
            self._emit()
            return
        for a in allocs:
            a.status = "packed"
            a.shipment_id = shipment_id
            self.changes.allocation(a)
            self.changes.line(order.lines[a.line_id])
        detail = ", ".join(f"{a.line_id}: {a.qty} {a.sku} from {a.location_id}/{a.bin}" for a in allocs)
        if unknown:
            detail += f" (unknown lines ignored: {', '.join(unknown)})"
        self.changes.touch(order, "packed", detail, kind="AllocationPacked", shipment_id=shipment_id)
        self._emit()

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

    # ================================================================= commands: stock and locations
    def adjust_stock(
        self, *, sku: str, location_id: str, bin: str, lot: str, on_hand: int, delta: int, seq: int, reason: str,
        sellable: bool = True, received_at: datetime | None = None, expires_at: datetime | None = None,
        allocation_id: int | None = None, order_id: str | None = None,
    ) -> bool:
        """StockAdjusted: mirror on_hand; close shipped allocations; release on shrink; fill on rise.

        Returns False for a stale event (its per-position seq is not newer than the last applied).
        """
        self._require_skus([sku])
        key = (sku, location_id, bin, lot)
        p = self.positions.get(key)
        if p is not None and seq <= p.seq:
            self.stale_stock_events += 1
            return False
        if p is None:
            p = StockPosition(sku, location_id, bin, lot, on_hand=0, reserved=0, seq=0, sellable=sellable,
                              received_at=received_at, expires_at=expires_at)
            self._add_position(p)
            self.position_allocations_loaded.add(p.key)  # a new position has no allocations anywhere
        was_usable = self._usable(p)
        before = p.on_hand
        p.on_hand, p.seq, p.sellable = on_hand, seq, sellable
        if received_at is not None and p.received_at is None:
            p.received_at = received_at
        if expires_at is not None:
            p.expires_at = expires_at
        self.changes.position(p)
        if reason == "shipment" and allocation_id is not None:
            self._close_shipped(allocation_id, -delta if delta < 0 else before - on_hand, order_id)
        if p.reserved > p.on_hand:
            self._release_shrink(p)
            self.run_pending_fills()  # re-allocate now, so the result reads as one reallocation
        if p.on_hand > before or (self._usable(p) and not was_usable):
            self.queue.owe(sku)
        self._emit()
        return True

    def _close_shipped(self, allocation_id: int, qty: int, order_id: str | None) -> None:
        a = self.allocations_by_id.get(allocation_id)
        if a is None:
            if order_id is not None and order_id not in self.orders:
                raise SliceTooSmall(orders={order_id})
            return  # unknown or no longer live: the on_hand mirror alone changes
        if a.status not in ("allocated", "packed"):
            return
        order = self.orders[a.order_id]
        p = self.positions.get(a.position_key)
        if 0 < qty < a.qty:
            # A partial shipment of one allocation: split off the shipped part.
            line = order.lines[a.line_id]
            a.qty -= qty
            self._local_seq += 1
            shipped = Allocation(None, a.order_id, a.line_id, a.sku, a.location_id, a.bin, a.lot, qty, "shipped",
                                 a.shipment_id, a.rule, self.now, self._local_seq)
            line.allocations.append(shipped)
            self.changes.allocation(shipped)
        else:
            qty = a.qty
            a.status = "shipped"
            self._location_may_be_free(a)
        self.changes.allocation(a)
        if p is not None:
            p.reserved -= qty
            self.changes.position(p)
        self.changes.line(order.lines[a.line_id])
        self.changes.touch(order, "shipped", f"{a.line_id}: {qty} shipped from {a.location_id}", kind="AllocationShipped",
                           shipment_id=a.shipment_id)

    def _release_shrink(self, p: StockPosition) -> None:
        """Stock fell below what is reserved: release the newest allocated (never packed) first."""
        if p.key not in self.position_allocations_loaded:
            raise SliceTooSmall(positions={p.key})
        live = sorted((a for a in self.allocations_by_position.get(p.key, ()) if a.status == "allocated"),
                      key=Allocation.recency, reverse=True)
        for a in live:
            if p.reserved <= p.on_hand:
                break
            self._release_to_backorder(
                a, p.reserved - p.on_hand, change="stock shrink", what=f"released at {p.location_id}/{p.bin}",
                reason=f"stock shrink at {p.location_id} bin {p.bin}: waiting to be re-allocated")
            self._release_ship_complete_partial(self.orders[a.order_id])

    def release_expired(self, keys: Iterable[PositionKey]) -> None:
        """Lots that expired while units sat allocated there: those units must not be picked, so
        they are released (never packed ones) and backordered at their queue place, then the
        queue re-allocates them from stock that has not expired."""
        for key in sorted(keys):
            p = self.positions.get(key)
            if p is None:
                raise SliceTooSmall(positions={key})
            if not p.expired(self.now):
                continue
            if p.key not in self.position_allocations_loaded:
                raise SliceTooSmall(positions={p.key})
            expiry = p.expires_at.date().isoformat() if p.expires_at else "?"
            lot = p.lot or "(none)"
            self._release_each(
                [a for a in self.allocations_by_position.get(p.key, ()) if a.status == "allocated"],
                reason=f"lot {lot} at {p.location_id} expired on {expiry}: waiting to be re-allocated",
                change="lot expired", what=f"released, lot {lot} at {p.location_id}/{p.bin} expired on {expiry}")
            self.changes.availability.add(p.sku)
        self.run_pending_fills()
        self._emit()

    def change_location(self, loc: Location) -> None:
        """LocationChanged: deactivation re-allocates its unpacked allocations; activation fills."""
        lid = loc.location_id
        old = self.locations.get(lid)
        self.locations[lid] = loc
        self.planner.forget()
        self.changes.locations[lid] = loc
        if old is not None and old.active and not loc.active:
            if lid not in self.location_allocations_loaded:
                raise SliceTooSmall(locations={lid})
            self._release_each(
                [a for key, allocs in self.allocations_by_position.items() if key[1] == lid
                 for a in allocs if a.status == "allocated"],
                reason=f"location {lid} deactivated: waiting to be re-allocated",
                change="location deactivated", what=f"released at {lid}")
            self.run_pending_fills()
        if old is None or not old.active or old.ships_to != loc.ships_to or old.channels != loc.channels:
            if loc.active:
                if lid not in self.location_allocations_loaded:
                    raise SliceTooSmall(locations={lid})
                for p in list(self.positions.values()):
                    if p.location_id == lid and p.on_hand > 0:
                        self.queue.owe(p.sku)
        for p in self.positions.values():
            if p.location_id == lid:
                self.changes.availability.add(p.sku)
        self._emit()

    def set_policy(self, policy: Policy) -> None:
        """A new policy may free stock (less safety stock or buffer): fill every loaded queue."""
        self.policies[policy.channel] = policy
        self.changes.policies[policy.channel] = policy
        self.planner.forget()
        self.queue.owe_all(self.queue.slices)
        self.changes.availability |= self.skus
        self.run_pending_fills()
        self._emit()

    # ================================================================= commands: by hand
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
