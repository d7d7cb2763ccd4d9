"""HTTP routes of stock movements (receipts, adjustments, transfers) and what they leave
(positions of a SKU, the ledger), added to inventory's router by ``http.build_router``; who
may call them is in ``http.ACCESS``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from libs.contracts.storable import INT64_MAX, StorableDatetime, Text
from libs.service_host import Runtime
from libs.service_host.errors import problem_response
from services.inventory.domain.stock import ADJUSTMENT_REASON_CODES, PositionKey, Transfer
from services.inventory.entrypoints.common import (
    ChangeOut,
    Code,
    Lot,
    Reference,
    aware,
    not_found,
    reservations_unavailable,
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


class ReceiptLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: Code
    bin: Code
    lot: Lot = ""
    qty: int = Field(gt=0, le=10_000_000, strict=True)
    received_at: StorableDatetime | None = Field(default=None, description="default: now")
    expires_at: StorableDatetime | None = None

    _dates_ok = field_validator("received_at", "expires_at")(lambda cls, v: aware(v))


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

def add_stock_routes(router: APIRouter, runtime: Runtime, reserved_by: Reservations) -> None:
    """The stock movement and stock query routes, on inventory's ``/v1`` router; ``reserved_by``:
    allocation's reservations, which the positions of a SKU show."""
    engine = runtime.engine

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
            return reservations_unavailable(exc)
        async with engine.connect() as conn:
            positions = await stock_of_sku(conn, sku, reserved)
        if not positions:
            return not_found(f"stock of SKU {sku}")
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
