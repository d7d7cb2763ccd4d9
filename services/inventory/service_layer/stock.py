"""Use cases that change stock: goods receipt, adjustment, transfer, and the shared core that
books any list of changes (ledger rows, positions, StockAdjusted in the outbox, one transaction).

Concurrency: the positions concerned are locked (``SELECT ... FOR UPDATE`` in key order) before
their new quantities are computed, so concurrent requests queue on the row and never lose an
update; a position that does not exist yet is first inserted with nothing on hand (``ON CONFLICT
DO NOTHING`` waits for a concurrent insert of the same key), so it can be locked too.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.contracts import Topic, new_envelope
from libs.contracts.events import StockAdjusted
from libs.contracts.problems import Problem
from libs.messaging import OutboxMessage, write_outbox
from services.inventory.adapters.tables import SCHEMA
from services.inventory.domain.stock import (
    LedgerEntry,
    PositionKey,
    StockChange,
    StockPosition,
    Transfer,
    apply_changes,
    bin_is_quarantine,
    check_adjustment,
    check_receipt_dates,
    check_transfer,
)

SOURCE = "inventory"
# What may change stock at a dropship location (its stock is the supplier's stated stock): the
# statement itself, what the supplier shipped or refused, and returns of what it shipped.
DROPSHIP_REASONS = frozenset({"supplier_stock", "shipment", "dropship_refused", "return", "quarantine"})


class BinKey(NamedTuple):
    location_id: str
    bin: str


class StockRefused(ValueError):
    """The request cannot be booked; nothing was written. ``problems`` says every reason."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.problem}" for p in problems))
        self.problems = problems


