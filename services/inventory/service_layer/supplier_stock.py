"""A dropship supplier's stated stock: what a supplier that ships for the seller says it has,
per SKU, kept as the position (sku, location, ``SUPPLIER_BIN``, no lot) of its location of kind
``dropship``. Setting it books the difference in the ledger (reason ``supplier_stock``) and
publishes StockAdjusted like any stock change, so allocation knows the supplier's stock.

A supplier cannot state less than what is already requested from it: allocation's reserved
units at the position (allocated, or locked by a dropship request) are asked for at that moment
(``Reservations``, as a stock take does). Allocation may allocate more there between that read
and the commit; the StockAdjusted then reaches it as a shrink below reserved, which releases the
newest unrequested allocations there and re-allocates them (SPEC 3.2): no oversell survives it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.contracts.problems import Problem
from services.inventory.domain.stock import LedgerEntry, PositionKey, StockChange
from services.inventory.service_layer.reservations import Reservations
from services.inventory.service_layer.stock import StockRefused, Trace, book_changes, lock_positions

SUPPLIER_BIN = "SUPPLIER"
DROPSHIP = "dropship"
REASON = "supplier_stock"


@dataclass(frozen=True, slots=True)
class StatedStock:
    sku: str
    qty: int


@dataclass(frozen=True, slots=True)
class StatedStockResult:
    sku: str
    on_hand: int  # the stated stock now
    requested: int  # what allocation holds at the supplier (allocated or requested, not shipped)
    change: LedgerEntry | None  # None when it was already so


class UnknownDropshipLocation(LookupError):
    pass


async def set_supplier_stock(
    conn: AsyncConnection,
    location_id: str,
    lines: Sequence[StatedStock],
    reservations: Reservations,
    *,
    reference: str | None,
    actor: str | None,
) -> list[StatedStockResult]:
    """Set the supplier's stated stock of each line's SKU, or refuse the whole request
    (StockRefused naming ``location_id`` or ``lines.N.qty`` / ``lines.N.sku``); nothing is
    booked then. Raises UnknownDropshipLocation for an unknown location."""
    row = (
        await conn.execute(text("SELECT kind FROM locations WHERE id = :id FOR SHARE"), {"id": location_id})
    ).first()
    if row is None:
        raise UnknownDropshipLocation(location_id)
    if row.kind != DROPSHIP:
        raise StockRefused([Problem("location_id", f"{location_id!r} is a {row.kind}, not a dropship location")])
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for i, ln in enumerate(lines):
        if ln.sku in seen:
            problems.append(Problem(f"lines.{i}.sku", f"{ln.sku!r} is already stated in lines.{seen[ln.sku]}"))
        seen.setdefault(ln.sku, i)
    if problems:
        raise StockRefused(problems)
    keys = [PositionKey(ln.sku, location_id, SUPPLIER_BIN, "") for ln in lines]
    held = await reservations.at_location(location_id)
    current = await lock_positions(conn, keys)
    changes: list[StockChange] = []
    fields: list[str] = []
    results: list[tuple[StatedStock, int]] = []
    for i, (ln, key) in enumerate(zip(lines, keys, strict=True)):
        requested = held.get((ln.sku, SUPPLIER_BIN, ""), 0)
        if ln.qty < requested:
            problems.append(Problem(
                f"lines.{i}.qty",
                f"{ln.qty} is below the {requested} units of {ln.sku} already requested from the supplier",
            ))
            continue
        results.append((ln, requested))
        before = current[key].on_hand if key in current else 0
        if ln.qty != before:
            changes.append(StockChange(key, ln.qty - before, REASON, reference, actor))
            fields.append(f"lines.{i}.qty")
    if problems:
        raise StockRefused(problems)
    trace = Trace(correlation_id=reference or f"supplier-stock:{location_id}")
    entries = await book_changes(conn, changes, [trace] * len(changes), fields=fields)
    by_sku = {e.change.key.sku: e for e in entries}
    return [
        StatedStockResult(ln.sku, ln.qty, requested, by_sku.get(ln.sku)) for ln, requested in results
    ]
