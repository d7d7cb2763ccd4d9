"""HTTP API of inventory (port 8002). Handlers parse, call one use case, and answer.

Bad input: 422 ``{"detail": [{"field", "problem"}, ...]}`` listing every problem; nothing changes.
``X-Actor`` (optional) names who did it; it is written to the ledger and the events.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
import pycountry
from fastapi import APIRouter, Body, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    create_model,
    field_validator,
)
from starlette.datastructures import UploadFile

from libs.contracts.events import LocationChanged
from libs.contracts.problems import Problem, problems_of
from libs.contracts.storable import INT64_MAX, NUL_PROBLEM, StorableDatetime, Text
from libs.service_host import Runtime
from libs.service_host.auth import ADMIN, OPERATOR, VIEWER, AccessTable
from libs.service_host.bodies import JsonBodyRoute, documented_as
from libs.service_host.errors import peer_unavailable, problem_response
from services.inventory.adapters.allocation_api import AllocationReservations
from services.inventory.adapters.sheets import (
    XLSX_MEDIA_TYPE,
    UnreadableSheet,
    read_sheet,
    write_csv,
    write_xlsx,
)
from services.inventory.domain.stock import ADJUSTMENT_REASON_CODES, PositionKey, Transfer
from services.inventory.domain.stocktake import EXPORT_COLUMNS, MAX_PROBLEMS_LISTED, MODES
from services.inventory.entrypoints.purchase_orders import ACCESS as PURCHASE_ORDER_ACCESS
from services.inventory.entrypoints.purchase_orders import add_purchase_order_routes
from services.inventory.service_layer.locations import (
    LocationNotFound,
    get_location,
    list_locations,
    save_location,
)
from services.inventory.service_layer.reservations import Reservations, ReservationsUnavailable
from services.inventory.service_layer.stock import (
    DuplicateReceipt,
    ReceiptLine,
    StockRefused,
    adjust_stock,
    entry_view,
    ledger_rows,
    receive_goods,
    stock_of_sku,
    transfer_stock,
)
from services.inventory.service_layer.stocktakes import (
    SheetRejected,
    StocktakeNotFound,
    export_stock_list,
    stocktake_preview,
    submit_stocktake,
    upload_count,
)

Code = Annotated[Text, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Lot = Annotated[Text, StringConstraints(strip_whitespace=True, max_length=200)]
Reference = Annotated[Text, StringConstraints(max_length=200)]
MAX_UPLOAD_BYTES = 20 * 1024 * 1024


def _country(value: str) -> str:
    value = value.upper()
    if len(value) != 2 or pycountry.countries.get(alpha_2=value) is None:
        raise ValueError(f"unknown ISO 3166 country code {value!r}")
    return value


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("must carry a time zone offset (e.g. 2026-11-22T10:00:00Z)")
    return value


class LocationIn(BaseModel):
    """A location as operations describe it; POST replaces it whole."""

    model_config = ConfigDict(extra="forbid")
    location_id: Code
    name: Code
    kind: Literal["warehouse", "store", "3pl", "dropship"] = Field(
        default="warehouse", description="dropship: a supplier that ships for the seller (its stated stock: "
        "PUT /v1/locations/{location_id}/supplier-stock)")
    country: Text
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    active: bool = True
    priority: int = Field(default=0, ge=-1_000_000, le=1_000_000)
    ships_to: list[Text] = Field(default_factory=list, description="ISO countries; empty: its own country")
    channels: list[Code] | None = Field(
        default=None, description="channels it may serve; null: every channel"
    )
    pickup: bool = Field(default=False, description="can serve buy-online-pick-up-in-store")

    _country_ok = field_validator("country")(lambda cls, v: _country(v))

    @field_validator("ships_to")
    @classmethod
    def _ships_to_ok(cls, values: list[str]) -> list[str]:
        return sorted({_country(v) for v in values})


# PATCH /v1/locations/{location_id} takes any fields of LocationIn; the merged location is then
# checked as a whole (so this model documents the body, LocationIn checks it).
LocationChanges = create_model(
    "LocationChanges",
    __config__=ConfigDict(extra="forbid"),
    __doc__="Some fields of a location; the rest stay as they are.",
    **{name: (f.annotation | None, Field(default=None, description=f.description))  # type: ignore[operator, call-overload]
       for name, f in LocationIn.model_fields.items()},
)


class StocktakeSheet(BaseModel):
    """The form of ``POST /v1/stocktakes`` (multipart/form-data), checked field by field by the route."""

    file: bytes = Field(description="the counted sheet, CSV or XLSX (as exported by /v1/stocktakes/export)")
    location_id: str
    mode: Literal["all_bins", "specific_bins"] = Field(
        description="all_bins: the sheet is the whole location; specific_bins: only the bins it lists")
    release_shortfall: bool = Field(default=False, description="only in all_bins mode")


class ReceiptLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: Code
    bin: Code
    lot: Lot = ""
    qty: int = Field(gt=0, le=10_000_000, strict=True)
    received_at: StorableDatetime | None = Field(default=None, description="default: now")
    expires_at: StorableDatetime | None = None

    _dates_ok = field_validator("received_at", "expires_at")(lambda cls, v: _aware(v))


class ReceiptIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    location_id: Code
    reference: Code = Field(description="the GRN number; booked once per location")
    lines: list[ReceiptLineIn] = Field(min_length=1, max_length=5000)


class AdjustmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: Code
    location_id: Code
    bin: Code
    lot: Lot = ""
    delta: int = Field(strict=True, ge=-10_000_000, le=10_000_000)
    reason_code: Text = Field(description=" | ".join(ADJUSTMENT_REASON_CODES))
    reference: Reference | None = None


class TransferIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: Code
    from_location_id: Code
    from_bin: Code
    lot: Lot = ""
    to_location_id: Code
    to_bin: Code
    qty: int = Field(gt=0, le=10_000_000, strict=True)
    reference: Reference | None = None


class LocationOut(BaseModel):
    location_id: str
    name: str
    kind: Literal["warehouse", "store", "3pl", "dropship"]
    country: str
    lat: float | None
    lon: float | None
    active: bool
    priority: int
    ships_to: list[str]
    channels: list[str] | None = Field(description="channels it may serve; null: every channel")
    pickup: bool
    updated_at: datetime


class ChangeOut(BaseModel):
    """One ledger entry a request caused."""

    sku: str
    location_id: str
    bin: str
    lot: str
    delta: int
    on_hand: int = Field(description="the position's units after the change")
    seq: int = Field(description="the position's change number (StockAdjusted.seq)")
    reason: str


class ReceiptOut(BaseModel):
    location_id: str
    reference: str
    changes: list[ChangeOut]


class AdjustmentOut(BaseModel):
    change: ChangeOut


class TransferOut(BaseModel):
    changes: list[ChangeOut] = Field(description="the removal and the addition")


class PositionOut(BaseModel):
    sku: str
    location_id: str
    bin: str
    lot: str
    on_hand: int
    sellable: bool
    seq: int
    received_at: datetime | None
    expires_at: datetime | None
    reserved: int = Field(description="allocation's reservations at the position")
    available: int


class StockOut(BaseModel):
    sku: str
    on_hand: int
    reserved: int
    available: int
    positions: list[PositionOut]


class LedgerRow(BaseModel):
    id: int
    sku: str
    location_id: str
    bin: str
    lot: str
    delta: int
    on_hand_after: int
    seq: int
    reason: str
    reason_code: str | None
    reference: str | None
    actor: str | None
    order_id: str | None
    allocation_id: int | None
    release_shortfall: bool
    at: datetime


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


def _not_found(what: str) -> JSONResponse:
    return JSONResponse({"detail": f"no {what}"}, status_code=404)


def _event(loc: LocationIn) -> LocationChanged:
    return LocationChanged(**loc.model_dump())


def _unavailable(exc: ReservationsUnavailable) -> JSONResponse:
    """Reserved quantities are allocation's: without them a stock take cannot protect them."""
    return peer_unavailable("allocation", f"reserved quantities unavailable: {exc}")


