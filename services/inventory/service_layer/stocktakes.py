"""Use cases of the stock take: export a location's stock list, upload a counted sheet (stored
and previewed), and submit it, which books every count change as ONE transaction."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.inventory.adapters.queries import location_exists
from services.inventory.domain.stock import PositionKey, StockChange
from services.inventory.domain.stocktake import (
    CountedRow,
    CountLine,
    CurrentStock,
    Mode,
    RawSheet,
    SheetProblem,
    plan_count,
    read_counted_sheet,
)
from services.inventory.service_layer.locations import LocationNotFound
from services.inventory.service_layer.reservations import Reservations
from services.inventory.service_layer.stock import Trace, book_changes


class SheetRejected(ValueError):
    """The counted sheet is wrong somewhere; nothing was stored. ``problems`` lists every row."""

    def __init__(self, problems: list[SheetProblem]) -> None:
        super().__init__(f"{len(problems)} problem(s) in the sheet")
        self.problems = problems


class StocktakeNotFound(LookupError):
    pass


async def _require_location(conn: AsyncConnection, location_id: str) -> None:
    if not await location_exists(conn, location_id):
        raise LocationNotFound(location_id)


async def current_stock(
    conn: AsyncConnection, location_id: str, reservations: Reservations, *, lock: bool = False
) -> list[CurrentStock]:
    """Every position of the location (locked for update when ``lock``) with what allocation
    reserves there, asked after the lock so the figure is as fresh as it can be.

    Ordered by key, the order every use case locks positions in, so none deadlocks another."""
    rows = (
        await conn.execute(
            text(
                "SELECT sku, bin, lot, on_hand FROM positions WHERE location_id = :l"
                " ORDER BY sku, bin, lot" + (" FOR UPDATE" if lock else "")
            ),
            {"l": location_id},
        )
    ).all()
    reserved = await reservations.at_location(location_id)
    return [CurrentStock(r.sku, r.bin, r.lot, r.on_hand, reserved.get((r.sku, r.bin, r.lot), 0)) for r in rows]


async def export_stock_list(
    conn: AsyncConnection, location_id: str, reservations: Reservations
) -> list[tuple[Any, ...]]:
    """Rows (sku, bin, lot, on_hand, reserved, counted="") of what the location holds, by bin."""
    await _require_location(conn, location_id)
    stock = sorted(await current_stock(conn, location_id, reservations), key=lambda s: (s.bin, s.sku, s.lot))
    return [(s.sku, s.bin, s.lot, s.on_hand, s.reserved, None) for s in stock if s.on_hand or s.reserved]


async def upload_count(
    conn: AsyncConnection,
    location_id: str,
    mode: Mode,
    release_shortfall: bool,
    sheet: RawSheet,
    filename: str | None,
    actor: str | None,
    reservations: Reservations,
) -> dict[str, Any]:
    """Validate and store a counted sheet; return its preview. Raises SheetRejected."""
    await _require_location(conn, location_id)
    known_skus = {
        r.sku
        for r in await conn.execute(
            text("SELECT DISTINCT sku FROM positions WHERE location_id = :l"), {"l": location_id}
        )
    }
    known_bins = {
        r.bin
        for r in await conn.execute(text("SELECT bin FROM bins WHERE location_id = :l"), {"l": location_id})
    }
    rows, problems = read_counted_sheet(sheet, known_skus=known_skus, known_bins=known_bins)
    if problems:
        raise SheetRejected(problems)
    stocktake_id = f"st_{uuid.uuid4().hex}"
    await conn.execute(
        text(
            "INSERT INTO stocktakes (id, location_id, mode, release_shortfall, filename, rows, uploaded_by)"
            " VALUES (:id, :l, :m, :r, :f, CAST(:rows AS jsonb), :a)"
        ),
        {
            "id": stocktake_id,
            "l": location_id,
            "m": mode,
            "r": release_shortfall,
            "f": filename,
            "rows": orjson.dumps([_row_json(r) for r in rows]).decode(),
            "a": actor,
        },
    )
    return await stocktake_preview(conn, stocktake_id, reservations)


async def stocktake_preview(conn: AsyncConnection, stocktake_id: str, reservations: Reservations) -> dict[str, Any]:
    """What submitting would do now (counts are absolute, so the preview follows current stock)."""
    take = await _load(conn, stocktake_id, lock=False)
    if take["status"] == "submitted":
        return _view(take, None)
    lines = plan_count(
        _rows(take),
        await current_stock(conn, take["location_id"], reservations),
        mode=take["mode"],
        release_shortfall=take["release_shortfall"],
    )
    return _view(take, lines)


async def submit_stocktake(
    conn: AsyncConnection, stocktake_id: str, actor: str | None, reservations: Reservations
) -> dict[str, Any]:
    """Apply the count as one unit (ledger reason "count"). A second submit changes nothing and
    returns the first result with ``already_submitted``."""
    take = await _load(conn, stocktake_id, lock=True)
    if take["status"] == "submitted":
        return {**_view(take, None), "already_submitted": True}
    stock = await current_stock(conn, take["location_id"], reservations, lock=True)
    lines = plan_count(_rows(take), stock, mode=take["mode"], release_shortfall=take["release_shortfall"])
    changes = [
        StockChange(
            PositionKey(ln.sku, take["location_id"], ln.bin, ln.lot),
            ln.delta,
            "count",
            reference=stocktake_id,
            actor=actor,
            release_shortfall=ln.release_shortfall,
        )
        for ln in lines
        if ln.delta
    ]
    trace = Trace(correlation_id=f"stocktake:{stocktake_id}")
    await book_changes(conn, changes, [trace] * len(changes), create_bins=False)
    result = {
        "lines": [_line_json(ln) for ln in lines],
        "changed_positions": len(changes),
        "units_delta": sum(c.delta for c in changes),
    }
    await conn.execute(
        text(
            "UPDATE stocktakes SET status = 'submitted', submitted_by = :a, submitted_at = now(),"
            " result = CAST(:r AS jsonb) WHERE id = :id"
        ),
        {"id": stocktake_id, "a": actor, "r": orjson.dumps(result).decode()},
    )
    take = await _load(conn, stocktake_id, lock=False)
    return {**_view(take, None), "already_submitted": False}


async def _load(conn: AsyncConnection, stocktake_id: str, *, lock: bool) -> dict[str, Any]:
    row = (
        (
            await conn.execute(
                text("SELECT * FROM stocktakes WHERE id = :id" + (" FOR UPDATE" if lock else "")),
                {"id": stocktake_id},
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise StocktakeNotFound(stocktake_id)
    return dict(row)


def _rows(take: dict[str, Any]) -> list[CountedRow]:
    return [CountedRow(r["row"], r["sku"], r["bin"], r["lot"], r["counted"]) for r in take["rows"]]


def _row_json(r: CountedRow) -> dict[str, Any]:
    return {"row": r.row, "sku": r.sku, "bin": r.bin, "lot": r.lot, "counted": r.counted}


def _line_json(ln: CountLine) -> dict[str, Any]:
    return {
        "row": ln.row,
        "sku": ln.sku,
        "bin": ln.bin,
        "lot": ln.lot,
        "current": ln.current,
        "counted": ln.counted,
        "delta": ln.delta,
        "reserved": ln.reserved,
        "new_on_hand": ln.new_on_hand,
        "release_shortfall": ln.release_shortfall,
        "problems": list(ln.problems),
    }


def _view(take: dict[str, Any], lines: list[CountLine] | None) -> dict[str, Any]:
    view = {
        "stocktake_id": take["id"],
        "location_id": take["location_id"],
        "mode": take["mode"],
        "release_shortfall": take["release_shortfall"],
        "status": take["status"],
        "filename": take["filename"],
        "uploaded_by": take["uploaded_by"],
        "uploaded_at": take["uploaded_at"],
        "submitted_by": take["submitted_by"],
        "submitted_at": take["submitted_at"],
    }
    if lines is not None:
        view["lines"] = [_line_json(ln) for ln in lines]
        view["changed_positions"] = sum(1 for ln in lines if ln.delta)
        view["units_delta"] = sum(ln.delta for ln in lines)
    else:
        view.update(take["result"] or {})
    return view
