"""The allocation book: the rules that span stock, orders and the fair backorder queue.

A transaction loads a slice (the SKUs it touches, their positions, the open queue of SKUs whose
availability can rise, the orders involved), builds an ``AllocationBook`` from it, applies the
batch's commands in order and writes back what changed. No I/O happens here: when a command
needs something outside the slice, the book raises ``SliceTooSmall`` naming it, and the caller
loads more and replays the batch on a fresh book.

Fairness rule: every change that can raise a SKU's availability (stock in, release, hold
released, location (re)activated, policy change) marks the SKU for ``fill_backorders``; the fill
runs before anything else may take stock of that SKU, and at the end of the batch. So stock a
newer order can see is stock no older eligible backorder can take.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from services.allocation.domain.model import (
    Allocation,
    Backorder,
    Location,
    Order,
    OrderLine,
    StockPosition,
    haversine_km,
    pick_key,
)
from services.allocation.domain.policy import (
    DEFAULT_CHANNEL,
    MAX_COMBINATION_CANDIDATES,
    MAX_COMBINATION_LOCATIONS,
    Policy,
)

PositionKey = tuple[str, str, str, str]


class SliceTooSmall(Exception):
    """The batch needs data outside the loaded slice; load it and replay the batch."""

    def __init__(
        self,
        *,
        skus: Iterable[str] = (),
        queues: Iterable[str] = (),
        orders: Iterable[str] = (),
        positions: Iterable[PositionKey] = (),
        locations: Iterable[str] = (),
    ) -> None:
        self.skus = set(skus)
        self.queues = set(queues)
        self.orders = set(orders)
        self.positions = set(positions)
        self.locations = set(locations)
        super().__init__(
            f"need skus={sorted(self.skus)} queues={sorted(self.queues)} orders={sorted(self.orders)}"
            f" positions={len(self.positions)} locations={sorted(self.locations)}"
        )


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


@dataclass
class QueueSlice:
    """What part of a SKU's open backorder queue is loaded."""

    complete: bool  # every open backorder of the SKU is in the book
    boundary: tuple[object, ...] | None = None  # queue key of the last loaded entry when not complete


@dataclass
class OrderResult:
    """One allocation result to publish: the order's snapshot right after a command."""

    order_id: str
    event_type: str
    change: str
    detail: str | None
    shipment_id: str | None
    version: int
    lines: list[tuple[str, str, int, int, int, int, int, int, bool, str | None]]
    allocations: list[tuple[Allocation, str, int, str | None]]  # (allocation, status, qty, shipment_id)
    ship_complete: bool = False


@dataclass
class _Touch:
    change: str
    details: list[str] = field(default_factory=list)
    kind: str | None = None  # fixed event type, else derived from what happened
    allocated: bool = False
    released: bool = False
    shipment_id: str | None = None


@dataclass
class _Plan:
    pieces: list[tuple[OrderLine, Location, int, str]]  # line, location, qty, why this location
    remaining: dict[OrderLine, int]
    candidates: list[Location]
    cap_hit: bool


