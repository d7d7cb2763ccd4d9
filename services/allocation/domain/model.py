"""The allocation service's model: locations, stock positions, orders, lines, allocations.

Pure data with the few rules that belong to one object; the rules that span objects live in
``book.py`` (the order/line aggregate and its commands), ``planner.py`` (where stock comes from),
``queue.py`` (the fair backorder queue), ``availability.py`` (available-to-promise) and
``changes.py`` (what a command changed, for the writer and the published results).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

LIVE = ("allocated", "packed")
PositionKey = tuple[str, str, str, str]  # (sku, location_id, bin, lot)


@dataclass
class Location:
    location_id: str
    name: str
    country: str
    kind: str = "warehouse"
    lat: float | None = None
    lon: float | None = None
    active: bool = True
    priority: int = 0
    ships_to: tuple[str, ...] = ()
    channels: tuple[str, ...] | None = None
    pickup: bool = False

    def ships_to_country(self, country: str) -> bool:
        """Empty ``ships_to`` means the location ships within its own country only."""
        return country in self.ships_to if self.ships_to else country == self.country

    def serves_channel(self, channel: str) -> bool:
        return self.channels is None or channel in self.channels


@dataclass(eq=False)
class StockPosition:
    """(sku, location, bin, lot) with the on-hand mirror from inventory and what we reserve there."""

    sku: str
    location_id: str
    bin: str
    lot: str
    on_hand: int = 0
    reserved: int = 0
    seq: int = 0
    sellable: bool = True
    received_at: datetime | None = None
    expires_at: datetime | None = None

    @property
    def key(self) -> PositionKey:
        return (self.sku, self.location_id, self.bin, self.lot)

    @property
    def free(self) -> int:
        free = self.on_hand - self.reserved
        return free if free > 0 else 0  # not max(0, ...): read for every position of every plan

    def expired(self, now: datetime) -> bool:
        """A lot is past its expiry from the instant ``expires_at`` on; ``now`` is given by the
        caller (the book's clock), never read here."""
        return self.expires_at is not None and self.expires_at <= now


def pick_key(p: StockPosition) -> tuple[object, ...]:
    """Sort key for taking stock inside one location: FEFO, then FIFO, then bin, then lot."""
    exp = p.expires_at.timestamp() if p.expires_at else math.inf
    rec = p.received_at.timestamp() if p.received_at else math.inf
    return (exp, rec, p.bin, p.lot)


@dataclass(eq=False)
class Allocation:
    """Units of one order line held at one stock position."""

    allocation_id: int | None  # None until stored; ids grow with time (recency)
    order_id: str
    line_id: str
    sku: str
    location_id: str
    bin: str
    lot: str
    qty: int
    status: str = "allocated"  # allocated | packed | shipped | released
    shipment_id: str | None = None
    rule: str = ""
    created_at: datetime | None = None
    local_seq: int = 0  # creation order inside one book, for allocations not stored yet
    manual: bool = False  # made by a hand transfer (exempt from the queue order)

    @property
    def live(self) -> bool:
        return self.status in LIVE

    @property
    def position_key(self) -> PositionKey:
        return (self.sku, self.location_id, self.bin, self.lot)

    def recency(self) -> tuple[int, int]:
        """Larger is newer: stored ids first, then the ones made in this book."""
        return (1, self.local_seq) if self.allocation_id is None else (0, self.allocation_id)


@dataclass(eq=False)
class OrderLine:
    order: Order
    line_id: str
    sku: str
    qty: int
    backordered: int = 0
    cancelled: int = 0
    on_hold: bool = False
    backorder_reason: str | None = None
    allocations: list[Allocation] = field(default_factory=list)

    @property
    def order_id(self) -> str:
        return self.order.order_id

    def _sum(self, status: str) -> int:
        return sum(a.qty for a in self.allocations if a.status == status)

    @property
    def allocated(self) -> int:
        return self._sum("allocated")

    @property
    def packed(self) -> int:
        return self._sum("packed")

    @property
    def shipped(self) -> int:
        return self._sum("shipped")

    @property
    def in_queue(self) -> bool:
        """An open backorder the fair queue may fill."""
        return self.backordered > 0 and not self.on_hold

    def queue_key(self) -> tuple[object, ...]:
        """This line's place in the fair queue (see ``queue_key``)."""
        order = self.order
        return queue_key(order.priority, order.placed_at, order.order_id, self.line_id)

    def conserved(self) -> bool:
        return self.allocated + self.backordered + self.packed + self.shipped + self.cancelled == self.qty


@dataclass(eq=False)
class Order:
    order_id: str
    channel: str
    placed_at: datetime
    priority: int = 0
    ship_complete: bool = False
    pickup_location_id: str | None = None
    country: str = ""
    lat: float | None = None
    lon: float | None = None
    version: int = 0
    location_choice: str | None = None  # channel rules' locations, JSON as sent (see location_rules.py)
    hold: str | None = None  # held by staff (the reason): nothing more allocated, nothing packed (order_holds.py)
    lines: dict[str, OrderLine] = field(default_factory=dict)

    def live_allocations(self) -> list[Allocation]:
        return [a for line in self.lines.values() for a in line.allocations if a.live]


def queue_key(priority: int, placed_at: datetime, order_id: str, line_id: str) -> tuple[object, ...]:
    """The fair queue (SPEC 3.1.5), its one definition: priority desc, placed_at asc, order_id, line_id.

    Smaller comes first. The SQL that reads the queue in this order (``adapters/queries.py``:
    ``QUEUE_ORDER``, ``QUEUE_KEY``) is pinned to this function by
    ``tests/integration/test_allocation_queries.py``."""
    return (-priority, placed_at, order_id, line_id)


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    r = 6371.0
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a))
