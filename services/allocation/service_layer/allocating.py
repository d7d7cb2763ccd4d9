"""Use cases of allocation: consume a batch of events, or run one manual command, in the caller's
transaction. Each loads a locked slice, applies the pure book, writes the changes and the
allocation results (transactional outbox) together."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from prometheus_client import Counter, Histogram
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.contracts import Topic, decode_event, encode_event
from libs.contracts.envelope import Envelope, EventMessage, envelope_of, new_event_ids
from libs.contracts.events import (
    LocationChanged,
    OrderCancelled,
    OrderHeld,
    OrderHoldReleased,
    OrderModified,
    OrderPlaced,
    PackRequested,
    StockAdjusted,
)
from libs.messaging import OutboxMessage, claim_new_events, write_outbox
from services.allocation.adapters.repository import (
    MARK_ALL_AVAILABILITY_CHANGED,
    POSITIONS_CACHE,
    Need,
    PositionsCache,
    Slice,
    assign_allocation_ids,
    keep_early_events,
    take_early_events,
    write_changes,
)
from services.allocation.adapters.tables import SCHEMA
from services.allocation.domain.book import AllocationBook, OrderResult, SliceTooSmall
from services.allocation.domain.model import Location, Order, OrderLine, queue_key
from services.allocation.domain.policy import PolicyProblem, parse_policy
from services.allocation.service_layer.dropship import mark_dropship
from services.allocation.service_layer.presales import record_purchase_orders, review_presales

SOURCE = "allocation"
MAX_RERUNS = 16

STALE_STOCK_EVENTS = Counter(
    "oms_allocation_stale_stock_events_total",
    "StockAdjusted events ignored because their per-position seq was not newer than the last applied",
)
RESULTS = Counter("oms_allocation_results_total", "Allocation results published", ["event_type"])
SLICE_RERUNS = Counter("oms_allocation_slice_reruns_total", "Batches replayed on a larger slice")
ROUND_TRIPS = Histogram(
    "oms_allocation_sql_round_trips", "SQL statements per allocation transaction",
    buckets=(5, 10, 15, 20, 30, 50, 100, 200),
)

Command = tuple[uuid.UUID | None, str, Callable[[AllocationBook], None]]  # cause, correlation, apply


async def run_commands(conn: AsyncConnection, need: Need, commands: list[Command],
                       *, now: datetime | None = None, cache: PositionsCache = POSITIONS_CACHE) -> AllocationBook:
    """Apply ``commands`` to a locked slice (grown on demand) and write the outcome. ``cache``: the
    positions this process keeps (repository.py ``PositionsCache``)."""
    now = now or datetime.now(UTC)
    sl = Slice(cache)
    await sl.extend(conn, need)
    for _ in range(MAX_RERUNS):
        book = sl.build(now)
        marks: list[tuple[int, uuid.UUID | None, str | None]] = []
        try:
            for cause, correlation, apply in commands:
                marks.append((len(book.results), cause, correlation))
                apply(book)
            marks.append((len(book.results), None, None))
            book.finish()
        except SliceTooSmall as exc:
            SLICE_RERUNS.inc()
            book.release()
            await sl.extend(conn, Need.from_missing(exc))
            continue
        await assign_allocation_ids(conn, book)
        statements = await write_changes(conn, book, sl)
        # In chunks: a refill of a long queue yields tens of thousands of results; building them
        # all before one insert held every dict and encoded value at once.
        chunks = 0
        chunk: list[OutboxMessage] = []
        for message in mark_dropship(_result_messages(book.results, marks), book.locations):
            chunk.append(message)
            if len(chunk) == OUTBOX_CHUNK:
                await write_outbox(conn, SCHEMA, chunk)
                chunks, chunk = chunks + 1, []
        if chunk:
            await write_outbox(conn, SCHEMA, chunk)
            chunks += 1
        await review_presales(conn, book)  # pre-sales against inbound supply (presales.py, issue 10)
        ROUND_TRIPS.observe(sl.round_trips + statements + 2 * chunks + 1)
        if book.stale_stock_events:
            STALE_STOCK_EVENTS.inc(book.stale_stock_events)
        return book
    raise RuntimeError("allocation slice kept growing; giving up on this batch")


OUTBOX_CHUNK = 2000


def _result_messages(results: list[OrderResult], marks: list[tuple[int, uuid.UUID | None, str | None]]) -> Iterator[OutboxMessage]:
    mark_i = 0
    cause, correlation = None, None
    now = datetime.now(UTC)
    ids = new_event_ids(len(results))
    counts: dict[str, int] = {}
    for i, r in enumerate(results):
        while mark_i < len(marks) and marks[mark_i][0] <= i:
            _, cause, correlation = marks[mark_i]
            mark_i += 1
        data: dict[str, Any] = {
            "order_id": r.order_id,
            "version": r.version,
            "change": r.change,
            "detail": r.detail,
            "shipment_id": r.shipment_id,
            "ship_complete": r.ship_complete,
            "lines": [
                {"line_id": ln.line_id, "sku": ln.sku, "qty": ln.qty, "allocated": ln.allocated,
                 "backordered": ln.backordered, "packed": ln.packed, "shipped": ln.shipped, "cancelled": ln.cancelled,
                 "on_hold": ln.on_hold, "backorder_reason": ln.backorder_reason}
                for ln in r.lines
            ],
            "allocations": [
                {"allocation_id": a.allocation_id, "line_id": a.line_id, "sku": a.sku, "location_id": a.location_id,
                 "bin": a.bin, "lot": a.lot, "qty": qty, "status": status, "shipment_id": shipment_id,
                 "reason": a.rule}
                for a, status, qty, shipment_id in r.allocations
            ],
        }
        # Built directly (not through the pydantic event): this is the hot path; the shape is
        # checked by the contract tests that decode what we publish.
        envelope = envelope_of(r.event_type, data, source=SOURCE, correlation_id=correlation or r.order_id,
                               causation_id=cause, event_id=ids[i], occurred_at=now)
        counts[r.event_type] = counts.get(r.event_type, 0) + 1
        yield OutboxMessage(Topic.ALLOCATIONS, r.order_id, envelope)
    for event_type, n in counts.items():
        RESULTS.labels(event_type).inc(n)


# ---------------------------------------------------------------------- consumed events
OrderChange = OrderCancelled | OrderModified


def _order_from(ev: OrderPlaced, early: list[OrderChange]) -> Callable[[AllocationBook], None]:
    """Place the order, then apply the changes that reached us before it (kept from earlier
    batches, then the ones earlier in this batch), in the order they arrived."""
    def apply(book: AllocationBook) -> None:
        order = Order(
            order_id=ev.order_id, channel=ev.channel, placed_at=ev.placed_at, priority=ev.priority,
            ship_complete=ev.ship_complete, pickup_location_id=ev.pickup_location_id, country=ev.ship_to.country,
            lat=ev.ship_to.lat, lon=ev.ship_to.lon,
            location_choice=ev.locations.model_dump_json() if ev.locations is not None else None,
        )
        for ln in ev.lines:
            order.lines[ln.line_id] = OrderLine(order, ln.line_id, ln.sku, ln.qty)
        book.place_order(order)
        in_batch = [cast(tuple[Envelope, OrderChange], kept)[1] for oid, kept in book.waiting_for_order
                    if oid == ev.order_id]
        book.waiting_for_order = [(oid, kept) for oid, kept in book.waiting_for_order if oid != ev.order_id]
        for change in [*early, *in_batch]:
            _apply_change(book, change)
    return apply


def _apply_change(book: AllocationBook, ev: OrderChange) -> None:
    if isinstance(ev, OrderCancelled):
        book.cancel(ev.order_id, ev.line_ids, ev.reason)
    else:
        book.modify(ev.order_id, [(c.line_id, c.sku, c.qty) for c in ev.lines], ev.priority)


def _change_from(ev: OrderChange, env: Envelope) -> Callable[[AllocationBook], None]:
    """A cancellation or change; one for an order not placed yet is kept for when it is."""
    def apply(book: AllocationBook) -> None:
        if ev.order_id not in book.orders:
            book.waiting_for_order.append((ev.order_id, (env, ev)))
            return
        _apply_change(book, ev)
    return apply


def _hold_from(ev: OrderHeld | OrderHoldReleased) -> Callable[[AllocationBook], None]:
    if isinstance(ev, OrderHeld):
        return lambda b: b.hold_order(ev.order_id, ev.reason)
    return lambda b: b.release_order_hold(ev.order_id)


def _pack_from(ev: PackRequested) -> Callable[[AllocationBook], None]:
    if ev.location_id is not None:  # a dropship request (domain/dropship_commands.py)
        return lambda b: b.pack_for_supplier(ev.order_id, ev.shipment_id, ev.line_ids, ev.location_id or "")
    return lambda b: b.request_pack(ev.order_id, ev.shipment_id, ev.line_ids)


def _stock_from(ev: StockAdjusted) -> Callable[[AllocationBook], None]:
    def apply(book: AllocationBook) -> None:
        book.adjust_stock(
            sku=ev.sku, location_id=ev.location_id, bin=ev.bin, lot=ev.lot, on_hand=ev.on_hand, delta=ev.delta,
            seq=ev.seq, reason=ev.reason, sellable=ev.sellable, received_at=ev.received_at,
            expires_at=ev.expires_at, allocation_id=ev.allocation_id, order_id=ev.order_id,
        )
    return apply


def _location_from(ev: LocationChanged) -> Callable[[AllocationBook], None]:
    def apply(book: AllocationBook) -> None:
        book.change_location(Location(
            location_id=ev.location_id, name=ev.name, kind=ev.kind, country=ev.country, lat=ev.lat, lon=ev.lon,
            active=ev.active, priority=ev.priority, ships_to=tuple(ev.ships_to),
            channels=None if ev.channels is None else tuple(ev.channels), pickup=ev.pickup,
        ))
    return apply


HANDLED = (OrderPlaced, OrderCancelled, OrderModified, StockAdjusted, LocationChanged, PackRequested, OrderHeld,
           OrderHoldReleased)


async def apply_events(conn: AsyncConnection, messages: Sequence[EventMessage],
                       cache: PositionsCache = POSITIONS_CACHE) -> AllocationBook | None:
    """One consumed batch (any of our input topics) in one transaction; replays are skipped."""
    await record_purchase_orders(conn, messages, review_now=not any(isinstance(m.event, HANDLED) for m in messages))
    messages = [m for m in messages if isinstance(m.event, HANDLED)]  # others: nothing to record
    if not messages:
        return None
    messages = in_queue_order(messages)
    # OrderPlaced needs no inbox row: its natural key is the order, and a known order is ignored
    # (``place_order``), whatever event id it comes under; the inbox row cost a write per order.
    placed = {env.event_id for env, ev in messages if isinstance(ev, OrderPlaced)}
    fresh = placed | await claim_new_events(conn, [env.event_id for env, _ in messages if env.event_id not in placed])
    need = Need()
    commands: list[Command] = []
    early = await _take_early_changes(conn, need, [ev.order_id for env, ev in messages
                                                   if isinstance(ev, OrderPlaced) and env.event_id in fresh])
    for env, ev in messages:
        if env.event_id not in fresh:
            continue
        fresh.discard(env.event_id)  # the same event twice in one batch: once
        corr = env.correlation_id
        if isinstance(ev, OrderPlaced):
            need.skus |= {ln.sku for ln in ev.lines}
            need.orders.add(ev.order_id)
            commands.append((env.event_id, corr, _order_from(ev, early.pop(ev.order_id, []))))
        elif isinstance(ev, StockAdjusted):
            need.skus.add(ev.sku)
            if ev.reason == "shipment":
                if ev.order_id:
                    need.orders.add(ev.order_id)
            else:
                need.queues.add(ev.sku)
            commands.append((env.event_id, corr, _stock_from(ev)))
        elif isinstance(ev, LocationChanged):
            commands.append((env.event_id, corr, _location_from(ev)))
        elif isinstance(ev, PackRequested):
            need.orders.add(ev.order_id)
            commands.append((env.event_id, corr, _pack_from(ev)))
        elif isinstance(ev, OrderCancelled | OrderModified):
            _need_for_change(need, ev)
            commands.append((env.event_id, corr, _change_from(ev, env)))
        elif isinstance(ev, OrderHeld | OrderHoldReleased):  # staff hold of a whole order (domain/order_holds.py)
            need.orders_with_skus.add(ev.order_id)
            commands.append((env.event_id, corr, _hold_from(ev)))
    if not commands:
        return None
    book = await run_commands(conn, need, commands, cache=cache)
    if book.waiting_for_order:
        kept = [cast(tuple[Envelope, OrderChange], item) for _, item in book.waiting_for_order]
        await keep_early_events(conn, [
            (ev.order_id, env.event_id, encode_event(env.model_copy(update={"data": ev.model_dump(mode="json")})))
            for env, ev in kept
        ])
    return book


def in_queue_order(messages: Sequence[EventMessage]) -> list[EventMessage]:
    """The batch with its new orders in fair-queue order (priority desc, placed_at, order_id).

    A batch holds records of several partitions one partition after the other, so after a
    crash, or with one partition lagging, a backlog would be allocated in partition order and
    newer orders could take stock an older order of the same batch then waits for. Within each
    run of order events (not crossing a stock, location or pack event), every OrderPlaced is
    applied first, in queue order, then the cancellations and changes in the order they came:
    each order's own events keep their order (an order is placed once, before its changes)."""
    out: list[EventMessage] = []
    placed: list[EventMessage] = []
    changes: list[EventMessage] = []

    def flush() -> None:
        placed.sort(key=lambda m: queue_key(m.event.priority, m.event.placed_at, m.event.order_id, ""))  # type: ignore[attr-defined]
        out.extend(placed)
        out.extend(changes)
        placed.clear()
        changes.clear()

    for m in messages:
        if isinstance(m.event, OrderPlaced):
            placed.append(m)
        elif isinstance(m.event, OrderCancelled | OrderModified):
            changes.append(m)
        else:
            flush()
            out.append(m)
    flush()
    return out


