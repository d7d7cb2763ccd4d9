"""Stock-take sheets as files: CSV and XLSX, written for export and read back after counting."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

from openpyxl import Workbook, load_workbook

from services.inventory.domain.stocktake import RawSheet

XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class UnreadableSheet(ValueError):
    """The upload is neither a CSV text file nor an XLSX workbook."""


def write_csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return out.getvalue().encode("utf-8")


def write_xlsx(header: Sequence[str], rows: Iterable[Sequence[object]], *, title: str = "count") -> bytes:
    wb = Workbook(write_only=True)
    ws = wb.create_sheet(title=title[:31] or "count")
    ws.append(list(header))
    for row in rows:
        ws.append(list(row))
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


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
    return _split(enumerate(csv.reader(io.StringIO(text), dialect), start=1))


def _read_xlsx(content: bytes) -> RawSheet:
    try:
        wb = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many kinds for a broken file
        raise UnreadableSheet(f"not a readable XLSX workbook: {exc}") from exc
    try:
        ws = wb.worksheets[0]
        return _split(enumerate((list(r) for r in ws.iter_rows(values_only=True)), start=1))
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
