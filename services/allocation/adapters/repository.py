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

import os
import random
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from functools import cached_property
from operator import attrgetter
from typing import Any, NamedTuple

import orjson
from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.allocation.adapters.queries import QUEUE_ORDER
from services.allocation.domain.book import AllocationBook, PositionKey, QueueSlice, SliceTooSmall
from services.allocation.domain.model import Allocation, Location, Order, OrderLine, StockPosition, queue_key
from services.allocation.domain.policy import Policy, policy_from_json

# Open backorders of one SKU loaded per transaction (OMS_QUEUE_CHUNK): a longer queue is filled
# chunk by chunk (``AllocationBook.fill_backorders``, service_layer/refill.py), so a receipt for a
# queue of 100,000 lines holds no more than this many lines (and their orders) in memory at once:
# ~3.5 MB per 1,000 lines at the peak (docs/benchmark.md, seventh wave).
QUEUE_CHUNK = int(os.environ.get("OMS_QUEUE_CHUNK", "2000"))

# The one way to mark SKUs for the availability feed: the counter tells the feed that a change
# came after it read the SKU (service_layer/availability.py ``publish_dirty``; migration 0007).
_MARK = "UPDATE skus SET availability_dirty = true, availability_changes = availability_changes + 1"
MARK_AVAILABILITY_CHANGED = text(_MARK + " WHERE sku = ANY(:s)")
MARK_ALL_AVAILABILITY_CHANGED = text(_MARK)  # a policy change: every SKU's figures may move
# (``write_changes`` sets the new version of the SKUs' positions with it: migration 0009.)


# Rows as loaded, by column name. Positions, orders and allocations are read as the domain
# dataclasses' own fields: the SELECT lists them in declaration order (``_fields_of``), so
# ``StockPosition(*row)`` puts each column into the field of its name (and runs at C speed).
def _fields_of(cls: type, *, until: str | None = None, constants: Mapping[str, str] | None = None) -> str:
    names = []
    for f in fields(cls):
        if f.name == until:
            break
        names.append(f"{constants[f.name]} AS {f.name}" if constants and f.name in constants else f.name)
    return ", ".join(names)


FieldsRow = Any  # a row of ``_fields_of(cls)``: a sequence of cls's fields, named as them
POSITION_FIELDS = _fields_of(StockPosition)
ORDER_FIELDS = _fields_of(Order, until="lines")
ALLOCATION_FIELDS = _fields_of(Allocation, constants={"local_seq": "0"})  # local_seq: the book's own counter


class LocationRow(NamedTuple):
    location_id: str
    name: str
    kind: str
    country: str
    lat: float | None
    lon: float | None
    active: bool
    priority: int
    ships_to: list[str] | None
    channels: list[str] | None
    pickup: bool


class LineRow(NamedTuple):
    order_id: str
    line_id: str
    sku: str
    qty: int
    backordered: int
    cancelled: int
    on_hold: bool
    backorder_reason: str | None


class QueueRow(NamedTuple):
    sku: str
    order_id: str
    line_id: str
    priority: int
    placed_at: datetime


