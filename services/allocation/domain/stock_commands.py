"""Commands that come from stock and setup: stock adjusted (receipt, shrink, shipment), lots
expired, a location changed, a policy changed."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from services.allocation.domain.aggregate import BookCore
from services.allocation.domain.dropship import REFUSED
from services.allocation.domain.dropship_commands import release_refused
from services.allocation.domain.model import Allocation, Location, PositionKey, StockPosition
from services.allocation.domain.policy import Policy
from services.allocation.domain.queue import SliceTooSmall


class StockCommands(BookCore):
    """StockAdjusted, the expiry sweep, LocationChanged, a new policy, the next chunk of a long fill."""

    def fill_queue(self, sku: str) -> None:
        """The next chunk of a long queue's fill (``fill_backorders``; service_layer/refill.py)."""
        self.fill_backorders(sku)
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
        self.changes.position(p)
        if reason == "shipment" and allocation_id is not None:
            self._close_shipped(allocation_id, -delta if delta < 0 else before - on_hand, order_id)
        elif reason == REFUSED and allocation_id is not None:  # a dropship supplier refused these units
            release_refused(self, allocation_id, -delta if delta < 0 else before - on_hand, order_id)
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
            self._require_order(order_id)
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
        if (old is None or not old.active or old.ships_to != loc.ships_to or old.channels != loc.channels
                or (loc.pickup and not old.pickup)):
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

    def _release_each(self, allocations: Iterable[Allocation], *, reason: str, change: str, what: str) -> None:
        """Release these allocations whole to backorder, oldest first (a lot expired, a location closed)."""
        for a in sorted(allocations, key=Allocation.recency):
            self._release_to_backorder(a, reason=reason, change=change, what=what)
            self._release_ship_complete_partial(self.orders[a.order_id])
