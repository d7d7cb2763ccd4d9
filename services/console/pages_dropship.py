"""Dropship suppliers: a supplier's stated stock (inventory) and the requests sent to suppliers,
confirmed with carrier and tracking or refused with a reason (fulfillment)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from services.console.client import ServiceRefused
from services.console.web import Outcome, as_int, call, page, refused, texts

router = APIRouter()

REQUEST_STATUSES = ["pending", "requested", "rejected", "confirmed", "refused"]


def stated_lines(text: str) -> list[dict[str, Any]]:
    """``SKU qty`` (or ``SKU, qty``) one a line: the supplier-stock body's lines. A quantity that is
    not a number is sent as typed, so inventory names it (``lines.N.qty``)."""
    lines = []
    for raw in text.splitlines():
        parts = raw.replace(",", " ").replace(";", " ").split()
        if parts:
            lines.append({"sku": parts[0], "qty": as_int(parts[1]) if len(parts) > 1 else None})
    return lines


# --- a supplier's stated stock ----------------------------------------------------------------------

async def _supplier_page(request: Request, location_id: str, outcome: Outcome) -> HTMLResponse:
    locations = await call(request, "GET", "inventory", "/v1/locations")
    location = next((loc for loc in locations if loc["location_id"] == location_id), None)
    ledger = await call(request, "GET", "inventory", "/v1/ledger", params={"location_id": location_id, "limit": 50})
    return page(request, "supplier_stock.html", location_id=location_id, location=location, ledger=ledger,
                outcome=outcome)


@router.get("/locations/{location_id}/supplier-stock", response_class=HTMLResponse)
async def supplier_stock_page(request: Request, location_id: str) -> HTMLResponse:
    return await _supplier_page(request, location_id, Outcome())


@router.post("/locations/{location_id}/supplier-stock", response_class=HTMLResponse)
async def set_supplier_stock(request: Request, location_id: str) -> HTMLResponse:
    form = await request.form()
    f = texts(form, "lines", "reference")
    body = {"lines": stated_lines(f["lines"]), "reference": f["reference"] or None}
    try:
        answer = await call(request, "PUT", "inventory", f"/v1/locations/{location_id}/supplier-stock", json=body)
    except ServiceRefused as exc:
        return await _supplier_page(request, location_id, refused(exc, form, ["lines", "reference", "location_id"]))
    said = ", ".join(f"{ln['sku']} {ln['on_hand']} ({ln['requested']} requested)" for ln in answer["lines"])
    return await _supplier_page(request, location_id, Outcome(
        message=f"Stated stock of {location_id} saved: {said}.", result=answer))


# --- dropship requests --------------------------------------------------------------------------------

def _filters(request: Request) -> dict[str, str]:
    return texts(request.query_params, "location_id", "status")


async def _requests_page(request: Request, outcome: Outcome, rows: dict[str, Outcome] | None = None) -> HTMLResponse:
    filters = _filters(request)
    params = {k: v for k, v in filters.items() if v}
    found = await call(request, "GET", "fulfillment", "/v1/dropship-requests", params=params | {"limit": 200})
    try:  # only the filter's choices: the requests show without inventory
        suppliers = [loc for loc in await call(request, "GET", "inventory", "/v1/locations") if loc["kind"] == "dropship"]
    except ServiceRefused:
        suppliers = []
    return page(request, "dropship.html", requests=found, suppliers=suppliers, filters=filters,
                statuses=REQUEST_STATUSES, query=urlencode(params), outcome=outcome, row_outcomes=rows or {})


@router.get("/dropship", response_class=HTMLResponse)
async def dropship_page(request: Request) -> HTMLResponse:
    return await _requests_page(request, Outcome())


@router.post("/dropship/{request_id}/confirm", response_class=HTMLResponse)
async def confirm_request(request: Request, request_id: str) -> HTMLResponse:
    form = await request.form()
    body = texts(form, "carrier", "tracking_number")
    try:
        await call(request, "POST", "fulfillment", f"/v1/dropship-requests/{request_id}/confirm", json=body)
    except ServiceRefused as exc:
        return await _requests_page(request, Outcome(), {request_id: refused(exc, form, ["carrier", "tracking_number"])})
    return await _requests_page(request, Outcome(
        message=f"Request {request_id} confirmed: shipped by the supplier with {body['carrier']} {body['tracking_number']}."))


@router.post("/dropship/{request_id}/refuse", response_class=HTMLResponse)
async def refuse_request(request: Request, request_id: str) -> HTMLResponse:
    form = await request.form()
    body = texts(form, "reason")
    try:
        await call(request, "POST", "fulfillment", f"/v1/dropship-requests/{request_id}/refuse", json=body)
    except ServiceRefused as exc:
        return await _requests_page(request, Outcome(), {request_id: refused(exc, form, ["reason"])})
    return await _requests_page(request, Outcome(
        message=f"Request {request_id} refused: allocation allocates its lines again."))