class AllocationBook:
    """An in-memory slice of SKUs and orders with every allocation rule; records what changed."""

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
        self.queues: dict[str, QueueSlice] = dict(queues or {})
        self.position_allocations_loaded = set(position_allocations_loaded)
        self.location_allocations_loaded = set(location_allocations_loaded)
        self.now = now
        # What changed, for the writer.
        self.changed_positions: set[PositionKey] = set()
        self.changed_orders: dict[str, Order] = {}
        self.new_orders: set[str] = set()
        self.changed_lines: dict[tuple[str, str], OrderLine] = {}
        self.changed_allocations: list[Allocation] = []
        self._changed_alloc_ids: set[int] = set()
        self.changed_locations: dict[str, Location] = {}
        self.changed_policies: dict[str, Policy] = {}
        self.availability_changed: set[str] = set()
        self.results: list[OrderResult] = []
        # Changes to orders not placed yet (their OrderPlaced is still on its way): the caller
        # keeps them and applies them right after the order is placed. (order_id, the change)
        self.waiting_for_order: list[tuple[str, object]] = []
        self.stale_stock_events = 0
        self.pending_fill: set[str] = set()
        self._touched: dict[str, _Touch] = {}
        self._local_seq = 0
        self._manual_order: str | None = None  # allocations for it are choices made by hand
        self._candidates_cache: dict[tuple[object, ...], list[tuple[Location, str]]] = {}
        self._builtin_policy = Policy()

    # ----------------------------------------------------------------- loading helpers
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

    def _require_order(self, order_id: str) -> Order | None:
        return self.orders.get(order_id)

    # ----------------------------------------------------------------- change tracking
    def _mark_line(self, line: OrderLine) -> None:
        self.changed_lines[(line.order_id, line.line_id)] = line

    def _mark_alloc(self, a: Allocation) -> None:
        key = id(a)
        if key not in self._changed_alloc_ids:
            self._changed_alloc_ids.add(key)
            self.changed_allocations.append(a)

    def _mark_position(self, p: StockPosition) -> None:
        self.changed_positions.add(p.key)
        self.availability_changed.add(p.sku)

    def _touch(self, order: Order, change: str, detail: str | None = None, *, kind: str | None = None,
               shipment_id: str | None = None) -> _Touch:
        t = self._touched.get(order.order_id)
        if t is None:
            t = self._touched[order.order_id] = _Touch(change)
        if kind and t.kind is None:
            t.kind = kind
        if detail and detail not in t.details:
            t.details.append(detail)
        if shipment_id:
            t.shipment_id = shipment_id
        return t

    def _emit(self) -> None:
        """One result per order touched by the command just applied, with its snapshot now."""
        for order_id, t in self._touched.items():
            order = self.orders[order_id]
            if t.kind:
                kind = t.kind
            elif t.allocated and t.released:
                kind = "OrderReallocated"
            elif t.released:
                kind = "AllocationReleased"
            elif t.allocated:
                kind = "OrderAllocated"
            else:
                kind = "OrderBackordered"
            order.version += 1
            self.changed_orders[order_id] = order
            lines = [
                (ln.line_id, ln.sku, ln.qty, ln.allocated, ln.backordered, ln.packed, ln.shipped, ln.cancelled,
                 ln.on_hold, ln.backorder_reason)
                for ln in order.lines.values()
            ]
            allocs = [(a, a.status, a.qty, a.shipment_id) for a in order.live_allocations()]
            self.results.append(OrderResult(
                order_id, kind, t.change, "; ".join(t.details) or None, t.shipment_id, order.version, lines, allocs,
                order.ship_complete,
            ))
        self._touched = {}

    # ----------------------------------------------------------------- availability
    def _sku_positions(self, sku: str) -> list[StockPosition]:
        if sku not in self.skus:
            raise SliceTooSmall(skus={sku}, queues={sku})
        return self.positions_by_sku.get(sku, [])

    def _usable(self, p: StockPosition) -> bool:
        """Stock a line may take: sellable, at an active location, and not past its expiry."""
        loc = self.locations.get(p.location_id)
        return p.sellable and loc is not None and loc.active and not p.expired(self.now)

    def available_at(self, sku: str, location_id: str, policy: Policy) -> int:
        """Units of ``sku`` a channel under ``policy`` may take at a location now."""
        free = self._free_by_location(sku).get(location_id, 0)
        return max(0, free - policy.safety(sku, location_id) - policy.buffer)

    def _free_by_location(self, sku: str) -> dict[str, int]:
        """Free units of ``sku`` per location where it is usable (what ``available_at`` sums)."""
        free_at: dict[str, int] = {}
        for p in self._sku_positions(sku):
            if self._usable(p):
                free_at[p.location_id] = free_at.get(p.location_id, 0) + p.free
        return free_at

    def _free_anywhere(self, sku: str) -> int:
        return sum(p.free for p in self._sku_positions(sku) if self._usable(p))

    def _fillable_anywhere(self, sku: str) -> int:
        """Units some channel could still take (free stock beyond the smallest holdback)."""
        policies = list(self.policies.values()) or [Policy()]
        free_at = self._free_by_location(sku)
        return sum(
            max(0, free - min(pol.safety(sku, loc) + pol.buffer for pol in policies)) for loc, free in free_at.items()
        )

    def _on_hand_anywhere(self, sku: str) -> int:
        return sum(p.on_hand for p in self._sku_positions(sku) if self._usable(p))

    # ----------------------------------------------------------------- candidates and planning
    def candidates(self, order: Order, policy: Policy, prefer: str | None = None) -> list[tuple[Location, str]]:
        """Eligible locations, best first, each with why it ranks there (cached per destination)."""
        key = (order.channel, order.country, order.lat, order.lon, order.pickup_location_id, id(policy), prefer)
        found = self._candidates_cache.get(key)
        if found is None:
            found = self._candidates_cache[key] = self._rank_candidates(order, policy, prefer)
        return found

    def _rank_candidates(self, order: Order, policy: Policy, prefer: str | None) -> list[tuple[Location, str]]:
        if order.pickup_location_id:
            loc = self.locations.get(order.pickup_location_id)
            if loc is None or not loc.active or not loc.serves_channel(order.channel):
                return []
            return [(loc, f"pickup location {loc.location_id} (buy online, pick up in store)")]
        locs = [
            loc for loc in self.locations.values()
            if loc.active and loc.serves_channel(order.channel) and loc.ships_to_country(order.country)
        ]

        def distance(loc: Location) -> float:
            if order.lat is None or order.lon is None or loc.lat is None or loc.lon is None:
                return float("inf")
            return haversine_km(order.lat, order.lon, loc.lat, loc.lon)

        dist = {loc.location_id: distance(loc) for loc in locs}

        def key(loc: Location) -> tuple[object, ...]:
            parts: list[object] = [0 if loc.location_id == prefer else 1]
            for r in policy.rank_by:
                parts.append(-loc.priority if r == "priority" else dist[loc.location_id])
            parts.append(loc.location_id)
            return tuple(parts)

        ranked = sorted(locs, key=key)
        out = []
        for i, loc in enumerate(ranked, 1):
            facts = []
            for r in policy.rank_by:
                if r == "priority":
                    facts.append(f"priority {loc.priority}")
                else:
                    d = dist[loc.location_id]
                    facts.append("distance unknown" if d == float("inf") else f"{d:.0f} km away")
            why = f"ranked #{i} by {', '.join(policy.rank_by) or 'location id'}" + (f" ({', '.join(facts)})" if facts else "")
            if loc.location_id == prefer:
                why = f"preferred location chosen by hand; {why}"
            out.append((loc, why))
        return out

    def _plan(self, order: Order, needs: dict[OrderLine, int], prefer: str | None = None) -> _Plan:
        """Which locations give how much to each line (nothing is changed)."""
        skus = {line.sku for line in needs}
        self._require_skus(skus)
        assert not (skus & self.pending_fill), "settle owed fills before planning"
        policy = self.policy_for(order.channel)
        ranked = self.candidates(order, policy, prefer)
        cands = [loc for loc, _ in ranked]
        why = {loc.location_id: w for loc, w in ranked}
        remaining = {line: q for line, q in needs.items() if q > 0}
        if not cands or not remaining:
            return _Plan([], remaining, cands, False)
        # One pass over each SKU's positions (not one per candidate location): the hot path.
        avail = {}
        for sku in skus:
            free_at = self._free_by_location(sku)
            for loc in cands:
                lid = loc.location_id
                avail[(lid, sku)] = max(0, free_at.get(lid, 0) - policy.safety(sku, lid) - policy.buffer)
        used = {a.location_id for a in order.live_allocations()}
        cap = policy.max_locations_per_order
        need_by_sku: dict[str, int] = {}
        for line, q in remaining.items():
            need_by_sku[line.sku] = need_by_sku.get(line.sku, 0) + q

        def covers(locs: tuple[Location, ...]) -> bool:
            return all(sum(avail[(loc.location_id, s)] for loc in locs) >= n for s, n in need_by_sku.items())

        def within_cap(locs: tuple[Location, ...]) -> bool:
            return cap is None or len(used | {loc.location_id for loc in locs}) <= cap

        chosen: list[Location] = cands
        split_rule = "greedy by rank"
        if policy.fewest_splits and prefer is None:
            found: tuple[Location, ...] | None = None
            for loc in cands:
                if within_cap((loc,)) and covers((loc,)):
                    found, split_rule = (loc,), "fewest splits: one location fills all of it"
                    break
            # Only locations that have something to give can be part of a combination, and no
            # combination can cover what all candidates together cannot.
            useful = [loc for loc in cands if any(avail[(loc.location_id, s)] for s in need_by_sku)]
            if found is None and covers(tuple(useful)):
                top = useful[:MAX_COMBINATION_CANDIDATES]
                for k in range(2, MAX_COMBINATION_LOCATIONS + 1):
                    for combo in itertools.combinations(top, k):
                        if within_cap(combo) and covers(combo):
                            found, split_rule = combo, f"fewest splits: {k} locations fill all of it"
                            break
                    if found:
                        break
            if found is None:
                split_rule = "greedy by rank (no small combination of locations fills all of it)"
            if found is not None:
                chosen = list(found)
        elif prefer is not None:
            split_rule = "preferred location first, then greedy by rank"
        pieces: list[tuple[OrderLine, Location, int, str]] = []
        cap_hit = False
        for loc in chosen:
            if not remaining:
                break
            if loc.location_id not in used and cap is not None and len(used) >= cap:
                cap_hit = True
                continue
            took = False
            for line in list(remaining):
                a = avail[(loc.location_id, line.sku)]
                t = min(remaining[line], a)
                if t <= 0:
                    continue
                avail[(loc.location_id, line.sku)] = a - t
                remaining[line] -= t
                if remaining[line] == 0:
                    del remaining[line]
                pieces.append((line, loc, t, f"{split_rule}; {why[loc.location_id]}"))
                took = True
            if took:
                used.add(loc.location_id)
        return _Plan(pieces, remaining, cands, cap_hit)

    def _apply_plan(self, order: Order, plan: _Plan, *, from_backorder: bool) -> int:
        """Create the planned allocations, lot by lot (FEFO, then FIFO, then bin)."""
        total = 0
        for line, loc, qty, why in plan.pieces:
            positions = sorted(
                (p for p in self.positions_by_sku[line.sku]
                 if p.location_id == loc.location_id and p.free > 0 and self._usable(p)),
                key=pick_key,
            )
            left = qty
            for p in positions:
                if left == 0:
                    break
                t = min(left, p.free)
                if p.expires_at is not None:
                    lot_rule = f"FEFO: earliest expiry {p.expires_at.date().isoformat()}"
                elif p.received_at is not None:
                    lot_rule = f"FIFO: received {p.received_at.date().isoformat()}"
                else:
                    lot_rule = "no expiry or receipt date: bin order"
                rule = f"{loc.location_id}: {why}; lot {p.lot or '(none)'} bin {p.bin}: {lot_rule}"
                self._new_allocation(line, p, t, rule)
                left -= t
            taken = qty - left
            if from_backorder:
                line.backordered -= taken
            total += taken
            self._mark_line(line)
        if total:
            self._touch(order, "allocated").allocated = True
        return total

    def _new_allocation(self, line: OrderLine, p: StockPosition, qty: int, rule: str, *, manual: bool = False) -> Allocation:
        self._local_seq += 1
        manual = manual or line.order_id == self._manual_order
        a = Allocation(
            allocation_id=None, order_id=line.order_id, line_id=line.line_id, sku=line.sku,
            location_id=p.location_id, bin=p.bin, lot=p.lot, qty=qty, status="allocated", rule=rule,
            created_at=self.now, local_seq=self._local_seq, manual=manual,
        )
        line.allocations.append(a)
        self.allocations_by_position.setdefault(p.key, []).append(a)
        p.reserved += qty
        self._mark_position(p)
        self._mark_alloc(a)
        return a

    def _release(self, a: Allocation, qty: int | None = None) -> int:
        """Give back ``qty`` (default all) of an allocated (never packed) allocation's units."""
        if a.status != "allocated":
            return 0
        self._require_skus([a.sku])
        qty = a.qty if qty is None or qty >= a.qty else qty
        p = self.positions.get(a.position_key)
        if p is not None:
            p.reserved -= qty
            self._mark_position(p)
        if qty == a.qty:
            a.status = "released"
        else:
            a.qty -= qty
        self._mark_alloc(a)
        self.pending_fill.add(a.sku)
        if a.status == "released":
            self._location_may_be_free(a)
        return qty

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
                self.pending_fill.add(ln.sku)

    def _why_waiting(self, order: Order, line: OrderLine, plan: _Plan | None, *, ship_complete_wait: bool = False) -> str:
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

    def _settle(self, skus: Iterable[str]) -> None:
        """Stock owed to older backorders goes to them before anyone else may plan with it."""
        skus = set(skus)
        self._require_skus(skus)
        while skus & self.pending_fill:
            self.fill_backorders(min(skus & self.pending_fill))

    def _allocate_open(self, order: Order, lines: list[OrderLine], *, prefer: str | None = None) -> None:
        """Allocate what the lines have backordered, honouring ship_complete (all or nothing)."""
        self._settle({ln.sku for ln in (order.lines.values() if order.ship_complete else lines)})
        if order.ship_complete:
            if not self._try_complete(order, prefer=prefer):
                self._release_ship_complete_partial(order)
            return
        needs = {ln: ln.backordered for ln in lines if ln.in_queue}
        if not needs:
            return
        plan = self._plan(order, needs, prefer)
        self._apply_plan(order, plan, from_backorder=True)
        for line in needs:
            if line.backordered:
                reason = self._why_waiting(order, line, plan)
                if reason != line.backorder_reason:
                    line.backorder_reason = reason
                    self._mark_line(line)
            elif line.backorder_reason is not None:
                line.backorder_reason = None
                self._mark_line(line)

    def _try_complete(self, order: Order, *, prefer: str | None = None) -> bool:
        """A ship_complete order gets everything it still needs, or nothing."""
        self._settle({ln.sku for ln in order.lines.values()})
        open_lines = [ln for ln in order.lines.values() if ln.backordered > 0]
        if not open_lines:
            return True
        if any(ln.on_hold for ln in open_lines):
            return False
        plan = self._plan(order, {ln: ln.backordered for ln in open_lines}, prefer)
        if plan.remaining:
            for ln in open_lines:
                reason = self._why_waiting(order, ln, plan, ship_complete_wait=bool(plan.candidates))
                if reason != ln.backorder_reason:
                    ln.backorder_reason = reason
                    self._mark_line(ln)
            return False
        self._apply_plan(order, plan, from_backorder=True)
        for ln in open_lines:
            ln.backorder_reason = None
            self._mark_line(ln)
        return True

    def _release_ship_complete_partial(self, order: Order) -> None:
        """A ship_complete order that lost part of its stock holds nothing until it can complete."""
        if not order.ship_complete or not any(ln.backordered for ln in order.lines.values()):
            return
        for ln in order.lines.values():
            for a in ln.allocations:
                if a.status == "allocated":
                    q = self._release(a)
                    ln.backordered += q
                    self._mark_line(ln)
                    self._touch(order, "released").released = True

    # ----------------------------------------------------------------- the fair queue
    def fill_backorders(self, sku: str) -> None:
        """Fill open backorders of ``sku`` strictly in queue order while eligible stock remains."""
        self.pending_fill.discard(sku)
        if sku not in self.skus:
            raise SliceTooSmall(skus={sku}, queues={sku})
        q = self.queues.get(sku)
        if q is None:
            raise SliceTooSmall(queues={sku})
        if self._fillable_anywhere(sku) <= 0:
            return
        waiting = sorted((ln for ln in self.lines_by_sku.get(sku, ()) if ln.in_queue), key=OrderLine.queue_key)
        for line in waiting:
            if self._fillable_anywhere(sku) <= 0:
                return
            if not q.complete and q.boundary is not None and line.queue_key() > q.boundary:
                raise SliceTooSmall(queues={sku})
            if not line.in_queue:  # filled meanwhile (a ship_complete sibling line)
                continue
            order = line.order
            before = line.backordered
            self._allocate_open(order, [line])
            if line.backordered != before:
                self._touch(order, "backorder filled", f"{line.line_id}: {before - line.backordered} from the backorder queue")
        if not q.complete and self._fillable_anywhere(sku) > 0:
            raise SliceTooSmall(queues={sku})

    def run_pending_fills(self) -> None:
        while self.pending_fill:
            self.fill_backorders(min(self.pending_fill))

    def finish(self) -> None:
        """End of a batch: owed fills run now, so no quiet moment leaves stock beside a backorder."""
        self.run_pending_fills()
        self._emit()

    def open_backorders(self, sku: str) -> list[Backorder]:
        lines = sorted((ln for ln in self.lines_by_sku.get(sku, ()) if ln.backordered > 0), key=OrderLine.queue_key)
        return [Backorder(ln.order_id, ln.line_id, ln.sku, ln.backordered, ln.on_hold, ln.backorder_reason) for ln in lines]

    # ================================================================= commands
    def place_order(self, order: Order) -> None:
        """OrderPlaced: allocate every line now; what cannot be allocated waits as backorder."""
        if order.order_id in self.orders:
            return  # already known: a replay under another event id changes nothing
        self._settle({ln.sku for ln in order.lines.values()})
        self.new_orders.add(order.order_id)
        self._add_order(order)
        self.changed_orders[order.order_id] = order
        for line in order.lines.values():
            line.backordered = line.qty
            self._mark_line(line)
        self._touch(order, "placed")
        self._allocate_open(order, list(order.lines.values()))
        for line in order.lines.values():
            if line.backordered and line.backorder_reason is None:
                line.backorder_reason = self._why_waiting(order, line, None)
        self._emit()

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
        self._mark_position(p)
        if reason == "shipment" and allocation_id is not None:
            self._close_shipped(allocation_id, -delta if delta < 0 else before - on_hand, order_id)
        if p.reserved > p.on_hand:
            self._release_shrink(p)
            self.run_pending_fills()  # re-allocate now, so the result reads as one reallocation
        if p.on_hand > before or (self._usable(p) and not was_usable):
            self.pending_fill.add(sku)
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
            self._mark_alloc(shipped)
        else:
            qty = a.qty
            a.status = "shipped"
            self._location_may_be_free(a)
        self._mark_alloc(a)
        if p is not None:
            p.reserved -= qty
            self._mark_position(p)
        self._mark_line(order.lines[a.line_id])
        self._touch(order, "shipped", f"{a.line_id}: {qty} shipped from {a.location_id}", kind="AllocationShipped",
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
            order = self.orders[a.order_id]
            line = order.lines[a.line_id]
            q = self._release(a, p.reserved - p.on_hand)
            line.backordered += q
            line.backorder_reason = f"stock shrink at {p.location_id} bin {p.bin}: waiting to be re-allocated"
            self._mark_line(line)
            t = self._touch(order, "stock shrink", f"{line.line_id}: {q} released at {p.location_id}/{p.bin}")
            t.released = True
            self._release_ship_complete_partial(order)

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
            for a in sorted((a for a in self.allocations_by_position.get(p.key, ()) if a.status == "allocated"),
                            key=Allocation.recency):
                order = self.orders[a.order_id]
                line = order.lines[a.line_id]
                q = self._release(a)
                line.backordered += q
                line.backorder_reason = f"lot {p.lot or '(none)'} at {p.location_id} expired on {expiry}: waiting" \
                                        " to be re-allocated"
                self._mark_line(line)
                t = self._touch(order, "lot expired", f"{line.line_id}: {q} released, lot {p.lot or '(none)'}"
                                f" at {p.location_id}/{p.bin} expired on {expiry}")
                t.released = True
                self._release_ship_complete_partial(order)
            self.availability_changed.add(p.sku)
        self.run_pending_fills()
        self._emit()

    def change_location(self, loc: Location) -> None:
        """LocationChanged: deactivation re-allocates its unpacked allocations; activation fills."""
        old = self.locations.get(loc.location_id)
        self.locations[loc.location_id] = loc
        self._candidates_cache.clear()
        self.changed_locations[loc.location_id] = loc
        if old is not None and old.active and not loc.active:
            if loc.location_id not in self.location_allocations_loaded:
                raise SliceTooSmall(locations={loc.location_id})
            released = [a for key, allocs in self.allocations_by_position.items() if key[1] == loc.location_id
                        for a in allocs if a.status == "allocated"]
            for a in sorted(released, key=Allocation.recency):
                order = self.orders[a.order_id]
                line = order.lines[a.line_id]
                q = self._release(a)
                line.backordered += q
                line.backorder_reason = f"location {loc.location_id} deactivated: waiting to be re-allocated"
                self._mark_line(line)
                t = self._touch(order, "location deactivated", f"{line.line_id}: {q} released at {loc.location_id}")
                t.released = True
                self._release_ship_complete_partial(order)
            self.run_pending_fills()
        if old is None or not old.active or old.ships_to != loc.ships_to or old.channels != loc.channels:
            if loc.active:
                if loc.location_id not in self.location_allocations_loaded:
                    raise SliceTooSmall(locations={loc.location_id})
                for p in list(self.positions.values()):
                    if p.location_id == loc.location_id and p.on_hand > 0:
                        self.pending_fill.add(p.sku)
        for p in self.positions.values():
            if p.location_id == loc.location_id:
                self.availability_changed.add(p.sku)
        self._emit()

    def request_pack(self, order_id: str, shipment_id: str, line_ids: list[str] | None) -> None:
        """PackRequested: the still-allocated units of those lines become packed, or the pack is refused."""
        order = self.orders.get(order_id)
        if order is None:
            self.results.append(OrderResult(order_id, "PackRejected", "pack rejected", "unknown order", shipment_id, 0, [], []))
            return
        already = [a for a in order.live_allocations() if a.shipment_id == shipment_id]
        if already:  # the same pack request again: answer the same
            self._touch(order, "packed", "already packed", kind="AllocationPacked", shipment_id=shipment_id)
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
            self._touch(order, "pack rejected", reason, kind="PackRejected", shipment_id=shipment_id)
            self._emit()
            return
        for a in allocs:
            a.status = "packed"
            a.shipment_id = shipment_id
            self._mark_alloc(a)
            self._mark_line(order.lines[a.line_id])
        detail = ", ".join(f"{a.line_id}: {a.qty} {a.sku} from {a.location_id}/{a.bin}" for a in allocs)
        if unknown:
            detail += f" (unknown lines ignored: {', '.join(unknown)})"
        self._touch(order, "packed", detail, kind="AllocationPacked", shipment_id=shipment_id)
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
                    self.pending_fill.add(ln.sku)  # the rest may now complete
        self._touch(order, "cancelled", "; ".join(details) + (f" ({reason})" if reason else ""), kind="AllocationCancelled")
        self._emit()

    def _cancel_open(self, line: OrderLine, limit: int | None) -> int:
        """Cancel up to ``limit`` open units of a line: backorder first, then newest allocations."""
        left = line.backordered + line.allocated if limit is None else limit
        total = 0
        take = min(left, line.backordered)
        line.backordered -= take
        left -= take
        total += take
        for a in sorted((a for a in line.allocations if a.status == "allocated"), key=Allocation.recency, reverse=True):
            if left <= 0:
                break
            q = self._release(a, left)
            left -= q
            total += q
        line.cancelled += total
        if line.backordered == 0:
            line.backorder_reason = None
            line.on_hold = False  # nothing left waiting: a hold has nothing to hold back
        self._mark_line(line)
        return total

    def _reduce(self, line: OrderLine, by: int) -> int:
        """Lower a line's ordered quantity: backorder first, then newest allocations, then cancelled."""
        left = by
        take = min(left, line.backordered)
        line.backordered -= take
        left -= take
        for a in sorted((a for a in line.allocations if a.status == "allocated"), key=Allocation.recency, reverse=True):
            if left <= 0:
                break
            left -= self._release(a, left)
        take = min(left, line.cancelled)
        line.cancelled -= take
        left -= take
        line.qty -= by - left
        if line.backordered == 0:
            line.backorder_reason = None
        self._mark_line(line)
        return by - left

    def modify(self, order_id: str, changes: list[tuple[str, str, int]], priority: int | None = None) -> None:
        """OrderModified: quantities down release, up or new lines allocate; priority moves the queue place."""
        order = self.orders.get(order_id)
        if order is None:
            return
        self._touch(order, "modified")
        if priority is not None and priority != order.priority:
            order.priority = priority
            self.changed_orders[order_id] = order
            for ln in order.lines.values():
                self._mark_line(ln)
                if ln.in_queue:
                    self.pending_fill.add(ln.sku)
            self._touch(order, "modified", f"priority -> {priority}")
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
                self._mark_line(line)
                grow.append(line)
                self._touch(order, "modified", f"{line_id}: new line of {qty} {sku}")
            elif qty == 0:
                n = self._cancel_open(line, None)
                self._touch(order, "modified", f"{line_id}: {n} cancelled")
            elif qty > line.qty:
                diff = qty - line.qty
                line.qty = qty
                line.backordered += diff
                self._mark_line(line)
                grow.append(line)
                self._touch(order, "modified", f"{line_id}: +{diff}")
            elif qty < line.qty:
                n = self._reduce(line, line.qty - qty)
                self._touch(order, "modified", f"{line_id}: -{n}")
        if grow:
            self._allocate_open(order, grow)
            for line in grow:
                if line.backordered and line.backorder_reason is None:
                    line.backorder_reason = self._why_waiting(order, line, None)
        self._emit()

    # ----------------------------------------------------------------- manual operations
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
            released = 0
            for a in line.allocations:
                if a.status == "allocated":
                    released += self._release(a)
            line.backordered += released
            line.on_hold = True
            line.backorder_reason = self._why_waiting(order, line, None) if line.backordered else None
            self._mark_line(line)
            t = self._touch(order, "deallocated", f"{lid}: {released} released, line on hold")
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
            self._mark_line(line)
            if line.backordered:
                self.pending_fill.add(line.sku)
        self._touch(order, "hold released", ", ".join(ln.line_id for ln in held) or "no line was on hold")
        self.run_pending_fills()
        self._emit()

    def transfer(self, from_order_id: str, to_order_id: str, sku: str, qty: int, location_id: str | None = None) -> None:
        """Move allocated units of ``sku`` from one order to another's backorder, by hand."""
        problems: list[Problem] = []
        src = self.orders.get(from_order_id)
        dst = self.orders.get(to_order_id)
        if src is None:
            raise UnknownOrder(from_order_id)
        if dst is None:
            raise UnknownOrder(to_order_id)
        if from_order_id == to_order_id:
            problems.append(Problem("to_order_id", "must differ from from_order_id"))
        if qty <= 0:
            problems.append(Problem("qty", "must be > 0"))
        movable = sorted(
            (a for ln in src.lines.values() if ln.sku == sku for a in ln.allocations
             if a.status == "allocated" and (location_id is None or a.location_id == location_id)),
            key=Allocation.recency, reverse=True,
        )
        have = sum(a.qty for a in movable)
        if have < qty:
            where = f" at {location_id}" if location_id else ""
            problems.append(Problem("qty", f"order {from_order_id} has only {have} unpacked {sku} allocated{where}"))
        targets = [ln for ln in dst.lines.values() if ln.sku == sku and ln.backordered > 0]
        want = sum(ln.backordered for ln in targets)
        if want < qty:
            problems.append(Problem("qty", f"order {to_order_id} has only {want} {sku} backordered"))
        elif dst.ship_complete and sum(ln.backordered for ln in dst.lines.values()) != qty:
            problems.append(Problem("to_order_id", f"order {to_order_id} is ship_complete: a transfer must cover"
                                                   " all of its backorder at once"))
        if problems:
            raise CommandRefused(problems)
        left = qty
        for a in movable:
            if left == 0:
                break
            t = min(left, a.qty)
            p = self.positions[a.position_key]
            src_line = src.lines[a.line_id]
            was_pending = sku in self.pending_fill
            self._release(a, t)
            if not was_pending:
                self.pending_fill.discard(sku)  # the moved units go straight to the other order
            src_line.backordered += t
            src_line.backorder_reason = f"{t} moved by hand to order {to_order_id}"
            self._mark_line(src_line)
            self._touch(src, "moved out", f"{src_line.line_id}: {t} {sku} moved to {to_order_id}").released = True
            while t > 0:
                dst_line = next(ln for ln in targets if ln.backordered > 0)
                n = min(t, dst_line.backordered)
                self._new_allocation(dst_line, p, n, f"{p.location_id}: moved by hand from order {from_order_id};"
                                     f" lot {p.lot or '(none)'} bin {p.bin}", manual=True)
                dst_line.backordered -= n
                if dst_line.backordered == 0:
                    dst_line.backorder_reason = None
                self._mark_line(dst_line)
                self._touch(dst, "moved in", f"{dst_line.line_id}: {n} {sku} moved from {from_order_id}").allocated = True
                t -= n
                left -= n
        self._release_ship_complete_partial(src)
        # The source's lines are now open backorders at their own queue place (a move is not a hold):
        # stock that was already free, and no older backorder could take, may be theirs.
        if any(ln.in_queue for ln in src.lines.values() if ln.sku == sku):
            self.pending_fill.add(sku)
        self.run_pending_fills()
        self._emit()

    def reallocate(self, order_id: str, location_id: str) -> None:
        """Release the order's unpacked allocations and allocate again preferring ``location_id``."""
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
        released_skus: set[str] = set()
        was_pending = set(self.pending_fill)
        for line in order.lines.values():
            for a in line.allocations:
                if a.status == "allocated":
                    q = self._release(a)
                    line.backordered += q
                    released_skus.add(line.sku)
            self._mark_line(line)
        self.pending_fill -= released_skus - was_pending  # the order itself gets first go at its own stock
        self._touch(order, "reallocated", f"preferring {location_id}", kind="OrderReallocated")
        self._manual_order = order_id
        try:
            self._allocate_open(order, [ln for ln in order.lines.values() if ln.in_queue], prefer=location_id)
        finally:
            self._manual_order = None
        for line in order.lines.values():
            if line.in_queue and line.backorder_reason is None:
                line.backorder_reason = self._why_waiting(order, line, None)
        self.pending_fill |= released_skus
        self.run_pending_fills()
        self._emit()

    def set_policy(self, policy: Policy) -> None:
        """A new policy may free stock (less safety stock or buffer): fill every loaded queue."""
        self.policies[policy.channel] = policy
        self.changed_policies[policy.channel] = policy
        self._candidates_cache.clear()
        self.pending_fill |= set(self.queues)
        self.availability_changed |= self.skus
        self.run_pending_fills()
        self._emit()
