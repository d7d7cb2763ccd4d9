"""Stock: positions and ledger per SKU with receipt, adjustment and transfer; the stock take
wizard; the backorder queue; availability against demand; pick lists."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import UploadFile

from services.console.client import ServiceRefused
from services.console.web import Outcome, as_int, call, page, refused, services, texts, token

router = APIRouter()

MODES = {
    "all_bins": "All bins: every bin of the location is counted. A bin or lot of the location that is "
                "not in the sheet is counted as zero. Allocated stock is protected: a bin is never set "
                "below what is reserved there, unless you tick 'release the shortfall', which lowers it "
                "anyway and makes allocation re-allocate (or backorder) the affected orders.",
    "specific_bins": "Specific bins: only the rows in the sheet change; every other bin keeps its stock, "
                     "and existing allocations are never touched (a count below the reserved quantity is "
                     "kept at the reserved quantity).",
}


# --- stock per SKU ----------------------------------------------------------------------------------

async def _stock_data(request: Request, sku: str) -> dict[str, Any]:
    locations = await call(request, "GET", "inventory", "/v1/locations")
    stock: Any = None
    ledger: Any = []
    report: Any = []
    if sku:
        try:
            stock = await call(request, "GET", "inventory", f"/v1/stock/{sku}")
        except ServiceRefused as exc:
            if exc.status != 404:
                raise
        ledger, report = await asyncio.gather(
            call(request, "GET", "inventory", "/v1/ledger", params={"sku": sku, "limit": 50}),
            call(request, "GET", "allocation", "/v1/reports/stock", params={"sku": sku}),
        )
    return {"sku": sku, "stock": stock, "ledger": ledger, "report": report, "locations": locations}


@router.get("/stock", response_class=HTMLResponse)
async def stock_page(request: Request) -> HTMLResponse:
    sku = request.query_params.get("sku", "").strip()
    return page(request, "stock.html", **await _stock_data(request, sku), outcome=Outcome(), action="")


@router.get("/stock/live", response_class=HTMLResponse)
async def stock_live(request: Request) -> HTMLResponse:
    sku = request.query_params.get("sku", "").strip()
    return page(request, "stock_live.html", **await _stock_data(request, sku))


async def _stock_action(request: Request, action: str, sku: str, outcome: Outcome) -> HTMLResponse:
    locations = await call(request, "GET", "inventory", "/v1/locations")
    response = page(request, "stock_action.html", action=action, outcome=outcome, sku=sku, locations=locations)
    if not outcome.failed:
        response.headers["HX-Trigger"] = "stock-changed"
    return response


@router.post("/stock/receipt", response_class=HTMLResponse)
async def receipt(request: Request) -> HTMLResponse:
    form = await request.form()
    f = texts(form, "location_id", "reference", "sku", "bin", "lot", "expires_at")
    line: dict[str, Any] = {"sku": f["sku"], "bin": f["bin"], "lot": f["lot"], "qty": as_int(form.get("qty"))}
    if f["expires_at"]:
        line["expires_at"] = f["expires_at"] + ("T00:00:00Z" if len(f["expires_at"]) == 10 else "")
    try:
        await call(request, "POST", "inventory", "/v1/receipts",
                   json={"location_id": f["location_id"], "reference": f["reference"], "lines": [line]})
    except ServiceRefused as exc:
        return await _stock_action(request, "receipt", f["sku"], refused(
            exc, form, ["location_id", "reference", "sku", "bin", "lot", "qty", "expires_at"]))
    return await _stock_action(request, "receipt", f["sku"], Outcome(
        message=f"Received {line['qty']} {f['sku']} at {f['location_id']}/{f['bin']} ({f['reference']}).",
        values={"location_id": f["location_id"], "sku": f["sku"]}))


@router.post("/stock/adjustment", response_class=HTMLResponse)
async def adjustment(request: Request) -> HTMLResponse:
    form = await request.form()
    f = texts(form, "sku", "location_id", "bin", "lot", "reason_code", "reference")
    body = f | {"delta": as_int(form.get("delta")), "reference": f["reference"] or None}
    try:
        await call(request, "POST", "inventory", "/v1/adjustments", json=body)
    except ServiceRefused as exc:
        return await _stock_action(request, "adjustment", f["sku"], refused(
            exc, form, ["sku", "location_id", "bin", "lot", "delta", "reason_code", "reference"]))
    return await _stock_action(request, "adjustment", f["sku"], Outcome(
        message=f"Adjusted {f['sku']} at {f['location_id']}/{f['bin']} by {body['delta']} ({f['reason_code']}).",
        values={"location_id": f["location_id"], "sku": f["sku"]}))


@router.post("/stock/transfer", response_class=HTMLResponse)
async def transfer(request: Request) -> HTMLResponse:
    form = await request.form()
    keys = ("sku", "from_location_id", "from_bin", "lot", "to_location_id", "to_bin", "reference")
    f = texts(form, *keys)
    body = f | {"qty": as_int(form.get("qty")), "reference": f["reference"] or None}
    try:
        await call(request, "POST", "inventory", "/v1/transfers", json=body)
    except ServiceRefused as exc:
        return await _stock_action(request, "transfer", f["sku"], refused(exc, form, [*keys, "qty"]))
    return await _stock_action(request, "transfer", f["sku"], Outcome(
        message=f"Moved {body['qty']} {f['sku']} from {f['from_location_id']}/{f['from_bin']} "
                f"to {f['to_location_id']}/{f['to_bin']}.", values={"sku": f["sku"]}))


# --- stock take wizard --------------------------------------------------------------------------------

@router.get("/stocktake", response_class=HTMLResponse)
async def stocktake_start(request: Request) -> HTMLResponse:
    locations = await call(request, "GET", "inventory", "/v1/locations")
    q = request.query_params
    return page(request, "stocktake.html", locations=locations, modes=MODES,
                location_id=q.get("location_id", ""), mode=q.get("mode", "all_bins"), outcome=Outcome(), rejected=[])


@router.get("/stocktake/sheet")
async def stocktake_sheet(request: Request) -> Response:
    """The location's stock list to count, passed through from inventory with the staff token."""
    q = request.query_params
    fmt = "xlsx" if q.get("format") == "xlsx" else "csv"
    resp = await services(request).call(token(request), "GET", "inventory", "/v1/stocktakes/export",
                                         params={"location_id": q.get("location_id", ""), "format": fmt})
    return Response(resp.content, media_type=resp.headers.get("content-type"),
                    headers={"Content-Disposition": resp.headers.get("content-disposition", "attachment")})


