"""Purchase orders (expected receipts at inventory): the list with filters, create, change,
cancel, and booking the goods receipt against one."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from services.console.client import ServiceRefused
from services.console.web import Outcome, as_int, call, page, refused, texts

router = APIRouter()

PO_STATUSES = ["open", "received", "cancelled"]
CREATE_INPUTS = ["sku", "location_id", "qty", "expected_date", "supplier_reference"]
CHANGE_INPUTS = ["qty", "expected_date", "supplier_reference", "purchase_order_id"]
RECEIPT_INPUTS = ["reference", "bin", "lot", "qty", "expires_at", "purchase_order_id"]


def _filters(request: Request) -> dict[str, str]:
    return texts(request.query_params, "sku", "location_id", "status")


async def _po_page(request: Request, outcome: Outcome, rows: dict[str, Outcome] | None = None) -> HTMLResponse:
    filters = _filters(request)
    params = {k: v for k, v in filters.items() if v}
    orders, locations = await asyncio.gather(
        call(request, "GET", "inventory", "/v1/purchase-orders", params=params),
        call(request, "GET", "inventory", "/v1/locations"),
    )
    return page(request, "purchase_orders.html", orders=orders, locations=locations, filters=filters,
                statuses=PO_STATUSES, query=urlencode(params), outcome=outcome, row_outcomes=rows or {})


@router.get("/purchase-orders", response_class=HTMLResponse)
async def purchase_orders_page(request: Request) -> HTMLResponse:
    return await _po_page(request, Outcome())


@router.post("/purchase-orders", response_class=HTMLResponse)
async def create_purchase_order(request: Request) -> HTMLResponse:
    form = await request.form()
    f = texts(form, "sku", "location_id", "expected_date", "supplier_reference")
    body = f | {"qty": as_int(form.get("qty")), "supplier_reference": f["supplier_reference"] or None,
                "expected_date": f["expected_date"] or None}
    try:
        po = await call(request, "POST", "inventory", "/v1/purchase-orders", json=body)
    except ServiceRefused as exc:
        return await _po_page(request, refused(exc, form, CREATE_INPUTS))
    return await _po_page(request, Outcome(
        message=f"Purchase order {po['purchase_order_id']} created: {po['qty']} {po['sku']} "
                f"expected at {po['location_id']} on {po['expected_date']}."))


@router.post("/purchase-orders/{purchase_order_id}/change", response_class=HTMLResponse)
async def change_purchase_order(request: Request, purchase_order_id: str) -> HTMLResponse:
    form = await request.form()
    f = texts(form, "qty", "expected_date", "supplier_reference")
    changes: dict[str, Any] = {}
    if f["qty"]:
        changes["qty"] = as_int(f["qty"])
    if f["expected_date"]:
        changes["expected_date"] = f["expected_date"]
    if f["supplier_reference"]:
        changes["supplier_reference"] = f["supplier_reference"]
    try:
        await call(request, "PATCH", "inventory", f"/v1/purchase-orders/{purchase_order_id}", json=changes)
    except ServiceRefused as exc:
        return await _po_page(request, Outcome(), {purchase_order_id: refused(exc, form, CHANGE_INPUTS)})
    said = ", ".join(f"{k} {v}" for k, v in changes.items()) or "nothing"
    return await _po_page(request, Outcome(message=f"Purchase order {purchase_order_id} changed: {said}."))


@router.post("/purchase-orders/{purchase_order_id}/cancel", response_class=HTMLResponse)
async def cancel_purchase_order(request: Request, purchase_order_id: str) -> HTMLResponse:
    try:
        await call(request, "POST", "inventory", f"/v1/purchase-orders/{purchase_order_id}/cancel")
    except ServiceRefused as exc:
        return await _po_page(request, Outcome(), {purchase_order_id: refused(exc, {}, ["purchase_order_id"])})
    return await _po_page(request, Outcome(
        message=f"Purchase order {purchase_order_id} cancelled; orders pre-sold against it wait in the queue again."))


@router.post("/purchase-orders/{purchase_order_id}/receipt", response_class=HTMLResponse)
async def book_receipt(request: Request, purchase_order_id: str) -> HTMLResponse:
    form = await request.form()
    f = texts(form, "reference", "bin", "lot", "expires_at")
    body: dict[str, Any] = {"reference": f["reference"], "bin": f["bin"], "lot": f["lot"], "qty": as_int(form.get("qty"))}
    if f["expires_at"]:
        body["expires_at"] = f["expires_at"] + ("T00:00:00Z" if len(f["expires_at"]) == 10 else "")
    try:
        answer = await call(request, "POST", "inventory", f"/v1/purchase-orders/{purchase_order_id}/receipts", json=body)
    except ServiceRefused as exc:
        return await _po_page(request, Outcome(), {purchase_order_id: refused(exc, form, RECEIPT_INPUTS)})
    po = answer["purchase_order"]
    short = f" (short: {po['received_qty']} of {po['qty']})" if po["received_qty"] < po["qty"] else ""
    return await _po_page(request, Outcome(
        message=f"Receipt {f['reference']} booked against {purchase_order_id}: {po['received_qty']} {po['sku']} "
                f"at {po['location_id']}/{f['bin']}{short}."))