class PositionsCache:
    """The positions of recently locked SKUs, kept by this process with the ``positions_version``
    their ``skus`` row had (migration 0009): a transaction that locks a SKU whose row still has
    that version takes its positions from here instead of from the table. Every writer of
    positions sets a new random version under the SKU's lock, so a SKU written by another process
    (or rolled back here) never matches what this one kept. Loading all positions of every locked
    SKU was an order batch's largest read (docs/benchmark.md, eleventh wave).

    Bounded: past ``limit`` SKUs the quarter kept longest ago is dropped (OMS_POSITIONS_CACHE_SKUS;
    `steady`'s 10,000 SKUs at 5 locations added 13-15 MB to allocation's peak resident memory)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._kept: dict[str, tuple[int, list[FieldsRow]]] = {}

    def get(self, sku: str, version: int | None) -> list[FieldsRow] | None:
        """The positions of ``sku`` if what is kept has ``version`` (None: never kept)."""
        if version is None:
            return None
        kept = self._kept.get(sku)
        return kept[1] if kept is not None and kept[0] == version else None

    def put(self, version: int, positions: Mapping[str, list[FieldsRow]]) -> None:
        """Keep ``positions`` (every position of each SKU) as of ``version``."""
        if self.limit <= 0:
            return
        kept = self._kept
        for sku, rows in positions.items():
            kept.pop(sku, None)  # re-inserted last: the SKUs used most stay longest
            kept[sku] = (version, rows)
        if len(kept) > self.limit:
            for sku in list(kept)[: len(kept) - self.limit * 3 // 4]:
                del kept[sku]

    def __len__(self) -> int:
        return len(self._kept)


POSITIONS_CACHE = PositionsCache(int(os.environ.get("OMS_POSITIONS_CACHE_SKUS", "20000")))
_POSITION_ROW = attrgetter(*(f.name for f in fields(StockPosition)))  # a StockPosition as its row


def _columns(row: type[tuple[Any, ...]]) -> str:
    return ", ".join(row._fields)  # type: ignore[attr-defined]


_LOCATIONS_AND_POLICIES = (
    f"SELECT (SELECT COALESCE(json_agg(json_build_array({_columns(LocationRow)})), '[]') FROM locations)::text,"
    " (SELECT COALESCE(json_agg(json_build_array(document, version)), '[]') FROM policies)::text")


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

    @classmethod
    def from_missing(cls, exc: SliceTooSmall) -> Need:
        return cls(skus=set(exc.skus), queues=set(exc.queues), orders=set(exc.orders),
                   positions=set(exc.positions), locations=set(exc.locations))


class Slice:
    """The rows a transaction holds locks for; builds a fresh book for every (re)run."""

    def __init__(self, cache: PositionsCache = POSITIONS_CACHE) -> None:
        self.cache = cache
        self.skus: set[str] = set()
        self.locations: list[LocationRow] | None = None
        self.policies: list[Policy] | None = None
        self.positions: dict[PositionKey, FieldsRow] = {}  # of StockPosition
        self.rows_by_sku: dict[str, list[FieldsRow]] = {}  # the same rows, per locked SKU
        self.orders: dict[str, FieldsRow] = {}  # of Order
        self.lines: dict[str, list[LineRow]] = {}
        self.allocations: dict[str, list[FieldsRow]] = {}  # of Allocation
        self.queue_limits: dict[str, int] = {}
        self.filling: set[str] = set()  # SKUs whose queue is being filled chunk by chunk
        self.queues: dict[str, QueueSlice] = {}
        self.position_allocs: set[PositionKey] = set()
        self.location_allocs: set[str] = set()
        self.looked_up_orders: set[str] = set()
        self.round_trips = 0

    # ------------------------------------------------------------------ loading
    async def extend(self, conn: AsyncConnection, need: Need) -> None:
        if self.locations is None:
            await self._load_locations_and_policies(conn)
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
            backordered_skus = {r[0] for r in rows}
            skus |= backordered_skus
            queues |= backordered_skus
        locs = need.locations - self.location_allocs
        if locs:
            rows = await self._q(
                conn,
                "SELECT sku FROM positions WHERE location_id = ANY(:l) AND on_hand > 0"
                " UNION SELECT sku FROM allocations WHERE location_id = ANY(:l) AND status = 'allocated'",
                l=sorted(locs),
            )
            location_skus = {r[0] for r in rows}
            skus |= location_skus
            queues |= location_skus
        skus |= {sku for sku, _, _, _ in need.positions}
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
            skus_, locs_, bins_, lots_ = (list(column) for column in zip(*ps, strict=True))
            rows = await self._q(
                conn,
                "SELECT DISTINCT a.order_id FROM allocations a JOIN unnest(CAST(:s AS text[]), CAST(:l AS text[]),"
                " CAST(:b AS text[]), CAST(:t AS text[])) AS k(s, l, b, t) ON a.sku = k.s AND a.location_id = k.l"
                " AND a.bin = k.b AND a.lot = k.t WHERE a.status = 'allocated'",
                s=skus_, l=locs_, b=bins_, t=lots_,
            )
            orders |= {r[0] for r in rows}
        queue_skus = sorted(s for s in queues if not (s in self.queues and self.queues[s].complete))
        if queue_skus:
            orders |= await self._load_queues(conn, queue_skus)
        await self._load_orders(conn, orders)
        self.position_allocs |= positions
        self.location_allocs |= locs

    async def _q(self, conn: AsyncConnection, sql: str, **params: Any) -> list[Any]:
        """The rows of one statement. In loops over many rows read columns by position: a Row's
        attribute costs ~0.5 us (SQLAlchemy 2.1), its index ~0.04 us, and a batch reads thousands."""
        self.round_trips += 1
        result = await conn.execute(text(sql), params)
        return list(result.all()) if result.returns_rows else []

    async def _load_locations_and_policies(self, conn: AsyncConnection) -> None:
        # One round trip for both (each batch reads them): every location's columns as a JSON
        # array in LocationRow's order, every policy as [document, version].
        [(locations, policies)] = await self._q(conn, _LOCATIONS_AND_POLICIES)
        self.locations = [LocationRow._make(r) for r in orjson.loads(locations)]
        self.policies = [policy_from_json({**document, "version": version}) for document, version in orjson.loads(policies)]

    async def _lock_skus(self, conn: AsyncConnection, skus: set[str]) -> None:
        new = sorted(skus - self.skus)
        if not new:
            return
        await self._q(conn, "INSERT INTO skus (sku) SELECT unnest(CAST(:s AS text[])) ON CONFLICT DO NOTHING", s=new)
        locked = await self._q(
            conn, "SELECT sku, filling, positions_version FROM skus WHERE sku = ANY(:s) ORDER BY sku FOR UPDATE", s=new)
        self.filling |= {sku for sku, filling, _ in locked if filling}
        positions, by_sku, get, unknown = self.positions, self.rows_by_sku, self.cache.get, []
        for sku, _, version in locked:
            kept = get(sku, version)  # the row is locked: its version cannot change before we commit
            if kept is None:
                unknown.append(sku)
                by_sku[sku] = []
            else:
                by_sku[sku] = kept
                for r in kept:
                    positions[r[0], r[1], r[2], r[3]] = r
        if unknown:
            for r in await self._q(conn, f"SELECT {POSITION_FIELDS} FROM positions WHERE sku = ANY(:s)", s=unknown):
                positions[r[0], r[1], r[2], r[3]] = r  # (sku, location_id, bin, lot): see _q
                by_sku[r[0]].append(r)
        self.skus |= set(new)

    def keep(self, book: AllocationBook, version: int, skus: set[str]) -> None:
        """Give the cache the positions of ``skus`` as ``book`` wrote them under ``version``: the
        rows loaded, with a new row only for each position that changed."""
        changed: dict[str, dict[PositionKey, FieldsRow]] = {}
        for key in book.changes.positions:
            changed.setdefault(key[0], {})[key] = _POSITION_ROW(book.positions[key])
        kept: dict[str, list[FieldsRow]] = {}
        for sku in skus:
            rows = self.rows_by_sku.get(sku)
            if rows is None:  # not locked by this slice: nothing kept (the table has its new version)
                continue
            new = changed.get(sku)
            if new is None:
                kept[sku] = rows
            else:
                kept[sku] = [new.pop((r[0], r[1], r[2], r[3]), r) for r in rows] + list(new.values())
        self.cache.put(version, kept)

    async def _load_queues(self, conn: AsyncConnection, skus: list[str]) -> set[str]:
        limits = []
        for s in skus:
            limit = self.queue_limits.get(s)
            limit = QUEUE_CHUNK if limit is None else limit * 4
            self.queue_limits[s] = limit
            limits.append(limit)
        rows = await self._q(
            conn,
            "SELECT k.sku, q.order_id, q.line_id, q.priority, q.placed_at FROM unnest(CAST(:s AS text[]),"
            " CAST(:n AS int[])) AS k(sku, lim) CROSS JOIN LATERAL (SELECT l.order_id, l.line_id, l.priority,"
            " l.placed_at FROM order_lines l WHERE l.sku = k.sku AND l.backordered > 0 AND NOT l.on_hold"
            f" ORDER BY {QUEUE_ORDER.format(t='l.')} LIMIT k.lim) q",
            s=skus, n=limits,
        )
        by_sku: dict[str, list[QueueRow]] = {s: [] for s in skus}
        for r in map(QueueRow._make, rows):
            by_sku[r.sku].append(r)
        orders: set[str] = set()
        for s, entries in by_sku.items():
            complete = len(entries) < self.queue_limits[s]
            boundary = None
            if not complete:
                last = entries[-1]
                boundary = queue_key(last.priority, last.placed_at, last.order_id, last.line_id)
            self.queues[s] = QueueSlice(complete, boundary)
            orders |= {e.order_id for e in entries}
        return orders

    async def _load_orders(self, conn: AsyncConnection, order_ids: Iterable[str]) -> None:
        ids = sorted(set(order_ids) - self.looked_up_orders)
        if not ids:
            return
        self.looked_up_orders |= set(ids)
        rows = await self._q(
            conn, f"SELECT {ORDER_FIELDS} FROM orders WHERE order_id = ANY(:o) ORDER BY order_id FOR UPDATE", o=ids)
        found = []
        for r in rows:
            found.append(r.order_id)
            self.orders[r.order_id] = r
            self.lines[r.order_id] = []
            self.allocations[r.order_id] = []
        if not found:
            return
        for line in map(LineRow._make, await self._q(
                conn, f"SELECT {_columns(LineRow)} FROM order_lines WHERE order_id = ANY(:o) ORDER BY order_id, line_id",
                o=found)):
            self.lines[line.order_id].append(line)
        # Shipped units too: a line's shipped quantity is the sum of its shipped allocations, so a
        # book without them would rebuild a partly shipped line as all zeros (and write it back).
        # Released ones hold nothing and are left out.
        for a in await self._q(
                conn, f"SELECT {ALLOCATION_FIELDS} FROM allocations WHERE order_id = ANY(:o)"
                " AND status IN ('allocated', 'packed', 'shipped') ORDER BY allocation_id", o=found):
            self.allocations[a.order_id].append(a)

    # ------------------------------------------------------------------ building a book
    def build(self, now: datetime) -> AllocationBook:
        locations = [
            Location(location_id=r.location_id, name=r.name, kind=r.kind, country=r.country, lat=r.lat, lon=r.lon,
                     active=r.active, priority=r.priority, ships_to=tuple(r.ships_to or ()),
                     channels=None if r.channels is None else tuple(r.channels), pickup=r.pickup)
            for r in self.locations or []
        ]
        positions = [StockPosition(*r) for r in self.positions.values()]
        orders = []
        for oid, o in self.orders.items():
            order = Order(*o)
            for ln in self.lines[oid]:
                order.lines[ln.line_id] = OrderLine(order, ln.line_id, ln.sku, ln.qty, backordered=ln.backordered,
                                                    cancelled=ln.cancelled, on_hold=ln.on_hold,
                                                    backorder_reason=ln.backorder_reason)
            for a in self.allocations[oid]:
                line = order.lines.get(a.line_id)
                if line is not None:
                    line.allocations.append(Allocation(*a))
            orders.append(order)
        return AllocationBook(
            locations=locations, policies=self.policies or [], positions=positions, orders=orders, skus=self.skus,
            queues=dict(self.queues), position_allocations_loaded=self.position_allocs,
            location_allocations_loaded=self.location_allocs, absent_orders=self.looked_up_orders - self.orders.keys(),
            filling=self.filling, now=now,
        )


# ---------------------------------------------------------------------- writing
@dataclass(frozen=True)
class BulkUpsert:
    """One statement that inserts or updates many rows of a table: ``columns`` are (column,
    PostgreSQL type); ``update`` the columns a conflict on ``key`` overwrites; ``stamp`` also sets
    ``updated_at``; ``casts`` name a column's type where the value travels as another (a text[]
    column's value travels as the text literal '{a,b}').

    The rows travel as one JSON document, an array of arrays (one per row, the columns in order),
    unpacked by ``jsonb_array_elements``. Passing one array parameter per column instead made
    asyncpg check every single value against ``collections.abc.Iterable`` and ``Sized`` in Python
    (it looks for nested arrays): tens of thousands of calls per batch (bench/hotpath.py)."""

    table: str
    columns: tuple[tuple[str, str], ...]
    key: tuple[str, ...]
    update: tuple[str, ...]
    stamp: bool = False
    casts: tuple[tuple[str, str], ...] = ()

    @cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    @cached_property
    def sql(self) -> str:
        return self.sql_of("rows")

    def sql_of(self, param: str) -> str:
        """The statement, its rows in the bind parameter ``param``."""
        casts = dict(self.casts)
        names = ", ".join(self.names)
        values = ", ".join(f"CAST(e->>{i} AS {casts.get(n, t)})" for i, (n, t) in enumerate(self.columns))
        sets = [f"{c} = EXCLUDED.{c}" for c in self.update] + (["updated_at = now()"] if self.stamp else [])
        return (f"INSERT INTO {self.table} ({names}) SELECT {values}"
                f" FROM jsonb_array_elements(CAST(:{param} AS jsonb)) AS e"
                f" ON CONFLICT ({', '.join(self.key)}) DO UPDATE SET {', '.join(sets)}")

    @cached_property
    def statement(self) -> TextClause:
        return text(self.sql)  # built once: parsing the bind parameters of a long text costs

    async def run(self, conn: AsyncConnection, items: Iterable[object], **computed: list[Any]) -> None:
        """Write ``items``: each column read from the item's attribute of that name, unless given in ``computed``."""
        await conn.execute(self.statement, {"rows": self.rows(items, **computed)})

    def rows(self, items: Iterable[object], **computed: list[Any]) -> str:
        """The rows parameter of ``items`` (see ``run``)."""
        items = list(items)
        read = [n for n in self.names if n not in computed]
        getter = attrgetter(*read)
        if len(read) == 1:
            rows: list[Any] = [(getter(x),) for x in items]
        else:
            rows = list(map(getter, items))
        if computed:
            order = read + list(computed)
            if order != list(self.names):  # computed columns may sit anywhere: put every row in column order
                at = [order.index(n) for n in self.names]
                rows = [[(*r, *c)[i] for i in at] for r, c in zip(rows, zip(*computed.values(), strict=True), strict=True)]
            else:
                rows = [(*r, *c) for r, c in zip(rows, zip(*computed.values(), strict=True), strict=True)]
        return orjson.dumps(rows).decode()