class DuplicateReceipt(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Trace:
    """Envelope data of the events a change causes."""

    correlation_id: str
    causation_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class ReceiptLine:
    sku: str
    bin: str
    lot: str
    qty: int
    received_at: datetime | None = None
    expires_at: datetime | None = None


async def book_changes(
    conn: AsyncConnection,
    changes: Sequence[StockChange],
    traces: Sequence[Trace],
    *,
    fields: Sequence[str] | None = None,
    create_bins: bool = True,
) -> list[LedgerEntry]:
    """Book ``changes`` in the caller's transaction or raise StockRefused (then roll back).

    ``fields`` names, per change, the request field a refusal is reported against.
    """
    if not changes:
        return []
    fields = fields or [f"changes.{i}" for i in range(len(changes))]
    problems = await _check_locations(conn, changes, fields)
    if problems:
        raise StockRefused(problems)
    keys = sorted({c.key for c in changes})
    if create_bins:
        bins = sorted({BinKey(k.location_id, k.bin) for k in keys})
        await conn.execute(
            text(
                "INSERT INTO bins (location_id, bin, quarantine)"
                " SELECT * FROM unnest(CAST(:l AS text[]), CAST(:b AS text[]), CAST(:q AS bool[]))"
                " ON CONFLICT DO NOTHING"
            ),
            {
                "l": [b.location_id for b in bins],
                "b": [b.bin for b in bins],
                "q": [bin_is_quarantine(b.bin) for b in bins],
            },
        )
    # Positions that receive stock may be new: create them empty so they can be locked.
    first_arrival: dict[PositionKey, StockChange] = {}
    for c in changes:
        if c.delta > 0 or c.cover_shortfall:
            first_arrival.setdefault(c.key, c)
    if first_arrival:
        new = sorted(first_arrival)
        now = datetime.now(UTC)
        await conn.execute(
            text(
                "INSERT INTO positions (sku, location_id, bin, lot, received_at, expires_at, sellable)"
                " SELECT t.s, t.l, t.b, t.lot, t.r, t.e, NOT bins.quarantine"
                " FROM unnest(CAST(:s AS text[]), CAST(:l AS text[]), CAST(:b AS text[]),"
                " CAST(:lot AS text[]),"
                " CAST(:r AS timestamptz[]), CAST(:e AS timestamptz[])) AS t(s, l, b, lot, r, e)"
                " JOIN bins ON bins.location_id = t.l AND bins.bin = t.b"
                " ORDER BY t.s, t.l, t.b, t.lot ON CONFLICT DO NOTHING"
            ),
            {
                "s": [k.sku for k in new],
                "l": [k.location_id for k in new],
                "b": [k.bin for k in new],
                "lot": [k.lot for k in new],
                "r": [first_arrival[k].received_at or now for k in new],
                "e": [first_arrival[k].expires_at for k in new],
            },
        )
    positions = await lock_positions(conn, keys)
    entries, refusals = apply_changes(positions, changes)
    if refusals:
        raise StockRefused([Problem(fields[r.index], r.problem) for r in refusals])
    await _write(conn, entries, positions, traces)
    return entries


async def lock_positions(
    conn: AsyncConnection, keys: Sequence[PositionKey]
) -> dict[PositionKey, StockPosition]:
    """Lock and read the positions with these keys (the ones that exist), in key order."""
    rows = await conn.execute(
        text(
            "SELECT p.sku, p.location_id, p.bin, p.lot, p.on_hand, p.seq, p.sellable,"
            " p.received_at, p.expires_at FROM positions p"
            " JOIN unnest(CAST(:s AS text[]), CAST(:l AS text[]), CAST(:b AS text[]), CAST(:lot AS text[]))"
            " AS k(s, l, b, lot) ON p.sku = k.s AND p.location_id = k.l AND p.bin = k.b AND p.lot = k.lot"
            " ORDER BY p.sku, p.location_id, p.bin, p.lot FOR UPDATE OF p"
        ),
        {
            "s": [k.sku for k in keys],
            "l": [k.location_id for k in keys],
            "b": [k.bin for k in keys],
            "lot": [k.lot for k in keys],
        },
    )
    return {
        PositionKey(r.sku, r.location_id, r.bin, r.lot): StockPosition(
            PositionKey(r.sku, r.location_id, r.bin, r.lot),
            r.on_hand,
            r.seq,
            0,  # reserved: allocation's figure, not needed to book a change
            r.sellable,
            r.received_at,
            r.expires_at,
        )
        for r in rows
    }


async def _check_locations(
    conn: AsyncConnection, changes: Sequence[StockChange], fields: Sequence[str]
) -> list[Problem]:
    wanted = sorted({c.key.location_id for c in changes})
    rows = await conn.execute(text("SELECT id, kind FROM locations WHERE id = ANY(:ids)"), {"ids": wanted})
    kinds = {r.id: r.kind for r in rows}
    reported: set[str] = set()
    problems = []
    for c, f in zip(changes, fields, strict=True):
        if c.key.location_id not in kinds and c.key.location_id not in reported:
            reported.add(c.key.location_id)
            problems.append(Problem(f, f"unknown location {c.key.location_id!r}"))
        elif kinds.get(c.key.location_id) == "dropship" and c.reason not in DROPSHIP_REASONS:
            problems.append(Problem(f, f"{c.key.location_id!r} is a dropship location: its stock is the supplier's"
                                       " stated stock (PUT /v1/locations/{location_id}/supplier-stock)"))
    return problems


async def _write(
    conn: AsyncConnection,
    entries: list[LedgerEntry],
    positions: dict[PositionKey, StockPosition],
    traces: Sequence[Trace],
) -> None:
    cs = [e.change for e in entries]
    await conn.execute(
        text(
            "INSERT INTO ledger (sku, location_id, bin, lot, delta, on_hand_after, seq, reason, reason_code,"
            " reference, actor, order_id, allocation_id, release_shortfall)"
            " SELECT * FROM unnest(CAST(:s AS text[]), CAST(:l AS text[]), CAST(:b AS text[]),"
            " CAST(:lot AS text[]), CAST(:d AS int[]), CAST(:a AS int[]), CAST(:q AS int[]),"
            " CAST(:r AS text[]), CAST(:rc AS text[]),"
            " CAST(:ref AS text[]), CAST(:act AS text[]), CAST(:o AS text[]), CAST(:al AS bigint[]),"
            " CAST(:rs AS bool[]))"
        ),
        {
            "s": [c.key.sku for c in cs],
            "l": [c.key.location_id for c in cs],
            "b": [c.key.bin for c in cs],
            "lot": [c.key.lot for c in cs],
            "d": [c.delta for c in cs],
            "a": [e.on_hand_after for e in entries],
            "q": [e.seq for e in entries],
            "r": [c.reason for c in cs],
            "rc": [c.reason_code for c in cs],
            "ref": [c.reference for c in cs],
            "act": [c.actor for c in cs],
            "o": [c.order_id for c in cs],
            "al": [c.allocation_id for c in cs],
            "rs": [c.release_shortfall for c in cs],
        },
    )
    touched = sorted({c.key for c in cs})
    await conn.execute(
        text(
            "UPDATE positions p SET on_hand = u.o, seq = u.q, received_at = u.r, expires_at = u.e,"
            " updated_at = now()"
            " FROM unnest(CAST(:s AS text[]), CAST(:l AS text[]), CAST(:b AS text[]), CAST(:lot AS text[]),"
            " CAST(:o AS int[]), CAST(:q AS int[]), CAST(:r AS timestamptz[]), CAST(:e AS timestamptz[]))"
            " AS u(s, l, b, lot, o, q, r, e)"
            " WHERE p.sku = u.s AND p.location_id = u.l AND p.bin = u.b AND p.lot = u.lot"
        ),
        {
            "s": [k.sku for k in touched],
            "l": [k.location_id for k in touched],
            "b": [k.bin for k in touched],
            "lot": [k.lot for k in touched],
            "o": [positions[k].on_hand for k in touched],
            "q": [positions[k].seq for k in touched],
            "r": [positions[k].received_at for k in touched],
            "e": [positions[k].expires_at for k in touched],
        },
    )
    messages = []
    for entry in entries:
        c, position, trace = entry.change, positions[entry.change.key], traces[entry.index]
        event = StockAdjusted(
            sku=c.key.sku,
            location_id=c.key.location_id,
            bin=c.key.bin,
            lot=c.key.lot,
            received_at=position.received_at,
            expires_at=position.expires_at,
            sellable=position.sellable,
            delta=c.delta,
            on_hand=entry.on_hand_after,
            seq=entry.seq,
            reason=c.reason,
            reference=c.reference,
            actor=c.actor,
            order_id=c.order_id,
            allocation_id=c.allocation_id,
            release_shortfall=c.release_shortfall,
            purchase_order_id=c.purchase_order_id,
        )
        envelope = new_envelope(
            event, source=SOURCE, correlation_id=trace.correlation_id, causation_id=trace.causation_id
        )
        messages.append(OutboxMessage(Topic.INVENTORY, c.key.sku, envelope))
    await write_outbox(conn, SCHEMA, messages)


# --- HTTP use cases ------------------------------------------------------------------------


async def receive_goods(
    conn: AsyncConnection, location_id: str, reference: str, lines: Sequence[ReceiptLine], actor: str | None,
    *, purchase_order_id: str | None = None,
) -> list[LedgerEntry]:
    """Goods receipt (GRN): every line adds stock at its bin/lot. A reference is booked once per
    location; booking it again raises DuplicateReceipt. A lot whose expiry is not after its
    receipt date is refused (StockRefused naming ``lines.N.expires_at``)."""
    now = datetime.now(UTC)
    problems = [
        p
        for i, ln in enumerate(lines)
        for p in check_receipt_dates(ln.received_at, ln.expires_at, now, field=f"lines.{i}")
    ]
    if problems:
        raise StockRefused(problems)
    inserted = await conn.execute(
        text(
            "INSERT INTO receipts (location_id, reference, actor, lines) VALUES (:l, :r, :a, :n)"
            " ON CONFLICT DO NOTHING RETURNING reference"
        ),
        {"l": location_id, "r": reference, "a": actor, "n": len(lines)},
    )
    if inserted.first() is None:
        raise DuplicateReceipt(f"receipt {reference!r} is already booked at {location_id}")
    changes = [
        StockChange(
            PositionKey(ln.sku, location_id, ln.bin, ln.lot),
            ln.qty,
            "receipt",
            reference,
            actor,
            received_at=ln.received_at,
            expires_at=ln.expires_at,
            purchase_order_id=purchase_order_id,
        )
        for ln in lines
    ]
    trace = Trace(correlation_id=f"receipt:{location_id}:{reference}")
    return await book_changes(
        conn, changes, [trace] * len(changes), fields=[f"lines.{i}" for i in range(len(changes))]
    )


async def adjust_stock(
    conn: AsyncConnection,
    key: PositionKey,
    delta: int,
    reason_code: str,
    reference: str | None,
    actor: str | None,
) -> LedgerEntry:
    """A manual correction of one position with a reason code; never below zero."""
    problems = check_adjustment(delta, reason_code)
    if problems:
        raise StockRefused(problems)
    change = StockChange(key, delta, "adjustment", reference, actor, reason_code=reason_code)
    trace = Trace(correlation_id=reference or f"adjustment:{uuid.uuid4().hex}")
    [entry] = await book_changes(conn, [change], [trace], fields=["delta"])
    return entry


async def transfer_stock(conn: AsyncConnection, transfer: Transfer) -> list[LedgerEntry]:
    """Move stock between bins or locations in one transaction: transfer_out, then transfer_in."""
    problems = check_transfer(transfer.source, transfer.target, transfer.qty)
    if problems:
        raise StockRefused(problems)
    # The lot keeps its dates at the destination. A plain read: locking here, before
    # book_changes locks both positions in key order, could deadlock two opposite transfers.
    source = (
        await conn.execute(
            text(
                "SELECT received_at, expires_at FROM positions"
                " WHERE sku = :s AND location_id = :l AND bin = :b"
                " AND lot = :lot"
            ),
            {"s": transfer.sku, "l": transfer.from_location_id, "b": transfer.from_bin, "lot": transfer.lot},
        )
    ).first()
    changes = transfer.changes(source.received_at if source else None, source.expires_at if source else None)
    trace = Trace(correlation_id=transfer.reference or f"transfer:{uuid.uuid4().hex}")
    return await book_changes(conn, changes, [trace, trace], fields=["qty", "to_location_id"])


# --- queries -------------------------------------------------------------------------------


async def stock_of_sku(
    conn: AsyncConnection, sku: str, reserved: Mapping[tuple[str, str, str], int]
) -> list[dict[str, Any]]:
    """Positions of ``sku`` with ``reserved`` (allocation's figure per (location_id, bin, lot))."""
    rows = await conn.execute(
        text(
            "SELECT sku, location_id, bin, lot, on_hand, sellable, seq, received_at, expires_at"
            " FROM positions WHERE sku = :s ORDER BY location_id, bin, lot"
        ),
        {"s": sku},
    )
    out = []
    for r in rows.mappings():
        position = dict(r)
        position["reserved"] = reserved.get((r["location_id"], r["bin"], r["lot"]), 0)
        position["available"] = max(r["on_hand"] - position["reserved"], 0) if r["sellable"] else 0
        out.append(position)
    return out


async def ledger_rows(
    conn: AsyncConnection, sku: str | None, location_id: str | None, limit: int, before_id: int | None
) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text(
            "SELECT id, sku, location_id, bin, lot, delta, on_hand_after, seq, reason, reason_code,"
            " reference,"
            " actor, order_id, allocation_id, release_shortfall, at FROM ledger"
            " WHERE (CAST(:s AS text) IS NULL OR sku = :s) AND (CAST(:l AS text) IS NULL OR location_id = :l)"
            " AND (CAST(:b AS bigint) IS NULL OR id < :b) ORDER BY id DESC LIMIT :n"
        ),
        {"s": sku, "l": location_id, "b": before_id, "n": limit},
    )
    return [dict(r) for r in rows.mappings()]


def entry_view(entry: LedgerEntry) -> dict[str, Any]:
    c = entry.change
    return {
        "sku": c.key.sku,
        "location_id": c.key.location_id,
        "bin": c.key.bin,
        "lot": c.key.lot,
        "delta": c.delta,
        "on_hand": entry.on_hand_after,
        "seq": entry.seq,
        "reason": c.reason,
    }
