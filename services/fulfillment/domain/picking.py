"""Pick lists: what pickers fetch at a location, batched across orders, in walking (bin) order.

Pure: built from the allocation mirror, no I/O.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class AllocatedStock:
    """One live allocation still waiting to be packed (status ``allocated``)."""

    order_id: str
    line_id: str
    allocation_id: int
    sku: str
    location_id: str
    bin: str
    lot: str
    qty: int


@dataclass(frozen=True, slots=True)
class PickTarget:
    """Which order line a picked quantity is for."""

    order_id: str
    line_id: str
    allocation_id: int
    qty: int


@dataclass(slots=True)
class PickRow:
    """Fetch ``qty`` of ``sku`` (lot ``lot``) from ``bin``; it serves ``targets``."""

    sku: str
    bin: str
    lot: str
    qty: int = 0
    targets: list[PickTarget] = field(default_factory=list)


@dataclass(slots=True)
class PickList:
    location_id: str
    rows: list[PickRow]

    @property
    def total_qty(self) -> int:
        return sum(row.qty for row in self.rows)


_DIGITS = re.compile(r"(\d+)")


def bin_order(bin_code: str) -> tuple[tuple[int, int | str], ...]:
    """Walking order of bins: numbers inside a bin code compare as numbers (A-2 before A-10)."""
    parts = _DIGITS.split(bin_code)
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts if p != "")


def build_pick_lists(stock: list[AllocatedStock]) -> list[PickList]:
    """One pick list per location; a row per (bin, sku, lot) summing every order's quantity.

    Rows are sorted by bin (walking order), then sku, then lot; locations by id; the orders a
    row serves by (order_id, line_id, allocation_id).
    """
    by_location: dict[str, dict[tuple[str, str, str], PickRow]] = defaultdict(dict)
    for item in stock:
        if item.qty <= 0:
            continue
        rows = by_location[item.location_id]
        key = (item.bin, item.sku, item.lot)
        row = rows.get(key)
        if row is None:
            row = rows[key] = PickRow(sku=item.sku, bin=item.bin, lot=item.lot)
        row.qty += item.qty
        row.targets.append(PickTarget(item.order_id, item.line_id, item.allocation_id, item.qty))
    lists = []
    for location_id in sorted(by_location):
        ordered = sorted(
            by_location[location_id].values(), key=lambda r: (bin_order(r.bin), r.bin, r.sku, r.lot)
        )
        for pick in ordered:
            pick.targets.sort(key=lambda t: (t.order_id, t.line_id, t.allocation_id))
        lists.append(PickList(location_id, ordered))
    return lists
