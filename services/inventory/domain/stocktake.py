"""Pure rules of a stock take: read a counted sheet, refuse it whole if anything is wrong, and
plan what submitting it changes.

Row numbers are the ones the user sees in the spreadsheet (the header is usually row 1).
Modes:

* ``all_bins``: every position of the location absent from the sheet counts as zero;
* ``specific_bins``: only the rows of the sheet change.

In both modes a position is never counted below what is reserved there (allocated stock is
protected) unless the user asked, in ``all_bins`` mode, to release the shortfall; the
allocation service then re-allocates or backorders what no longer exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from libs.contracts.storable import INT32_MAX, NUL_PROBLEM

Mode = Literal["all_bins", "specific_bins"]
MODES: tuple[Mode, ...] = ("all_bins", "specific_bins")

EXPORT_COLUMNS = ("sku", "bin", "lot", "on_hand", "reserved", "counted")
REQUIRED_COLUMNS = ("sku", "bin", "lot", "counted")
MAX_ROWS = 100_000
MAX_COUNT = INT32_MAX  # what a position's on_hand column holds
MAX_PROBLEMS_LISTED = 1_000  # an answer lists the first ones and says how many there are
FORMULA_PROBLEM = "formula not allowed: enter the value itself"


@dataclass(frozen=True, slots=True)
class Formula:
    """A spreadsheet cell that holds a formula (never evaluated: a count is typed, not computed)."""

    text: str


@dataclass(frozen=True, slots=True)
class RawSheet:
    """A sheet as read from a file: the header row and the data rows, each with its row number."""

    header: Sequence[object]
    header_row: int
    rows: Sequence[tuple[int, Sequence[object]]]


@dataclass(frozen=True, slots=True)
class SheetProblem:
    row: int
    column: str | None
    problem: str


@dataclass(frozen=True, slots=True)
class CountedRow:
    row: int
    sku: str
    bin: str
    lot: str
    counted: int


@dataclass(frozen=True, slots=True)
class CurrentStock:
    """A position of the location as it is now."""

    sku: str
    bin: str
    lot: str
    on_hand: int
    reserved: int


@dataclass(frozen=True, slots=True)
class CountLine:
    """What the count does to one position (``row`` is None for a position not in the sheet)."""

    row: int | None
    sku: str
    bin: str
    lot: str
    current: int
    counted: int
    reserved: int
    new_on_hand: int
    release_shortfall: bool = False
    problems: tuple[str, ...] = field(default=())

    @property
    def delta(self) -> int:
        return self.new_on_hand - self.current


def read_counted_sheet(
    sheet: RawSheet, *, known_skus: set[str], known_bins: set[str]
) -> tuple[list[CountedRow], list[SheetProblem]]:
    """Validate a counted sheet against the location; return its rows or EVERY problem found.

    ``known_skus``: SKUs that have a position at the location; ``known_bins``: its bins.
    """
    header = [_cell_text(h).lower() for h in sheet.header]
    problems = _check_header(header, sheet.header_row)
    if problems:
        return [], problems
    col = {name: header.index(name) for name in REQUIRED_COLUMNS}

    rows: list[CountedRow] = []
    seen: dict[tuple[str, str, str], int] = {}
    data = [(n, values) for n, values in sheet.rows if any(_cell_text(v) or isinstance(v, Formula) for v in values)]
    if not data:
        return [], [SheetProblem(sheet.header_row, None, "the sheet has no rows to count")]
    if len(data) > MAX_ROWS:
        return [], [SheetProblem(data[MAX_ROWS][0], None, f"more than {MAX_ROWS} rows; split the count")]
    for number, values in data:

        def cell(name: str, values: Sequence[object] = values) -> object:
            i = col[name]
            return values[i] if i < len(values) else None

        row_problems: list[SheetProblem] = []
        formulas = [name for name in REQUIRED_COLUMNS if isinstance(cell(name), Formula)]
        if formulas:
            problems += [SheetProblem(number, name, FORMULA_PROBLEM) for name in formulas]
            continue
        sku, bin_code, lot = _cell_text(cell("sku")), _cell_text(cell("bin")), _cell_text(cell("lot"))
        nul = [name for name, value in (("sku", sku), ("bin", bin_code), ("lot", lot)) if "\x00" in value]
        if nul:
            problems += [SheetProblem(number, name, NUL_PROBLEM) for name in nul]
            continue
        if not sku:
            row_problems.append(SheetProblem(number, "sku", "missing"))
        elif sku not in known_skus:
            row_problems.append(SheetProblem(number, "sku", f"unknown SKU {sku!r} at this location"))
        if not bin_code:
            row_problems.append(SheetProblem(number, "bin", "missing"))
        elif bin_code not in known_bins:
            row_problems.append(SheetProblem(number, "bin", f"unknown bin {bin_code!r} at this location"))
        counted, count_problem = parse_count(cell("counted"))
        if count_problem:
            row_problems.append(SheetProblem(number, "counted", count_problem))
        key = (sku, bin_code, lot)
        if sku and bin_code:
            if key in seen:
                row_problems.append(
                    SheetProblem(number, None, f"duplicate of row {seen[key]} (same sku, bin and lot)")
                )
            else:
                seen[key] = number
        if row_problems:
            problems += row_problems
        elif counted is not None:
            rows.append(CountedRow(number, sku, bin_code, lot, counted))
    return ([], problems) if problems else (rows, [])


def parse_count(value: object) -> tuple[int | None, str | None]:
    """A counted quantity: a whole number >= 0 (spreadsheets may give 3.0 for 3)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, "missing count (enter 0 if there is none)"
    if isinstance(value, bool):
        return None, f"not a number: {value!r}"
    number: float
    if isinstance(value, int | float):
        number = value
    else:
        text = str(value).strip()
        try:
            number = float(text) if any(c in text for c in ".eE") else int(text)
        except ValueError:
            return None, f"not a number: {text!r}"
    if number != number or number in (float("inf"), float("-inf")):
        return None, f"not a number: {value!r}"
    if number != int(number):
        return None, f"not a whole number: {value!r}"
    if number < 0:
        return None, f"must not be negative: {value!r}"
    if number > MAX_COUNT:
        return None, f"must be at most {MAX_COUNT}: {value!r}"
    return int(number), None