def build_router(runtime: Runtime, reservations: Reservations | None = None) -> APIRouter:
    """``reservations``: where reserved quantities come from (allocation's HTTP API by default)."""
    router = APIRouter(prefix="/v1", tags=["inventory"], route_class=JsonBodyRoute)
    engine = runtime.engine
    reserved_by: Reservations = reservations or AllocationReservations()

    # --- locations ---------------------------------------------------------------------------

    @router.post(
        "/locations", summary="Create or replace a location (publishes LocationChanged)",
        responses={200: {"model": LocationOut, "description": "replaced"},
                   201: {"model": LocationOut, "description": "created"}},
    )
    async def post_location(body: LocationIn) -> Any:
        async with runtime.transaction() as conn:
            created = await save_location(conn, _event(body))
            view = await get_location(conn, body.location_id)
        return JSONResponse(orjson.loads(orjson.dumps(view)), status_code=201 if created else 200)

    @router.patch(
        "/locations/{location_id}",
        summary='Change some fields of a location, e.g. {"active": false} to deactivate it '
        "(publishes LocationChanged)",
        responses={200: {"model": LocationOut}},
    )
    async def patch_location(
        location_id: str, changes: Annotated[Any, Body(), documented_as(LocationChanges)]
    ) -> Any:
        if not isinstance(changes, dict):
            return problem_response([Problem("(body)", "must be a JSON object")])
        if "location_id" in changes and changes["location_id"] != location_id:
            return problem_response([Problem("location_id", "cannot be changed")])
        async with runtime.transaction() as conn:
            try:
                current = await get_location(conn, location_id, lock=True)
            except LocationNotFound:
                return _not_found(f"location {location_id}")
            merged = {k: current[k] for k in LocationIn.model_fields} | changes
            try:
                body = LocationIn.model_validate(merged)
            except ValidationError as exc:
                return problem_response(problems_of(exc))
            await save_location(conn, _event(body))
            view = await get_location(conn, location_id)
        return view

    @router.get(
        "/locations", summary="Every location (filter: active=true|false)", responses={200: {"model": list[LocationOut]}}
    )
    async def get_locations(active: bool | None = None) -> Any:
        async with engine.connect() as conn:
            return await list_locations(conn, active)

    @router.get("/locations/{location_id}", summary="One location", responses={200: {"model": LocationOut}})
    async def get_one_location(location_id: str) -> Any:
        async with engine.connect() as conn:
            try:
                return await get_location(conn, location_id)
            except LocationNotFound:
                return _not_found(f"location {location_id}")

    # --- stock changes -------------------------------------------------------------------------

    @router.post(
        "/receipts", status_code=201, summary="Goods receipt (GRN): add stock per line at bin/lot",
        responses={201: {"model": ReceiptOut}},
    )
    async def post_receipt(body: ReceiptIn, x_actor: Annotated[str | None, Header()] = None) -> Any:
        lines = [
            ReceiptLine(ln.sku, ln.bin, ln.lot, ln.qty, ln.received_at, ln.expires_at) for ln in body.lines
        ]
        try:
            async with runtime.transaction() as conn:
                entries = await receive_goods(conn, body.location_id, body.reference, lines, x_actor)
        except StockRefused as exc:
            return problem_response(exc.problems)
        except DuplicateReceipt as exc:
            return JSONResponse({"detail": [{"field": "reference", "problem": str(exc)}]}, status_code=409)
        return {
            "location_id": body.location_id,
            "reference": body.reference,
            "changes": [entry_view(e) for e in entries],
        }

    @router.post(
        "/adjustments", status_code=201, summary="Adjust one position (+/-) with a reason code",
        responses={201: {"model": AdjustmentOut}},
    )
    async def post_adjustment(body: AdjustmentIn, x_actor: Annotated[str | None, Header()] = None) -> Any:
        key = PositionKey(body.sku, body.location_id, body.bin, body.lot)
        try:
            async with runtime.transaction() as conn:
                entry = await adjust_stock(conn, key, body.delta, body.reason_code, body.reference, x_actor)
        except StockRefused as exc:
            return problem_response(exc.problems)
        return {"change": entry_view(entry)}

    @router.post(
        "/transfers", status_code=201, summary="Move stock between bins/locations in one transaction",
        responses={201: {"model": TransferOut}},
    )
    async def post_transfer(body: TransferIn, x_actor: Annotated[str | None, Header()] = None) -> Any:
        transfer = Transfer(
            body.sku,
            body.from_location_id,
            body.from_bin,
            body.lot,
            body.to_location_id,
            body.to_bin,
            body.qty,
            body.reference,
            x_actor,
        )
        try:
            async with runtime.transaction() as conn:
                entries = await transfer_stock(conn, transfer)
        except StockRefused as exc:
            return problem_response(exc.problems)
        return {"changes": [entry_view(e) for e in entries]}

    # --- queries -------------------------------------------------------------------------------

    @router.get(
        "/stock/{sku}", summary="Positions of a SKU with on_hand, reserved (allocation's) and available",
        responses={200: {"model": StockOut}},
    )
    async def get_stock(sku: str) -> Any:
        try:
            reserved = await reserved_by.of_sku(sku)
        except ReservationsUnavailable as exc:
            return _unavailable(exc)
        async with engine.connect() as conn:
            positions = await stock_of_sku(conn, sku, reserved)
        if not positions:
            return _not_found(f"stock of SKU {sku}")
        return {
            "sku": sku,
            "on_hand": sum(p["on_hand"] for p in positions),
            "reserved": sum(p["reserved"] for p in positions),
            "available": sum(p["available"] for p in positions),
            "positions": positions,
        }

    @router.get(
        "/ledger", summary="Ledger rows, newest first (page with before_id)", responses={200: {"model": list[LedgerRow]}}
    )
    async def get_ledger(
        sku: str | None = None,
        location_id: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        before_id: Annotated[int | None, Query(ge=-INT64_MAX, le=INT64_MAX)] = None,
    ) -> Any:
        async with engine.connect() as conn:
            return await ledger_rows(conn, sku, location_id, limit, before_id)

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
                return _not_found(f"location {location_id}")
            except ReservationsUnavailable as exc:
                return _unavailable(exc)
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
            return _unavailable(exc)
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
                return _not_found(f"stock take {stocktake_id}")
            except ReservationsUnavailable as exc:
                return _unavailable(exc)

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
            return _unavailable(exc)
        except StocktakeNotFound:
            return _not_found(f"stock take {stocktake_id}")
        except StockRefused as exc:
            return problem_response(exc.problems, status=409)
        return result

    add_purchase_order_routes(router, runtime)  # purchase orders (expected receipts): their own module
    return router


# Who may call each route (libs/service_host/auth.py); the host refuses to serve a route missing here.
ACCESS: AccessTable = {
    ("POST", "/v1/locations"): ADMIN,
    ("PATCH", "/v1/locations/{location_id}"): ADMIN,
    ("GET", "/v1/locations"): VIEWER,
    ("GET", "/v1/locations/{location_id}"): VIEWER,
    ("POST", "/v1/receipts"): OPERATOR,
    ("POST", "/v1/adjustments"): OPERATOR,
    ("POST", "/v1/transfers"): OPERATOR,
    ("GET", "/v1/stock/{sku}"): VIEWER,
    ("GET", "/v1/ledger"): VIEWER,
    ("GET", "/v1/stocktakes/export"): VIEWER,
    ("POST", "/v1/stocktakes"): OPERATOR,
    ("GET", "/v1/stocktakes/{stocktake_id}"): VIEWER,
    ("POST", "/v1/stocktakes/{stocktake_id}/submit"): OPERATOR,
    **PURCHASE_ORDER_ACCESS,
}
