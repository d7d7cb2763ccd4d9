"""Stock-take sheets as files: CSV and XLSX, written for export and read back after counting.

Spreadsheet injection: a SKU such as ``=HYPERLINK(...)`` must reach the counter as text, never
as a live formula. XLSX cells are written with the string type (Excel shows the text; the
workbook reads back the same value). CSV has no types, so a text cell that a spreadsheet would
take for a formula (starting with ``= + - @``, tab or carriage return) is written with a leading
apostrophe, and ``read_sheet`` removes that apostrophe again. A formula cell in an uploaded
workbook is read as ``Formula`` (refused as "formula not allowed"), never evaluated.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

from openpyxl import Workbook, load_workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.worksheet.worksheet import Worksheet

from services.inventory.domain.stocktake import Formula, RawSheet

XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


class UnreadableSheet(ValueError):
    """The upload is neither a CSV text file nor an XLSX workbook."""


def escape_csv_cell(value: object) -> object:
    """Text a spreadsheet would run as a formula gets a leading apostrophe."""
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def unescape_csv_cell(value: str) -> str:
    """The inverse of ``escape_csv_cell``."""
    if value.startswith("'") and value[1:].startswith(FORMULA_TRIGGERS):
        return value[1:]
    return value


def write_csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else escape_csv_cell(v) for v in row])
    return out.getvalue().encode("utf-8")


def write_xlsx(header: Sequence[str], rows: Iterable[Sequence[object]], *, title: str = "count") -> bytes:
    wb = Workbook(write_only=True)
    ws = wb.create_sheet(title=_sheet_title(title))
    ws.append(list(header))
    for row in rows:
        ws.append([_text_cell(ws, v) if isinstance(v, str) else v for v in row])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _text_cell(ws: Worksheet, value: str) -> WriteOnlyCell:
    # openpyxl turns a string starting with "=" into a formula; say it is text.
    cell = WriteOnlyCell(ws, value=value)
    cell.data_type = "s"
    return cell


def _sheet_title(title: str) -> str:
    # Excel forbids these in sheet names (and the name is at most 31 characters).
    cleaned = "".join("_" if c in '[]:*?/\\\x00' else c for c in title)[:31]
    return cleaned or "count"


def read_sheet(content: bytes, filename: str | None = None) -> RawSheet:
    """Header (first non-empty row) and data rows with their spreadsheet row numbers."""
    if content[:4] == b"PK\x03\x04" or (filename or "").lower().endswith((".xlsx", ".xlsm")):
        return _read_xlsx(content)
    return _read_csv(content)


def _read_csv(content: bytes) -> RawSheet:
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableSheet(
            f"not a UTF-8 CSV file or an XLSX workbook ({exc.reason} at byte {exc.start})"
        ) from exc
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel  # type: ignore[assignment]
    rows = ([unescape_csv_cell(v) for v in row] for row in csv.reader(io.StringIO(text), dialect))
    return _split(enumerate(rows, start=1))


def _read_xlsx(content: bytes) -> RawSheet:
    try:
        wb = load_workbook(io.BytesIO(content), read_only=True, data_only=False)
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many kinds for a broken file
        raise UnreadableSheet(f"not a readable XLSX workbook: {exc}") from exc
    try:
        ws = wb.worksheets[0]
        rows = ([Formula(str(c.value)) if c.data_type == "f" else c.value for c in r] for r in ws.iter_rows())
        return _split(enumerate(rows, start=1))
    finally:
        wb.close()


def _split(numbered: Iterable[tuple[int, Sequence[object]]]) -> RawSheet:
    header: Sequence[object] | None = None
    header_row = 1
    rows: list[tuple[int, Sequence[object]]] = []
    for number, values in numbered:
        if header is None:
            if any(v not in (None, "") for v in values):
                header, header_row = values, number
            continue
        rows.append((number, values))
    return RawSheet(header or [], header_row, rows)
