"""The order/line aggregate every allocation command works on (``BookCore``), with the few
operations the commands are made of:

- allocate what lines wait for (``_allocate_open``: plan with the ``LocationPlanner``, take the
  lots ``pick_lots`` names), all or nothing for a ship_complete order;
- release to backorder (``_release_to_backorder``), the one way units leave an allocation while
  the line still wants them, and the ship_complete rule that follows it;
- fill the fair queue (``fill_backorders``) for the SKUs a change owes a fill (``FairQueue``).

Available-to-promise is ``availability``'s; what changed is recorded in a ``ChangeRecord``. The
commands themselves are grouped by where they come from (orders, stock, staff by hand) in
``order_commands``, ``stock_commands`` and ``hand_commands``; ``book.AllocationBook`` has them all.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime

from services.allocation.domain.availability import available_to_promise, free_by_location, usable
from services.allocation.domain.changes import ChangeRecord, OrderResult
from services.allocation.domain.dropship import plan_with_dropship
from services.allocation.domain.held import keep_held
from services.allocation.domain.location_rules import OrderLocations, why_none_allowed
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


class BookCore:
    """The order/line aggregate of a slice: the orders and stock loaded, and the operations every
    command is made of (allocate what lines wait for, release to backorder, fill the queue)."""

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
        absent_orders: Iterable[str] = (),
        filling: Iterable[str] = (),
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
        # Orders the loader looked for and allocation has never had (their OrderPlaced never came
        # here): an event about one of them is applied without it instead of asking for it again.
        self.absent_orders = set(absent_orders)
        self.now = now
        self.planner = LocationPlanner(self.locations)
        self.queue = FairQueue(dict(queues or {}), filling=set(filling))
        self.changes = ChangeRecord()
        # Changes to orders not placed yet (their OrderPlaced is still on its way): the caller
        # keeps them and applies them right after the order is placed. (order_id, the change)
        self.waiting_for_order: list[tuple[str, object]] = []
        self.stale_stock_events = 0
        self._local_seq = 0
        self._builtin_policy = Policy()

    def release(self) -> None:
        """Break the book's reference cycles (each order and its lines point at each other) once
        nobody reads it any more, so its memory goes back at once instead of at the next full
        pass of the garbage collector: the service runs the collector rarely (``OMS_GC_THRESHOLD``),
        and a refill of 100,000 lines builds fifty books, each with 2,000 orders, in seconds."""
        for order in self.orders.values():
            order.lines.clear()
        self.orders.clear()
        self.lines_by_sku.clear()

    @property
    def results(self) -> list[OrderResult]:
        return self.changes.results

    @property
    def changed_positions(self) -> set[PositionKey]:
        """(Read by entrypoints/subscribers.py to decide whether to wake the relay.)"""
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

    def _require_skus(self, skus: Collection[str]) -> None:
        if self.skus.issuperset(skus):  # the usual case, checked in C
            return
        missing = {s for s in skus if s not in self.skus}
        raise SliceTooSmall(skus=missing, queues=missing)

    def _require_order(self, order_id: str | None) -> None:
        """Ask the loader for ``order_id`` unless it is here or known not to exist."""
        if order_id is not None and order_id not in self.orders and order_id not in self.absent_orders:
            raise SliceTooSmall(orders={order_id})

    def _sku_positions(self, sku: str) -> list[StockPosition]:
        if sku not in self.skus:
            raise SliceTooSmall(skus={sku}, queues={sku})
        return self.positions_by_sku.get(sku, [])

    def _emit(self) -> None:
        self.changes.emit(self.orders)

    def _reject_pack(self, order: Order, shipment_id: str, reason: str) -> None:
        """PackRejected for ``shipment_id``: nothing changes but the order's timeline."""
        self.changes.touch(order, "pack rejected", reason, kind="PackRejected", shipment_id=shipment_id)
        self._emit()

    def _mark_packed(self, order: Order, allocs: list[Allocation], shipment_id: str) -> None:
        """The allocated units ``allocs`` become packed under ``shipment_id`` (the caller says so
        on the order with its own words, then emits)."""
        for a in allocs:
            a.status = "packed"
            a.shipment_id = shipment_id
            self.changes.allocation(a)
            self.changes.line(order.lines[a.line_id])

    # ----------------------------------------------------------------- available-to-promise
    def _usable(self, p: StockPosition) -> bool:
        return usable(p, self.locations, self.now)

    def _free_by_location(self, sku: str) -> dict[str, int]:
        return free_by_location(self._sku_positions(sku), self.locations, self.now)

    def available_at(self, sku: str, location_id: str, policy: Policy) -> int:
        """Units of ``sku`` a channel under ``policy`` may take at a location now."""
        return available_to_promise(self._free_by_location(sku).get(location_id, 0), policy, sku, location_id)

    def _free_in_turn(self, sku: str) -> dict[str, int]:
        """What an order may take in queue order: nothing of a SKU whose queue is being filled in
        chunks (``FairQueue.filling``): its free units belong to the older backorders not loaded yet."""
        if sku in self.queue.filling:
            return {}
        return self._free_by_location(sku)

    def _fillable_anywhere(self, sku: str) -> int:
        """Units some channel could still take (per location, the largest of the channels' shares)."""
        policies = list(self.policies.values()) or [Policy()]
        return sum(
            max(available_to_promise(free, pol, sku, loc) for pol in policies)
            for loc, free in self._free_in_turn(sku).items()
        )

    def _on_hand_anywhere(self, sku: str) -> int:
        return sum(p.on_hand for p in self._sku_positions(sku) if self._usable(p))

    # ----------------------------------------------------------------- planning and taking stock
    def candidates(self, order: Order, policy: Policy, prefer: str | None = None) -> Ranked:
        """Eligible locations, best first, each with why it ranks there."""
        return self.planner.candidates(order, policy, prefer)

    def _plan(self, order: Order, needs: dict[OrderLine, int], prefer: str | None = None, *,
              settled: bool = True, manual: bool = False) -> Plan:
        """``manual``: a choice made by hand may take stock a queue being filled waits for."""
        skus = {line.sku for line in needs}
        self._require_skus(skus)
        assert not settled or not (skus & self.queue.owed), "settle owed fills before planning"
        free = self._free_by_location if manual else self._free_in_turn
        return plan_with_dropship(self.planner, order, needs, self.policy_for(order.channel), free, prefer)

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
        if keep_held(order, lines, self.changes):  # held by staff: nothing more (order_holds.py)
            return
        if settle:
            self._settle({ln.sku for ln in (order.lines.values() if order.ship_complete else lines)})
        if order.ship_complete:
            if not self._try_complete(order, prefer=prefer, manual=manual, settle=settle):
                self._release_ship_complete_partial(order)
            return
        needs = {ln: ln.backordered for ln in lines if ln.in_queue}
        if not needs:
            return
        plan = self._plan(order, needs, prefer, settled=settle, manual=manual)
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
        plan = self._plan(order, {ln: ln.backordered for ln in open_lines}, prefer, settled=settle, manual=manual)
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
                return f"no eligible location: {self.planner.pickup_refusal(order)}"
            ruled = why_none_allowed(OrderLocations.from_json(order.location_choice))
            if ruled is not None:
                return ruled
            return f"no eligible location: none active ships to {order.country or '?'} for channel {order.channel}"
        if ship_complete_wait:
            return "ship_complete: waits until every line can be allocated at once"
        if line.sku in self.queue.filling:
            return "waits its turn: older backorders of this SKU are being filled from new stock first"
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

    def _release_ship_complete_partial(self, order: Order) -> None:
        """A ship_complete order that lost part of its stock holds nothing until it can complete."""
        if not order.ship_complete or not any(ln.backordered for ln in order.lines.values()):
            return
        for ln in order.lines.values():
            for a in ln.allocations:
                if a.status == "allocated":
                    self._release_to_backorder(a, change="released")

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
        """Fill open backorders of ``sku`` strictly in queue order while eligible stock remains.

        Only the loaded part of a long queue is filled (the loader loads a bounded chunk): when
        stock is left and the queue goes on past it, the SKU is marked as *filling*
        (``FairQueue.filling``, kept in the database): no order may take its free units in queue
        order until a later transaction has filled the rest, chunk by chunk
        (``service_layer/refill.py``). A transaction's memory so stays bounded however long the
        queue, and the fair queue holds across chunks. Each chunk starts at the head of the queue
        (filled lines have left it); a chunk where no line could take the stock (ship_complete
        orders waiting for other SKUs, lines no location with stock may serve) asks the loader for
        a longer one, so every chunk fills something and the fill ends."""
        self.queue.owed.discard(sku)
        self._require_skus([sku])
        q = self.queue.slice(sku)
        self.queue.filling.discard(sku)  # this fill may take the stock
        filled = 0
        look = True  # whether stock may have run out (a line that got all it wanted says nothing)
        for line in self.queue.in_order(self.lines_by_sku.get(sku, ())):
            if look and self._fillable_anywhere(sku) <= 0:
                break
            if q.beyond(line):  # lines loaded out of turn (their order came for another reason)
                break
            if not line.in_queue:  # filled meanwhile (a ship_complete sibling line)
                continue
            order = line.order
            before = line.backordered
            self._allocate_open(order, [line])
            look = line.backordered > 0
            if line.backordered != before:
                filled += 1
                self.changes.touch(order, "backorder filled",
                                   f"{line.line_id}: {before - line.backordered} from the backorder queue")
        if not q.complete and self._fillable_anywhere(sku) > 0:
            if not filled:  # nothing loaded could take it (ship_complete, ineligible): look further now
                raise SliceTooSmall(queues={sku})
            self.queue.filling.add(sku)  # the rest of the queue first: the next chunk

    def run_pending_fills(self) -> None:
        while (sku := self.queue.next_owed()) is not None:
            self.fill_backorders(sku)

    def finish(self) -> None:
        """End of a batch: owed fills run now, so no quiet moment leaves stock beside a backorder."""
        self.run_pending_fills()
        self._emit()
