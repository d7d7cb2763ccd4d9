"""HTTP routes of stock takes (export a sheet to count, upload the count, preview, submit),
added to inventory's router by ``http.build_router``; who may call them is in
``http.ACCESS``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile

from libs.contracts.problems import Problem
from libs.contracts.storable import NUL_PROBLEM
from libs.service_host import Runtime
from libs.service_host.errors import problem_response
from services.inventory.adapters.sheets import (
    XLSX_MEDIA_TYPE,
    UnreadableSheet,
    read_sheet,
    write_csv,
    write_xlsx,
)
from services.inventory.domain.stocktake import EXPORT_COLUMNS, MAX_PROBLEMS_LISTED, MODES
from services.inventory.entrypoints.common import not_found, reservations_unavailable
from services.inventory.service_layer.locations import LocationNotFound
from services.inventory.service_layer.reservations import Reservations, ReservationsUnavailable
from services.inventory.service_layer.stock import StockRefused
from services.inventory.service_layer.stocktakes import (
    SheetRejected,
    StocktakeNotFound,
    export_stock_list,
    stocktake_preview,
    submit_stocktake,
    upload_count,
)

MAX_UPLOAD_BYTES = 20 * 1024 * 1024


class StocktakeSheet(BaseModel):
    """The form of ``POST /v1/stocktakes`` (multipart/form-data), checked field by field by the route."""

    file: bytes = Field(description="the counted sheet, CSV or XLSX (as exported by /v1/stocktakes/export)")
    location_id: str
    mode: Literal["all_bins", "specific_bins"] = Field(
        description="all_bins: the sheet is the whole location; specific_bins: only the bins it lists")
    release_shortfall: bool = Field(default=False, description="only in all_bins mode")

class CountLineOut(BaseModel):
    row: int | None = Field(description="the sheet row; null for a position the sheet left out")
    sku: str
    bin: str
    lot: str
    current: int
    counted: int
    delta: int
    reserved: int
    new_on_hand: int
    release_shortfall: bool = Field(description="true: the reservation beyond the count is released")
    problems: list[str]


class StocktakeOut(BaseModel):
    """An uploaded count: its preview (lines) while open, its result once submitted."""

    stocktake_id: str
    location_id: str
    mode: Literal["all_bins", "specific_bins"]
    release_shortfall: bool
    status: str
    filename: str | None
    uploaded_by: str | None
    uploaded_at: datetime
    submitted_by: str | None
    submitted_at: datetime | None
    lines: list[CountLineOut] | None = Field(default=None, description="what submitting would do now")
    changed_positions: int | None = None
    units_delta: int | None = None
    already_submitted: bool | None = Field(default=None, description="on submit: true when it was submitted before")

def add_stocktake_routes(router: APIRouter, runtime: Runtime, reserved_by: Reservations) -> None:
    """The stock take routes, on inventory's ``/v1`` router; ``reserved_by``: allocation's
    reservations, which a count must not take away."""
    engine = runtime.engine

    # --- stock take ----------------------------------------------------------------------------

    @router.get(
        "/stocktakes/export", summary="A location's stock list to count (csv or xlsx), counted empty",
        response_class=Response,
        responses={200: {"description": "the sheet to count", "content": {
            "text/csv": {"schema": {"type": "string"}},
            XLSX_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}}}},
    )
    async def export_stocktake(location_id: str, format: Literal["csv", "xlsx"] = "csv") -> Response:
        async with engine.connect() as conn:
            try:
                rows = await export_stock_list(conn, location_id, reserved_by)
            except LocationNotFound:
                return not_found(f"location {location_id}")
            except ReservationsUnavailable as exc:
                return reservations_unavailable(exc)
        name = f"stocktake-{location_id}.{format}"
        headers = {"Content-Disposition": f'attachment; filename="{name}"'}
        if format == "xlsx":
            return Response(
                write_xlsx(EXPORT_COLUMNS, rows, title=location_id),
                media_type=XLSX_MEDIA_TYPE,
                headers=headers,
            )
        return Response(
            write_csv(EXPORT_COLUMNS, rows), media_type="text/csv; charset=utf-8", headers=headers
        )

    @router.post(
        "/stocktakes",
        status_code=201,
        summary="Upload a counted sheet (multipart: file, location_id, mode=all_bins|specific_bins, "
        "release_shortfall); returns its preview",
        # read by hand (each field's own problem; a larger part limit than FastAPI's forms), so documented here
        openapi_extra={"requestBody": {"required": True, "content": {
            "multipart/form-data": {"schema": StocktakeSheet.model_json_schema()}}}},
        responses={201: {"model": StocktakeOut}},
    )
    async def post_stocktake(request: Request, x_actor: Annotated[str | None, Header()] = None) -> Any:
        try:
            form = await request.form(max_part_size=MAX_UPLOAD_BYTES)
        except Exception as exc:  # noqa: BLE001 - any malformed multipart body is the client's
            return problem_response([Problem("(body)", f"expected multipart/form-data: {exc}")])
        problems = []
        upload = form.get("file")
        location_id = str(form.get("location_id") or "").strip()
        mode = str(form.get("mode") or "").strip()
        release = str(form.get("release_shortfall") or "false").strip().lower()
        if not isinstance(upload, UploadFile):
            problems.append(
                Problem("file", "attach the counted sheet (CSV or XLSX) as the form field 'file'")
            )
        if not location_id:
            problems.append(Problem("location_id", "missing"))
        elif "\x00" in location_id:
            problems.append(Problem("location_id", NUL_PROBLEM))
        if isinstance(upload, UploadFile) and "\x00" in (upload.filename or ""):
            problems.append(Problem("file", "file name " + NUL_PROBLEM))
        if mode not in MODES:
            problems.append(Problem("mode", f"must be one of {', '.join(MODES)}"))
        if release not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            problems.append(Problem("release_shortfall", "must be true or false"))
        release_shortfall = release in ("true", "1", "yes", "on")
        if release_shortfall and mode == "specific_bins":
            problems.append(
                Problem("release_shortfall", "only in all_bins mode: specific bins never release")
            )
        if problems:
            return problem_response(problems)
        assert isinstance(upload, UploadFile)
        content = await upload.read(MAX_UPLOAD_BYTES + 1)
        if len(content) > MAX_UPLOAD_BYTES:
            return problem_response([Problem("file", f"larger than {MAX_UPLOAD_BYTES} bytes")])
        try:
            sheet = read_sheet(content, upload.filename)
        except UnreadableSheet as exc:
            return problem_response([Problem("file", str(exc))])
        try:
            async with engine.begin() as conn:
                preview = await upload_count(
                    conn,
                    location_id,
                    mode,  # type: ignore[arg-type]  # checked against the two modes above
                    release_shortfall,
                    sheet,  # type: ignore[arg-type]
                    upload.filename,
                    x_actor,
                    reserved_by,
                )
        except ReservationsUnavailable as exc:
            return reservations_unavailable(exc)
        except LocationNotFound:
            return problem_response([Problem("location_id", f"unknown location {location_id!r}")])
        except SheetRejected as exc:
            return JSONResponse(
                {
                    "detail": [
                        {
                            "field": f"row {p.row}" + (f".{p.column}" if p.column else ""),
                            "row": p.row,
                            "column": p.column,
                            "problem": p.problem,
                        }
                        for p in exc.problems[:MAX_PROBLEMS_LISTED]
                    ],
                    # A sheet of 100,000 bad rows must not make a 10 MB answer: the first ones and the total.
                    "problems_total": len(exc.problems),
                    "problems_listed": min(len(exc.problems), MAX_PROBLEMS_LISTED),
                },
                status_code=422,
            )
        return JSONResponse(orjson.loads(orjson.dumps(preview)), status_code=201)

    @router.get(
        "/stocktakes/{stocktake_id}", summary="Preview of an uploaded count (or its result once submitted)",
        responses={200: {"model": StocktakeOut}},
    )
    async def get_stocktake(stocktake_id: str) -> Any:
        async with engine.connect() as conn:
            try:
                return await stocktake_preview(conn, stocktake_id, reserved_by)
            except StocktakeNotFound:
                return not_found(f"stock take {stocktake_id}")
            except ReservationsUnavailable as exc:
                return reservations_unavailable(exc)

    @router.post(
        "/stocktakes/{stocktake_id}/submit",
        summary="Apply the count as one transaction (reason 'count'); a second submit changes nothing",
        responses={200: {"model": StocktakeOut}},
    )
    async def post_submit(stocktake_id: str, x_actor: Annotated[str | None, Header()] = None) -> Any:
        try:
            async with runtime.transaction() as conn:
                result = await submit_stocktake(conn, stocktake_id, x_actor, reserved_by)
        except ReservationsUnavailable as exc:
            return reservations_unavailable(exc)
        except StocktakeNotFound:
            return not_found(f"stock take {stocktake_id}")
        except StockRefused as exc:
            return problem_response(exc.problems, status=409)
        return result
