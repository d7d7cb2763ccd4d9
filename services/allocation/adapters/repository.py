"""Load a slice of allocation state under row locks, and write a book's changes back in bulk.

Locking (why several allocation processes never oversell or lose an update): every transaction
first locks the ``skus`` rows of the SKUs it touches, in sorted order (``FOR UPDATE``), then the
``orders`` rows of the orders it touches, in sorted order, and only then reads positions, queues,
lines and allocations. Anything that changes a position, a reservation or a backorder of a SKU
holds that SKU's lock; anything that changes an order holds the order's lock. A slice that grows
while a batch runs (``SliceTooSmall``) may lock out of order; PostgreSQL then reports a deadlock,
which the consumer retries as a transient error.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.allocation.domain.book import AllocationBook, PositionKey, QueueSlice, SliceTooSmall
from services.allocation.domain.model import Allocation, Location, Order, OrderLine, StockPosition
from services.allocation.domain.policy import Policy, policy_from_json

QUEUE_FIRST_LOAD = 2000


@dataclass
class Need:
    """What a batch is expected to touch (more may be asked for by the book)."""

    skus: set[str] = field(default_factory=set)
    queues: set[str] = field(default_factory=set)
    orders: set[str] = field(default_factory=set)  # lock and load
    orders_with_skus: set[str] = field(default_factory=set)  # also lock their SKUs and load their queues
    positions: set[PositionKey] = field(default_factory=set)
    locations: set[str] = field(default_factory=set)
    all_queues: bool = False  # every SKU with an open backorder (policy change)
    # Units arriving per SKU in this batch: each fillable backorder line takes at least one, so
    # the first queue load covers them all and a big receipt is not replayed at 2k, 8k, 32k.
    queue_hint: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_missing(cls, exc: SliceTooSmall) -> Need:
        return cls(skus=set(exc.skus), queues=set(exc.queues), orders=set(exc.orders),
                   positions=set(exc.positions), locations=set(exc.locations))


class Slice:
    """The rows a transaction holds locks for; builds a fresh book for every (re)run."""

    def __init__(self) -> None:
        self.skus: set[str] = set()
        self.locations: list[tuple[Any, ...]] | None = None
        self.policies: list[Policy] | None = None
        self.positions: dict[PositionKey, tuple[Any, ...]] = {}
        self.orders: dict[str, tuple[Any, ...]] = {}
        self.lines: dict[str, list[tuple[Any, ...]]] = {}
        self.allocations: dict[str, list[tuple[Any, ...]]] = {}
        self.queue_limits: dict[str, int] = {}
        self.queue_hints: dict[str, int] = {}
        self.queues: dict[str, QueueSlice] = {}
        self.position_allocs: set[PositionKey] = set()
        self.location_allocs: set[str] = set()
        self.looked_up_orders: set[str] = set()
        self.round_trips = 0

    # ------------------------------------------------------------------ loading
    async def extend(self, conn: AsyncConnection, need: Need) -> None:
        if self.locations is None:
            await self._load_locations_and_policies(conn)
        for sku, units in need.queue_hint.items():
            self.queue_hints[sku] = self.queue_hints.get(sku, 0) + units
        skus = set(need.skus)
        queues = set(need.queues)
        orders = set(need.orders) | set(need.orders_with_skus)
        new_with_skus = [o for o in need.orders_with_skus if o not in self.orders]
        if new_with_skus:
            rows = await self._q(conn, "SELECT DISTINCT sku FROM order_lines WHERE order_id = ANY(:o)", o=new_with_skus)
            order_skus = {r[0] for r in rows}
            skus |= order_skus
            queues |= order_skus
        if need.all_queues:
            rows = await self._q(conn, "SELECT DISTINCT sku FROM order_lines WHERE backordered > 0 AND NOT on_hold")
            skus |= {r[0] for r in rows}
            queues |= {r[0] for r in rows}
        locs = need.locations - self.location_allocs
        if locs:
            rows = await self._q(
                conn,
                "SELECT sku FROM positions WHERE location_id = ANY(:l) AND on_hand > 0"
                " UNION SELECT sku FROM allocations WHERE location_id = ANY(:l) AND status = 'allocated'",
                l=sorted(locs),
            )
            skus |= {r[0] for r in rows}
            queues |= {r[0] for r in rows}
        skus |= {k[0] for k in need.positions}
        queues -= {s for s in queues if s in self.queues and self.queues[s].complete and s not in need.queues}
        await self._lock_skus(conn, skus | queues)
        if locs:
            rows = await self._q(
                conn, "SELECT DISTINCT order_id FROM allocations WHERE location_id = ANY(:l) AND status = 'allocated'",
                l=sorted(locs))
            orders |= {r[0] for r in rows}
        positions = need.positions - self.position_allocs
        if positions:
            ps = sorted(positions)
            rows = await self._q(
                conn,
                "SELECT DISTINCT a.order_id FROM allocations a JOIN unnest(CAST(:s AS text[]), CAST(:l AS text[]),"
                " CAST(:b AS text[]), CAST(:t AS text[])) AS k(s, l, b, t) ON a.sku = k.s AND a.location_id = k.l"
                " AND a.bin = k.b AND a.lot = k.t WHERE a.status = 'allocated'",
                s=[p[0] for p in ps], l=[p[1] for p in ps], b=[p[2] for p in ps], t=[p[3] for p in ps],
            )
            orders |= {r[0] for r in rows}
        queue_skus = sorted(s for s in queues if not (s in self.queues and self.queues[s].complete))
        if queue_skus:
            orders |= await self._load_queues(conn, queue_skus)
        await self._load_orders(conn, orders)
        self.position_allocs |= positions
        self.location_allocs |= locs

    async def _q(self, conn: AsyncConnection, sql: str, **params: Any) -> list[Any]:
        self.round_trips += 1
        result = await conn.execute(text(sql), params)
        return list(result.all()) if result.returns_rows else []

    async def _load_locations_and_policies(self, conn: AsyncConnection) -> None:
        self.locations = await self._q(
            conn, "SELECT location_id, name, kind, country, lat, lon, active, priority, ships_to, channels, pickup"
            " FROM locations")
        rows = await self._q(conn, "SELECT document, version FROM policies")
        self.policies = [policy_from_json({**doc, "version": version}) for doc, version in rows]

    async def _lock_skus(self, conn: AsyncConnection, skus: set[str]) -> None:
        new = sorted(skus - self.skus)
        if not new:
            return
        await self._q(conn, "INSERT INTO skus (sku) SELECT unnest(CAST(:s AS text[])) ON CONFLICT DO NOTHING", s=new)
        await self._q(conn, "SELECT sku FROM skus WHERE sku = ANY(:s) ORDER BY sku FOR UPDATE", s=new)
        rows = await self._q(
            conn, "SELECT sku, location_id, bin, lot, on_hand, reserved, seq, sellable, received_at, expires_at"
            " FROM positions WHERE sku = ANY(:s)", s=new)
        for r in rows:
            self.positions[(r[0], r[1], r[2], r[3])] = tuple(r)
        self.skus |= set(new)

    async def _load_queues(self, conn: AsyncConnection, skus: list[str]) -> set[str]:
        limits = []
        for s in skus:
            limit = self.queue_limits.get(s)
            limit = max(QUEUE_FIRST_LOAD, self.queue_hints.get(s, 0) + 1) if limit is None else limit * 4
            self.queue_limits[s] = limit
            limits.append(limit)
        rows = await self._q(
            conn,
            "SELECT k.sku, q.order_id, q.line_id, q.priority, q.placed_at, k.lim FROM unnest(CAST(:s AS text[]),"
            " CAST(:n AS int[])) AS k(sku, lim) CROSS JOIN LATERAL (SELECT l.order_id, l.line_id, l.priority,"
            " l.placed_at FROM order_lines l WHERE l.sku = k.sku AND l.backordered > 0 AND NOT l.on_hold"
            " ORDER BY l.priority DESC, l.placed_at, l.order_id, l.line_id LIMIT k.lim) q",
            s=skus, n=limits,
        )
        by_sku: dict[str, list[Any]] = {s: [] for s in skus}
        for r in rows:
            by_sku[r[0]].append(r)
        orders: set[str] = set()
        for s, entries in by_sku.items():
            complete = len(entries) < self.queue_limits[s]
            boundary = None
            if not complete:
                last = entries[-1]
                boundary = (-last[3], last[4], last[1], last[2])
            self.queues[s] = QueueSlice(complete, boundary)
            orders |= {e[1] for e in entries}
        return orders

    async def _load_orders(self, conn: AsyncConnection, order_ids: Iterable[str]) -> None:
        ids = sorted(set(order_ids) - self.looked_up_orders)
        if not ids:
            return
        self.looked_up_orders |= set(ids)
        rows = await self._q(
            conn, "SELECT order_id, channel, placed_at, priority, ship_complete, pickup_location_id, country, lat, lon,"
            " version FROM orders WHERE order_id = ANY(:o) ORDER BY order_id FOR UPDATE", o=ids)
        found = [r[0] for r in rows]
        for r in rows:
            self.orders[r[0]] = tuple(r)
            self.lines[r[0]] = []
            self.allocations[r[0]] = []
        if not found:
            return
        for r in await self._q(
            conn, "SELECT order_id, line_id, sku, qty, backordered, cancelled, on_hold, backorder_reason"
            " FROM order_lines WHERE order_id = ANY(:o) ORDER BY order_id, line_id", o=found):
            self.lines[r[0]].append(tuple(r))
        # Shipped units too: a line's shipped quantity is the sum of its shipped allocations, so a
        # book without them would rebuild a partly shipped line as all zeros (and write it back).
        # Released ones hold nothing and are left out.
        for r in await self._q(
            conn, "SELECT allocation_id, order_id, line_id, sku, location_id, bin, lot, qty, status, shipment_id, rule,"
            " created_at, manual FROM allocations WHERE order_id = ANY(:o) AND status IN ('allocated', 'packed',"
            " 'shipped') ORDER BY allocation_id",
            o=found):
            self.allocations[r[1]].append(tuple(r))

    # ------------------------------------------------------------------ building a book
    def build(self, now: datetime) -> AllocationBook:
        locations = [
            Location(location_id=r[0], name=r[1], kind=r[2], country=r[3], lat=r[4], lon=r[5], active=r[6],
                     priority=r[7], ships_to=tuple(r[8] or ()), channels=None if r[9] is None else tuple(r[9]),
                     pickup=r[10])
            for r in self.locations or []
        ]
        positions = [
            StockPosition(sku=r[0], location_id=r[1], bin=r[2], lot=r[3], on_hand=r[4], reserved=r[5], seq=r[6],
                          sellable=r[7], received_at=r[8], expires_at=r[9])
            for r in self.positions.values()
        ]
        orders = []
        for oid, r in self.orders.items():
            order = Order(order_id=r[0], channel=r[1], placed_at=r[2], priority=r[3], ship_complete=r[4],
                          pickup_location_id=r[5], country=r[6], lat=r[7], lon=r[8], version=r[9])
            for lr in self.lines[oid]:
                order.lines[lr[1]] = OrderLine(order, lr[1], lr[2], lr[3], backordered=lr[4], cancelled=lr[5],
                                               on_hold=lr[6], backorder_reason=lr[7])
            for ar in self.allocations[oid]:
                line = order.lines.get(ar[2])
                if line is not None:
                    line.allocations.append(Allocation(
                        allocation_id=ar[0], order_id=ar[1], line_id=ar[2], sku=ar[3], location_id=ar[4], bin=ar[5],
                        lot=ar[6], qty=ar[7], status=ar[8], shipment_id=ar[9], rule=ar[10], created_at=ar[11],
                        manual=ar[12]))
            orders.append(order)
        return AllocationBook(
            locations=locations, policies=self.policies or [], positions=positions, orders=orders, skus=self.skus,
            queues=dict(self.queues), position_allocations_loaded=self.position_allocs,
            location_allocations_loaded=self.location_allocs, now=now,
        )


# ---------------------------------------------------------------------- writing
async def assign_allocation_ids(conn: AsyncConnection, book: AllocationBook) -> None:
    """New allocations get ids from the table's sequence, in the order they were made."""
    new = sorted((a for a in book.changed_allocations if a.allocation_id is None), key=lambda a: a.local_seq)
    if not new:
        return
    rows = await conn.execute(
        text("SELECT nextval(pg_get_serial_sequence('allocations', 'allocation_id')) FROM generate_series(1, :n)"),
        {"n": len(new)},
    )
    for a, allocation_id in zip(new, sorted(r[0] for r in rows), strict=True):
        a.allocation_id = allocation_id