def plan_count(
    rows: Sequence[CountedRow], current: Sequence[CurrentStock], *, mode: Mode, release_shortfall: bool
) -> list[CountLine]:
    """Every position the count touches, with its new on_hand (deltas of 0 included, for review)."""
    if release_shortfall and mode != "all_bins":
        raise ValueError("release_shortfall is only possible in all_bins mode")
    now = {(c.sku, c.bin, c.lot): c for c in current}
    lines: list[CountLine] = []
    for r in rows:
        stock = now.get((r.sku, r.bin, r.lot))
        lines.append(_line(r.row, r.sku, r.bin, r.lot, stock, r.counted, release_shortfall))
    if mode == "all_bins":
        counted = {(r.sku, r.bin, r.lot) for r in rows}
        for key in sorted(k for k in now if k not in counted):
            stock = now[key]
            if stock.on_hand == 0 and stock.reserved == 0:
                continue
            line = _line(None, *key, stock, 0, release_shortfall)
            lines.append(
                CountLine(
                    line.row,
                    line.sku,
                    line.bin,
                    line.lot,
                    line.current,
                    line.counted,
                    line.reserved,
                    line.new_on_hand,
                    line.release_shortfall,
                    ("not in the sheet: counted as 0", *line.problems),
                )
            )
    return lines


def _line(
    row: int | None,
    sku: str,
    bin_code: str,
    lot: str,
    stock: CurrentStock | None,
    counted: int,
    release_shortfall: bool,
) -> CountLine:
    on_hand = stock.on_hand if stock else 0
    reserved = stock.reserved if stock else 0
    if counted >= reserved:
        return CountLine(row, sku, bin_code, lot, on_hand, counted, reserved, counted)
    if release_shortfall:
        new_on_hand = counted
        problem = f"{reserved - counted} reserved unit(s) will be released for reallocation"
    else:  # protect what is reserved, but a count never adds stock that was not there
        new_on_hand = max(counted, min(reserved, on_hand))
        problem = (f"counted {counted} is below the {reserved} reserved: kept at {new_on_hand}"
                   " (submit in all_bins mode with release_shortfall to release the shortfall)")
    return CountLine(row, sku, bin_code, lot, on_hand, counted, reserved, new_on_hand, release_shortfall, (problem,))


def _check_header(header: list[str], row: int) -> list[SheetProblem]:
    if not any(header):
        return [SheetProblem(row, None, f"no header row; expected columns {', '.join(EXPORT_COLUMNS)}")]
    problems = []
    for name in REQUIRED_COLUMNS:
        if name not in header:
            problems.append(SheetProblem(row, name, "missing column"))
    for i, name in enumerate(header):
        if not name:
            continue
        if name not in EXPORT_COLUMNS:
            problems.append(SheetProblem(row, name, f"unknown column; expected {', '.join(EXPORT_COLUMNS)}"))
        elif header.index(name) != i:
            problems.append(SheetProblem(row, name, "column appears twice"))
    return problems


def _cell_text(value: object) -> str:
    """A cell as text: spreadsheets turn codes like 1001 into numbers; give them back as written."""
    if value is None or isinstance(value, Formula):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()