LOCATIONS = BulkUpsert(
    "locations",
    (("location_id", "text"), ("name", "text"), ("kind", "text"), ("country", "text"), ("lat", "float8"),
     ("lon", "float8"), ("active", "bool"), ("priority", "int"), ("ships_to", "text"), ("channels", "text"),
     ("pickup", "bool")),
    key=("location_id",),
    update=("name", "kind", "country", "lat", "lon", "active", "priority", "ships_to", "channels", "pickup"),
    stamp=True, casts=(("ships_to", "text[]"), ("channels", "text[]")),
)
POSITIONS = BulkUpsert(
    "positions",
    (("sku", "text"), ("location_id", "text"), ("bin", "text"), ("lot", "text"), ("on_hand", "int"),
     ("reserved", "int"), ("seq", "bigint"), ("sellable", "bool"), ("received_at", "timestamptz"),
     ("expires_at", "timestamptz")),
    key=("sku", "location_id", "bin", "lot"),
    update=("on_hand", "reserved", "seq", "sellable", "received_at", "expires_at"),
)
ORDERS = BulkUpsert(
    "orders",
    (("order_id", "text"), ("channel", "text"), ("placed_at", "timestamptz"), ("priority", "int"),
     ("ship_complete", "bool"), ("pickup_location_id", "text"), ("country", "text"), ("lat", "float8"),
     ("lon", "float8"), ("version", "int"), ("location_choice", "text"), ("hold", "text")),
    key=("order_id",), update=("priority", "version", "hold"), stamp=True,
)
ORDER_LINES = BulkUpsert(
    "order_lines",
    (("order_id", "text"), ("line_id", "text"), ("sku", "text"), ("qty", "int"), ("allocated", "int"),
     ("backordered", "int"), ("packed", "int"), ("shipped", "int"), ("cancelled", "int"), ("on_hold", "bool"),
     ("backorder_reason", "text"), ("priority", "int"), ("placed_at", "timestamptz")),
    key=("order_id", "line_id"),
    update=("qty", "allocated", "backordered", "packed", "shipped", "cancelled", "on_hold", "backorder_reason",
            "priority"),
)
ALLOCATIONS = BulkUpsert(
    "allocations",
    (("allocation_id", "bigint"), ("order_id", "text"), ("line_id", "text"), ("sku", "text"),
     ("location_id", "text"), ("bin", "text"), ("lot", "text"), ("qty", "int"), ("status", "text"),
     ("shipment_id", "text"), ("rule", "text"), ("manual", "bool"), ("created_at", "timestamptz")),
    key=("allocation_id",), update=("qty", "status", "shipment_id"), stamp=True,
)
POLICIES = BulkUpsert(
    "policies", (("channel", "text"), ("document", "jsonb"), ("version", "int")),
    key=("channel",), update=("document", "version"), stamp=True,
)