def _need_for_change(need: Need, ev: OrderChange) -> None:
    need.orders_with_skus.add(ev.order_id)
    if isinstance(ev, OrderModified):
        need.skus |= {c.sku for c in ev.lines}
        need.queues |= {c.sku for c in ev.lines}


async def _take_early_changes(conn: AsyncConnection, need: Need, order_ids: list[str]) -> dict[str, list[OrderChange]]:
    """The kept changes of orders placed in this batch (an OrderCancelled or OrderModified that
    reached us before its OrderPlaced: per-key order broken upstream, or a replay)."""
    if not order_ids:
        return {}
    early: dict[str, list[OrderChange]] = {}
    for order_id, raw in await take_early_events(conn, order_ids):
        _, ev = decode_event(raw)
        if isinstance(ev, OrderCancelled | OrderModified):
            _need_for_change(need, ev)
            early.setdefault(order_id, []).append(ev)
    return early


# ---------------------------------------------------------------------- manual commands (HTTP)
async def deallocate(conn: AsyncConnection, order_id: str, line_ids: list[str]) -> AllocationBook:
    return await run_commands(conn, Need(orders_with_skus={order_id}),
                              [(None, order_id, lambda b: b.deallocate(order_id, line_ids))])


async def release_hold(conn: AsyncConnection, order_id: str, line_ids: list[str] | None) -> AllocationBook:
    return await run_commands(conn, Need(orders_with_skus={order_id}),
                              [(None, order_id, lambda b: b.release_hold(order_id, line_ids))])