@router.post("/stocktake", response_class=HTMLResponse)
async def stocktake_upload(request: Request) -> Response:
    form = await request.form()
    upload = form.get("file")
    location_id, mode = str(form.get("location_id") or ""), str(form.get("mode") or "")
    data = {"location_id": location_id, "mode": mode,
            "release_shortfall": "true" if form.get("release_shortfall") else "false"}
    files = None
    if isinstance(upload, UploadFile) and upload.filename:
        files = {"file": (upload.filename, await upload.read(), upload.content_type or "application/octet-stream")}
    try:
        preview = await call(request, "POST", "inventory", "/v1/stocktakes", data=data, files=files)
    except ServiceRefused as exc:
        locations = await call(request, "GET", "inventory", "/v1/locations")
        rows = [p for p in exc.problems if p.field.startswith("row ")]
        outcome = refused(exc, form, ["file", "location_id", "mode", "release_shortfall"])
        if rows and len(rows) == len(exc.problems):
            outcome.errors.pop("_form", None)  # each shown in the table of rejected rows instead
        return page(request, "stocktake.html", locations=locations, modes=MODES, location_id=location_id,
                    mode=mode or "all_bins", outcome=outcome, rejected=rows)
    return RedirectResponse(f"/stocktake/{preview['stocktake_id']}", status_code=303)


@router.get("/stocktake/{stocktake_id}", response_class=HTMLResponse)
async def stocktake_review(request: Request, stocktake_id: str) -> HTMLResponse:
    preview = await call(request, "GET", "inventory", f"/v1/stocktakes/{stocktake_id}")
    return page(request, "stocktake_review.html", preview=preview, modes=MODES, outcome=Outcome())


@router.post("/stocktake/{stocktake_id}/submit", response_class=HTMLResponse)
async def stocktake_submit(request: Request, stocktake_id: str) -> HTMLResponse:
    try:
        result = await call(request, "POST", "inventory", f"/v1/stocktakes/{stocktake_id}/submit")
        outcome = Outcome(message="Stock take applied.", result=result)
    except ServiceRefused as exc:
        outcome = refused(exc, {}, [])
    preview = await call(request, "GET", "inventory", f"/v1/stocktakes/{stocktake_id}")
    return page(request, "stocktake_review.html", preview=preview, modes=MODES, outcome=outcome)


# --- backorders, availability, pick lists -------------------------------------------------------------

@router.get("/backorders", response_class=HTMLResponse)
async def backorders(request: Request) -> HTMLResponse:
    sku = request.query_params.get("sku", "").strip()
    queue = await call(request, "GET", "allocation", "/v1/backorders", params={"sku": sku} if sku else {})
    by_sku: dict[str, list[Any]] = {}
    for row in queue:
        by_sku.setdefault(row["sku"], []).append(row)
    return page(request, "backorders.html", sku=sku, by_sku=by_sku)


@router.get("/availability", response_class=HTMLResponse)
async def availability(request: Request) -> HTMLResponse:
    sku = request.query_params.get("sku", "").strip()
    rows = await call(request, "GET", "allocation", "/v1/reports/stock", params={"sku": sku} if sku else {})
    return page(request, "availability.html", sku=sku, rows=rows, live=request.headers.get("HX-Request") == "true")


@router.get("/picklists", response_class=HTMLResponse)
async def picklists(request: Request) -> HTMLResponse:
    location_id = request.query_params.get("location_id", "").strip()
    lists, locations = await asyncio.gather(
        call(request, "GET", "fulfillment", "/v1/picklists", params={"location_id": location_id} if location_id else {}),
        call(request, "GET", "inventory", "/v1/locations"),
    )
    return page(request, "picklists.html", lists=lists, locations=locations, location_id=location_id)