async def write_changes(conn: AsyncConnection, book: AllocationBook) -> int:
    """Write everything the book changed with one bulk statement per table; return statements run."""
    n = 0
    if book.changed_locations:
        locs = list(book.changed_locations.values())
        await conn.execute(
            text(
                "INSERT INTO locations (location_id, name, kind, country, lat, lon, active, priority, ships_to, channels,"
                " pickup) SELECT l.id, l.name, l.kind, l.country, l.lat, l.lon, l.active, l.priority,"
                " CAST(l.ships_to AS text[]), CAST(l.channels AS text[]), l.pickup"
                " FROM unnest(CAST(:id AS text[]), CAST(:name AS text[]), CAST(:kind AS text[]),"
                " CAST(:country AS text[]), CAST(:lat AS float8[]), CAST(:lon AS float8[]), CAST(:active AS bool[]),"
                " CAST(:priority AS int[]), CAST(:ships_to AS text[]), CAST(:channels AS text[]), CAST(:pickup AS bool[]))"
                " AS l(id, name, kind, country, lat, lon, active, priority, ships_to, channels, pickup)"
                " ON CONFLICT (location_id) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind,"
                " country = EXCLUDED.country, lat = EXCLUDED.lat, lon = EXCLUDED.lon, active = EXCLUDED.active,"
                " priority = EXCLUDED.priority, ships_to = EXCLUDED.ships_to, channels = EXCLUDED.channels,"
                " pickup = EXCLUDED.pickup, updated_at = now()"
            ),
            {
                "id": [x.location_id for x in locs], "name": [x.name for x in locs], "kind": [x.kind for x in locs],
                "country": [x.country for x in locs], "lat": [x.lat for x in locs], "lon": [x.lon for x in locs],
                "active": [x.active for x in locs], "priority": [x.priority for x in locs],
                # arrays of arrays do not unnest into rows: pass each list as a text literal '{a,b}'
                "ships_to": [_pg_array(x.ships_to) for x in locs],
                "channels": [None if x.channels is None else _pg_array(x.channels) for x in locs],
                "pickup": [x.pickup for x in locs],
            },
        )
        n += 1
    if book.changed_positions:
        ps = [book.positions[k] for k in sorted(book.changed_positions)]
        await conn.execute(
            text(
                "INSERT INTO positions (sku, location_id, bin, lot, on_hand, reserved, seq, sellable, received_at,"
                " expires_at) SELECT * FROM unnest(CAST(:s AS text[]), CAST(:l AS text[]), CAST(:b AS text[]),"
                " CAST(:t AS text[]), CAST(:oh AS int[]), CAST(:r AS int[]), CAST(:q AS bigint[]), CAST(:se AS bool[]),"
                " CAST(:ra AS timestamptz[]), CAST(:ea AS timestamptz[]))"
                " ON CONFLICT (sku, location_id, bin, lot) DO UPDATE SET on_hand = EXCLUDED.on_hand,"
                " reserved = EXCLUDED.reserved, seq = EXCLUDED.seq, sellable = EXCLUDED.sellable,"
                " received_at = EXCLUDED.received_at, expires_at = EXCLUDED.expires_at"
            ),
            {
                "s": [p.sku for p in ps], "l": [p.location_id for p in ps], "b": [p.bin for p in ps],
                "t": [p.lot for p in ps], "oh": [p.on_hand for p in ps], "r": [p.reserved for p in ps],
                "q": [p.seq for p in ps], "se": [p.sellable for p in ps], "ra": [p.received_at for p in ps],
                "ea": [p.expires_at for p in ps],
            },
        )
        n += 1
    if book.changed_orders:
        os_ = list(book.changed_orders.values())
        await conn.execute(
            text(
                "INSERT INTO orders (order_id, channel, placed_at, priority, ship_complete, pickup_location_id, country,"
                " lat, lon, version) SELECT * FROM unnest(CAST(:o AS text[]), CAST(:c AS text[]),"
                " CAST(:pa AS timestamptz[]), CAST(:p AS int[]), CAST(:sc AS bool[]), CAST(:pl AS text[]),"
                " CAST(:co AS text[]), CAST(:la AS float8[]), CAST(:lo AS float8[]), CAST(:v AS int[]))"
                " ON CONFLICT (order_id) DO UPDATE SET priority = EXCLUDED.priority, version = EXCLUDED.version,"
                " updated_at = now()"
            ),
            {
                "o": [x.order_id for x in os_], "c": [x.channel for x in os_], "pa": [x.placed_at for x in os_],
                "p": [x.priority for x in os_], "sc": [x.ship_complete for x in os_],
                "pl": [x.pickup_location_id for x in os_], "co": [x.country for x in os_],
                "la": [x.lat for x in os_], "lo": [x.lon for x in os_], "v": [x.version for x in os_],
            },
        )
        n += 1
    if book.changed_lines:
        ls = list(book.changed_lines.values())
        await conn.execute(
            text(
                "INSERT INTO order_lines (order_id, line_id, sku, qty, allocated, backordered, packed, shipped,"
                " cancelled, on_hold, backorder_reason, priority, placed_at) SELECT * FROM unnest("
                " CAST(:o AS text[]), CAST(:l AS text[]), CAST(:s AS text[]), CAST(:q AS int[]), CAST(:a AS int[]),"
                " CAST(:b AS int[]), CAST(:p AS int[]), CAST(:sh AS int[]), CAST(:c AS int[]), CAST(:h AS bool[]),"
                " CAST(:r AS text[]), CAST(:pr AS int[]), CAST(:pa AS timestamptz[]))"
                " ON CONFLICT (order_id, line_id) DO UPDATE SET qty = EXCLUDED.qty, allocated = EXCLUDED.allocated,"
                " backordered = EXCLUDED.backordered, packed = EXCLUDED.packed, shipped = EXCLUDED.shipped,"
                " cancelled = EXCLUDED.cancelled, on_hold = EXCLUDED.on_hold,"
                " backorder_reason = EXCLUDED.backorder_reason, priority = EXCLUDED.priority"
            ),
            {
                "o": [x.order_id for x in ls], "l": [x.line_id for x in ls], "s": [x.sku for x in ls],
                "q": [x.qty for x in ls], "a": [x.allocated for x in ls], "b": [x.backordered for x in ls],
                "p": [x.packed for x in ls], "sh": [x.shipped for x in ls], "c": [x.cancelled for x in ls],
                "h": [x.on_hold for x in ls], "r": [x.backorder_reason for x in ls],
                "pr": [x.order.priority for x in ls], "pa": [x.order.placed_at for x in ls],
            },
        )
        n += 1
    if book.changed_allocations:
        al = book.changed_allocations
        await conn.execute(
            text(
                "INSERT INTO allocations (allocation_id, order_id, line_id, sku, location_id, bin, lot, qty, status,"
                " shipment_id, rule, manual, created_at) SELECT * FROM unnest(CAST(:id AS bigint[]), CAST(:o AS text[]),"
                " CAST(:l AS text[]), CAST(:s AS text[]), CAST(:lo AS text[]), CAST(:b AS text[]), CAST(:t AS text[]),"
                " CAST(:q AS int[]), CAST(:st AS text[]), CAST(:sh AS text[]), CAST(:r AS text[]), CAST(:m AS bool[]),"
                " CAST(:ca AS timestamptz[]))"
                " ON CONFLICT (allocation_id) DO UPDATE SET qty = EXCLUDED.qty, status = EXCLUDED.status,"
                " shipment_id = EXCLUDED.shipment_id, updated_at = now()"
            ),
            {
                "id": [a.allocation_id for a in al], "o": [a.order_id for a in al], "l": [a.line_id for a in al],
                "s": [a.sku for a in al], "lo": [a.location_id for a in al], "b": [a.bin for a in al],
                "t": [a.lot for a in al], "q": [a.qty for a in al], "st": [a.status for a in al],
                "sh": [a.shipment_id for a in al], "r": [a.rule for a in al], "m": [a.manual for a in al],
                "ca": [a.created_at or book.now for a in al],
            },
        )
        n += 1
    if book.changed_policies:
        import orjson

        pols = list(book.changed_policies.values())
        await conn.execute(
            text(
                "INSERT INTO policies (channel, document, version) SELECT * FROM unnest(CAST(:c AS text[]),"
                " CAST(:d AS jsonb[]), CAST(:v AS int[])) ON CONFLICT (channel) DO UPDATE SET"
                " document = EXCLUDED.document, version = EXCLUDED.version, updated_at = now()"
            ),
            {"c": [p.channel for p in pols], "d": [orjson.dumps(p.to_json()).decode() for p in pols],
             "v": [p.version for p in pols]},
        )
        n += 1
    if book.availability_changed:
        await conn.execute(
            text("UPDATE skus SET availability_dirty = true WHERE sku = ANY(:s) AND NOT availability_dirty"),
            {"s": sorted(book.availability_changed)},
        )
        n += 1
    return n


def _pg_array(items: Iterable[str]) -> str:
    return "{" + ",".join('"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"' for s in items) + "}"


# ---------------------------------------------------------------------- changes that came early
async def keep_early_events(conn: AsyncConnection, events: list[tuple[str, uuid.UUID, bytes]]) -> None:
    """Store (order_id, event_id, encoded envelope) of changes whose order is not placed yet."""
    await conn.execute(
        text("INSERT INTO early_order_events (order_id, event_id, envelope) SELECT * FROM unnest("
             "CAST(:o AS text[]), CAST(:e AS uuid[]), CAST(:v AS bytea[]))"),
        {"o": [e[0] for e in events], "e": [e[1] for e in events], "v": [e[2] for e in events]},
    )


async def take_early_events(conn: AsyncConnection, order_ids: list[str]) -> list[tuple[str, bytes]]:
    """Remove and return, oldest first, the kept changes of these orders (the caller's transaction
    applies them; a rollback keeps them)."""
    rows = await conn.execute(
        text("DELETE FROM early_order_events WHERE order_id = ANY(:o) RETURNING id, order_id, envelope"),
        {"o": order_ids},
    )
    return [(r[1], bytes(r[2])) for r in sorted(rows.all())]
