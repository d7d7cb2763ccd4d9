"""HTTP routes of purchase orders (expected receipts), added to inventory's router by
``http.build_router``; who may call them is ``ACCESS`` here, merged into ``http.ACCESS``.

Bad input (an unknown SKU or location, a quantity below 1, an expected date in the past, a
change, cancellation or receipt of an order that is no longer open): 422 naming the field,
nothing changed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.contracts.storable import StorableDatetime
from libs.service_host import Runtime
from libs.service_host.auth import OPERATOR, VIEWER, AccessTable
from libs.service_host.errors import problem_response
from services.inventory.domain.purchase_orders import PurchaseOrder
from services.inventory.entrypoints.common import ChangeOut, Code, Lot, Reference, aware
from services.inventory.service_layer.purchase_orders import (
    PurchaseOrderNotFound,
    cancel_purchase_order,
    change_purchase_order,
    create_purchase_order,
    get_purchase_order,
    list_purchase_orders,
    receive_purchase_order,
)
from services.inventory.service_layer.stock import DuplicateReceipt, StockRefused, entry_view

Quantity = Annotated[int, Field(strict=True, ge=1, le=10_000_000)]


class PurchaseOrderIn(BaseModel):
    """An expected receipt of one SKU at one location."""

    model_config = ConfigDict(extra="forbid")
    sku: Code
    location_id: Code
    qty: Quantity
    expected_date: date = Field(description="when the goods are expected (today or later)")
    supplier_reference: Reference | None = Field(default=None, description="the supplier's order number")


class PurchaseOrderChanges(BaseModel):
    """Some terms of an open purchase order; the rest stay as they are."""

    model_config = ConfigDict(extra="forbid")
    qty: Quantity | None = None
    expected_date: date | None = None
    supplier_reference: Reference | None = None


class PurchaseOrderReceiptIn(BaseModel):
    """The goods receipt of a purchase order: its SKU at its location, into a bin/lot. Closes the
    order; fewer units than ordered is a short receipt (the rest is not coming)."""

    model_config = ConfigDict(extra="forbid")
    reference: Code = Field(description="the GRN number; booked once per location")
    bin: Code
    lot: Lot = ""
    qty: Quantity
    received_at: StorableDatetime | None = Field(default=None, description="default: now")
    expires_at: StorableDatetime | None = None

    _dates_ok = field_validator("received_at", "expires_at")(lambda cls, v: aware(v))


class PurchaseOrderOut(BaseModel):
    purchase_order_id: str
    sku: str
    location_id: str
    qty: int
    expected_date: date
    supplier_reference: str | None
    status: Literal["open", "cancelled", "received"]
    received_qty: int = Field(description="units the receipt booked (short when below qty)")
    receipt_reference: str | None
    version: int


class PurchaseOrderReceiptOut(BaseModel):
    purchase_order: PurchaseOrderOut
    changes: list[ChangeOut]


def _not_found(purchase_order_id: str) -> JSONResponse:
    return JSONResponse({"detail": f"no purchase order {purchase_order_id}"}, status_code=404)


def add_purchase_order_routes(router: APIRouter, runtime: Runtime) -> None:
    """The purchase-order routes, on inventory's ``/v1`` router."""
    engine = runtime.engine

    @router.post(
        "/purchase-orders", status_code=201,
        summary="Create a purchase order (expected receipt; publishes PurchaseOrderChanged)",
        responses={201: {"model": PurchaseOrderOut}},
    )
    async def post_purchase_order(body: PurchaseOrderIn, x_actor: Annotated[str | None, Header()] = None) -> Any:
        try:
            async with runtime.transaction() as conn:
                po = await create_purchase_order(
                    conn, sku=body.sku, location_id=body.location_id, qty=body.qty, expected_date=body.expected_date,
                    supplier_reference=body.supplier_reference, actor=x_actor)
        except StockRefused as exc:
            return problem_response(exc.problems)
        return JSONResponse(_view(po), status_code=201)

    @router.get(
        "/purchase-orders", summary="Purchase orders, earliest expected first (filters: sku, location_id, status)",
        responses={200: {"model": list[PurchaseOrderOut]}},
    )
    async def get_purchase_orders(sku: str | None = None, location_id: str | None = None,
                                  status: Literal["open", "cancelled", "received"] | None = None) -> Any:
        async with engine.connect() as conn:
            rows = await list_purchase_orders(conn, sku=sku, location_id=location_id, status=status)
        return [_json(r) for r in rows]

    @router.get(
        "/purchase-orders/{purchase_order_id}", summary="One purchase order",
        responses={200: {"model": PurchaseOrderOut}},
    )
    async def get_one_purchase_order(purchase_order_id: str) -> Any:
        async with engine.connect() as conn:
            try:
                return _view(await get_purchase_order(conn, purchase_order_id))
            except PurchaseOrderNotFound:
                return _not_found(purchase_order_id)

    @router.patch(
        "/purchase-orders/{purchase_order_id}",
        summary="Change an open purchase order's qty, expected_date or supplier_reference (publishes PurchaseOrderChanged)",
        responses={200: {"model": PurchaseOrderOut}},
    )
    async def patch_purchase_order(purchase_order_id: str, body: PurchaseOrderChanges,
                                   x_actor: Annotated[str | None, Header()] = None) -> Any:
        return await _change(runtime, purchase_order_id, lambda conn: change_purchase_order(
            conn, purchase_order_id, qty=body.qty, expected_date=body.expected_date,
            supplier_reference=body.supplier_reference, actor=x_actor))

    @router.post(
        "/purchase-orders/{purchase_order_id}/cancel",
        summary="Cancel an open purchase order (publishes PurchaseOrderChanged; pre-sold lines go back to the queue)",
        responses={200: {"model": PurchaseOrderOut}},
    )
    async def post_cancel(purchase_order_id: str, x_actor: Annotated[str | None, Header()] = None) -> Any:
        return await _change(runtime, purchase_order_id,
                             lambda conn: cancel_purchase_order(conn, purchase_order_id, x_actor))

    @router.post(
        "/purchase-orders/{purchase_order_id}/receipts", status_code=201,
        summary="Book the goods receipt of an open purchase order: stock in (StockAdjusted) and the order"
        " received (PurchaseOrderChanged), one transaction",
        responses={201: {"model": PurchaseOrderReceiptOut}},
    )
    async def post_po_receipt(purchase_order_id: str, body: PurchaseOrderReceiptIn,
                              x_actor: Annotated[str | None, Header()] = None) -> Any:
        try:
            async with runtime.transaction() as conn:
                po, entries = await receive_purchase_order(
                    conn, purchase_order_id, reference=body.reference, bin=body.bin, lot=body.lot, qty=body.qty,
                    received_at=body.received_at, expires_at=body.expires_at, actor=x_actor)
        except PurchaseOrderNotFound:
            return _not_found(purchase_order_id)
        except StockRefused as exc:
            return problem_response(exc.problems)
        except DuplicateReceipt as exc:
            return JSONResponse({"detail": [{"field": "reference", "problem": str(exc)}]}, status_code=409)
        changes = [entry_view(e) for e in entries]
        return JSONResponse({"purchase_order": _view(po), "changes": changes}, status_code=201)


async def _change(runtime: Runtime, purchase_order_id: str,
                  change: Callable[[AsyncConnection], Awaitable[PurchaseOrder]]) -> Any:
    """Apply a change to one purchase order in a transaction: its view, 404 or the 422 problems."""
    try:
        async with runtime.transaction() as conn:
            po = await change(conn)
    except PurchaseOrderNotFound:
        return _not_found(purchase_order_id)
    except StockRefused as exc:
        return problem_response(exc.problems)
    return _view(po)


def _json(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "expected_date": row["expected_date"].isoformat()}


def _view(po: Any) -> dict[str, Any]:
    return _json(asdict(po))


ACCESS: AccessTable = {
    ("POST", "/v1/purchase-orders"): OPERATOR,
    ("GET", "/v1/purchase-orders"): VIEWER,
    ("GET", "/v1/purchase-orders/{purchase_order_id}"): VIEWER,
    ("PATCH", "/v1/purchase-orders/{purchase_order_id}"): OPERATOR,
    ("POST", "/v1/purchase-orders/{purchase_order_id}/cancel"): OPERATOR,
    ("POST", "/v1/purchase-orders/{purchase_order_id}/receipts"): OPERATOR,
}
