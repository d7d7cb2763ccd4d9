"""What the commands applied to a book changed: the rows the writer stores
(``adapters/repository.write_changes`` reads a ``ChangeRecord``) and one result per order and
command to publish (``OrderResult``, with typed snapshots of its lines and live allocations)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from services.allocation.domain.model import (
    Allocation,
    Location,
    Order,
    OrderLine,
    PositionKey,
    StockPosition,
)
from services.allocation.domain.policy import Policy


class LineSnapshot(NamedTuple):
    """An order line's quantities by state right after a command."""

    line_id: str
    sku: str
    qty: int
    allocated: int
    backordered: int
    packed: int
    shipped: int
    cancelled: int
    on_hold: bool
    backorder_reason: str | None


class AllocationSnapshot(NamedTuple):
    """A live allocation right after a command (the object may change later in the batch)."""

    allocation: Allocation
    status: str
    qty: int
    shipment_id: str | None


@dataclass
class OrderResult:
    """One allocation result to publish: the order's snapshot right after a command."""

    order_id: str
    event_type: str
    change: str
    detail: str | None
    shipment_id: str | None
    version: int
    lines: list[LineSnapshot]
    allocations: list[AllocationSnapshot]
    ship_complete: bool = False  # the order's flag, so packing needs no copy of the order


@dataclass
class Touch:
    """What a command did to one order so far: becomes its result when the command ends."""

    change: str
    details: list[str] = field(default_factory=list)
    kind: str | None = None  # fixed event type, else derived from what happened
    allocated: bool = False
    released: bool = False
    shipment_id: str | None = None

    def event_type(self) -> str:
        if self.kind:
            return self.kind
        if self.allocated and self.released:
            return "OrderReallocated"
        if self.released:
            return "AllocationReleased"
        if self.allocated:
            return "OrderAllocated"
        return "OrderBackordered"


class ChangeRecord:
    """Rows changed by the book (for the writer) and the results of its commands (to publish)."""

    def __init__(self) -> None:
        self.positions: set[PositionKey] = set()
        self.orders: dict[str, Order] = {}
        self.lines: dict[tuple[str, str], OrderLine] = {}
        self.allocations: list[Allocation] = []  # in the order they were first changed
        self._allocation_ids: set[int] = set()
        self.locations: dict[str, Location] = {}
        self.policies: dict[str, Policy] = {}
        self.availability: set[str] = set()  # SKUs whose available-to-promise may have changed
        self.results: list[OrderResult] = []
        self._touched: dict[str, Touch] = {}

    # ----------------------------------------------------------------- rows
    def line(self, line: OrderLine) -> None:
        self.lines[(line.order_id, line.line_id)] = line

    def allocation(self, a: Allocation) -> None:
        key = id(a)
        if key not in self._allocation_ids:
            self._allocation_ids.add(key)
            self.allocations.append(a)

    def position(self, p: StockPosition) -> None:
        self.positions.add(p.key)
        self.availability.add(p.sku)

    def order(self, order: Order) -> None:
        self.orders[order.order_id] = order

    # ----------------------------------------------------------------- results
    def touch(self, order: Order, change: str, detail: str | None = None, *, kind: str | None = None,
              shipment_id: str | None = None) -> Touch:
        t = self._touched.get(order.order_id)
        if t is None:
            t = self._touched[order.order_id] = Touch(change)
        if kind and t.kind is None:
            t.kind = kind
        if detail and detail not in t.details:
            t.details.append(detail)
        if shipment_id:
            t.shipment_id = shipment_id
        return t

    def emit(self, orders: Mapping[str, Order]) -> None:
        """One result per order touched by the command just applied, with its snapshot now; the
        order's version grows by one."""
        for order_id, t in self._touched.items():
            order = orders[order_id]
            order.version += 1
            self.orders[order_id] = order
            lines = [
                LineSnapshot(ln.line_id, ln.sku, ln.qty, ln.allocated, ln.backordered, ln.packed, ln.shipped,
                             ln.cancelled, ln.on_hold, ln.backorder_reason)
                for ln in order.lines.values()
            ]
            allocs = [AllocationSnapshot(a, a.status, a.qty, a.shipment_id) for a in order.live_allocations()]
            self.results.append(OrderResult(
                order_id, t.event_type(), t.change, "; ".join(t.details) or None, t.shipment_id, order.version,
                lines, allocs, order.ship_complete,
            ))
        self._touched = {}