async def transfer(conn: AsyncConnection, from_order_id: str, to_order_id: str, sku: str, qty: int,
                   location_id: str | None) -> AllocationBook:
    need = Need(orders_with_skus={from_order_id, to_order_id}, skus={sku}, queues={sku})
    return await run_commands(conn, need, [(None, from_order_id, lambda b: b.transfer(
        from_order_id, to_order_id, sku, qty, location_id))])


async def reallocate(conn: AsyncConnection, order_id: str, location_id: str) -> AllocationBook:
    return await run_commands(conn, Need(orders_with_skus={order_id}),
                              [(None, order_id, lambda b: b.reallocate(order_id, location_id))])


class PolicyRefused(ValueError):
    def __init__(self, problems: list[PolicyProblem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.problem}" for p in problems))
        self.problems = problems


async def put_policy(conn: AsyncConnection, document: Any) -> dict[str, Any]:
    """Validate and store a channel's policy; refill every queue (it may free stock)."""
    known = [r.location_id for r in await conn.execute(text("SELECT location_id FROM locations"))]
    channel = document.get("channel", "*") if isinstance(document, dict) else "*"
    current = (await conn.execute(
        text("SELECT version FROM policies WHERE channel = :c FOR UPDATE"), {"c": channel})).scalar()
    policy, problems = parse_policy(document, known, version=(current or 0) + 1)
    if policy is None:
        raise PolicyRefused(problems)
    await run_commands(conn, Need(all_queues=True), [(None, f"policy:{policy.channel}", lambda b: b.set_policy(policy))])
    # Buffers and safety stock change what every SKU shows to the storefronts.
    await conn.execute(MARK_ALL_AVAILABILITY_CHANGED)
    return policy.to_json()