# The allocation id sequence's increment (migration 0008): one nextval reserves this many ids.
ID_BLOCK = 1024


async def assign_allocation_ids(conn: AsyncConnection, book: AllocationBook) -> None:
    """New allocations get ids from the table's sequence, in the order they were made."""
    new = sorted((a for a in book.changes.allocations if a.allocation_id is None), key=lambda a: a.local_seq)
    if not new:
        return
    rows = await conn.execute(
        text("SELECT nextval(pg_get_serial_sequence('allocations', 'allocation_id')) FROM generate_series(1, :n)"),
        {"n": -(-len(new) // ID_BLOCK)},
    )
    ids = (start + i for start in sorted(r[0] for r in rows) for i in range(ID_BLOCK))
    for a, allocation_id in zip(new, ids, strict=False):  # the last block's rest is skipped
        a.allocation_id = allocation_id


async def write_changes(conn: AsyncConnection, book: AllocationBook, sl: Slice | None = None) -> int:
    """Write everything the book's ``ChangeRecord`` holds; return how many statements ran.

    The writes of every order batch (positions, orders, lines, allocations, the SKUs' marks) go
    as ONE statement, each table's bulk upsert a data-modifying ``WITH`` part of it: one round
    trip instead of up to six. Most batches are small (25 ms of orders at 1,000 orders/s), and a
    statement's fixed cost (SQLAlchemy, asyncpg, the loop, PostgreSQL's bind and execute) was
    most of their cost (docs/benchmark.md, eleventh wave). The rare writes (locations, policies,
    a queue's filling flag: the same skus rows as the marks, which one statement may not update
    twice) go before it on their own.

    The SKUs whose positions or availability changed get a new positions version, and the cache
    of ``sl`` keeps their positions as written (a rollback leaves the table's older version, which
    never matches)."""
    changes = book.changes
    n = 0
    if changes.locations:
        locs = list(changes.locations.values())
        await LOCATIONS.run(conn, locs, ships_to=[_pg_array(x.ships_to) for x in locs],
                            channels=[None if x.channels is None else _pg_array(x.channels) for x in locs])
        n += 1
    if changes.policies:
        pols = list(changes.policies.values())
        await POLICIES.run(conn, pols, document=[orjson.dumps(p.to_json()).decode() for p in pols])
        n += 1
    filling = book.queue.filling_changes()
    if filling:
        await conn.execute(
            text("UPDATE skus SET filling = k.f FROM unnest(CAST(:s AS text[]), CAST(:f AS boolean[])) AS k(s, f)"
                 " WHERE skus.sku = k.s"),
            {"s": list(filling), "f": list(filling.values())},
        )
        n += 1
    parts: dict[str, Any] = {}  # each part's bind parameter under its name (``_WRITE_PARTS``), in order
    if changes.positions:
        parts["positions"] = POSITIONS.rows([book.positions[k] for k in sorted(changes.positions)])
    if changes.orders:
        parts["orders"] = ORDERS.rows(changes.orders.values())
    if changes.lines:
        lines = list(changes.lines.values())
        parts["lines"] = ORDER_LINES.rows(lines, priority=[x.order.priority for x in lines],
                                          placed_at=[x.order.placed_at for x in lines])
    if changes.allocations:
        al = changes.allocations
        parts["allocations"] = ALLOCATIONS.rows(al, created_at=[a.created_at or book.now for a in al])
    written = {key[0] for key in changes.positions}
    version = random.getrandbits(63)
    if changes.availability:  # marked for the feed, with the new version
        parts["marked"] = sorted(changes.availability)
    if written - changes.availability:
        parts["versioned"] = sorted(written - changes.availability)
    if parts:
        statement = _writes(tuple(parts))
        if "marked" in parts or "versioned" in parts:
            parts["version"] = version
        await conn.execute(statement, parts)
        n += 1
    if sl is not None and (changes.availability or written):
        sl.keep(book, version, written | changes.availability)
    return n


# The parts ``write_changes`` may send together, each with its bind parameter of the same name.
_WRITE_PARTS = {
    "positions": POSITIONS.sql_of("positions"),
    "orders": ORDERS.sql_of("orders"),
    "lines": ORDER_LINES.sql_of("lines"),
    "allocations": ALLOCATIONS.sql_of("allocations"),
    "marked": _MARK + ", positions_version = :version WHERE sku = ANY(:marked)",
    "versioned": "UPDATE skus SET positions_version = :version WHERE sku = ANY(:versioned)",
}
_WRITES: dict[tuple[str, ...], TextClause] = {}


def _writes(parts: tuple[str, ...]) -> TextClause:
    """One statement of ``parts``: every part but the last a ``WITH`` of it (built once per combination)."""
    statement = _WRITES.get(parts)
    if statement is None:
        *first, last = parts
        with_ = "WITH " + ", ".join(f"{p} AS ({_WRITE_PARTS[p]})" for p in first) + " " if first else ""
        statement = _WRITES[parts] = text(with_ + _WRITE_PARTS[last])
    return statement


def _pg_array(items: Iterable[str]) -> str:
    return "{" + ",".join('"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"' for s in items) + "}"


# ---------------------------------------------------------------------- changes that came early
async def keep_early_events(conn: AsyncConnection, events: list[tuple[str, uuid.UUID, bytes]]) -> None:
    """Store (order_id, event_id, encoded envelope) of changes whose order is not placed yet."""
    await conn.execute(
        text("INSERT INTO early_order_events (order_id, event_id, envelope) SELECT * FROM unnest("
             "CAST(:o AS text[]), CAST(:e AS uuid[]), CAST(:v AS bytea[]))"),
        {"o": [order_id for order_id, _, _ in events], "e": [event_id for _, event_id, _ in events],
         "v": [envelope for _, _, envelope in events]},
    )


async def take_early_events(conn: AsyncConnection, order_ids: list[str]) -> list[tuple[str, bytes]]:
    """Remove and return, oldest first, the kept changes of these orders (the caller's transaction
    applies them; a rollback keeps them)."""
    rows = await conn.execute(
        text("DELETE FROM early_order_events WHERE order_id = ANY(:o) RETURNING id, order_id, envelope"),
        {"o": order_ids},
    )
    return [(r.order_id, bytes(r.envelope)) for r in sorted(rows.all(), key=lambda r: r.id)]
