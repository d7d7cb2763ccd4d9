"""Orders: the list with counts and the backlog oldest first, and one order with every manual action."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from services.console.client import ServiceRefused
from services.console.web import TEMPLATES, Outcome, as_int, call, page, refused, texts

router = APIRouter()

STATUSES = ["held", "pending", "allocated", "partially_allocated", "backordered", "on_hold", "packed", "shipped", "cancelled"]
LINE_STATES = ["allocated", "backordered", "packed", "shipped", "cancelled", "returned"]


def _filters(request: Request) -> dict[str, str]:
    q = request.query_params
    return {k: q.get(k, "").strip() for k in ("status", "channel", "older_than_hours")}


async def _orders_data(request: Request, filters: dict[str, str]) -> dict[str, Any]:
    params = {k: v for k, v in filters.items() if v and k in ("status", "channel")} | {"limit": 200}
    orders, counts, backlog = await asyncio.gather(
        call(request, "GET", "order_intake", "/v1/orders", params=params),
        call(request, "GET", "order_intake", "/v1/reports/orders-by-channel-status"),
        call(request, "GET", "allocation", "/v1/reports/backorders-by-age"),
    )
    hours = as_int(filters.get("older_than_hours"))
    if isinstance(hours, int) and hours > 0:  # age is the placed time: a view filter, not a rule
        cutoff = datetime.now(UTC) - timedelta(hours=hours)
        orders = [o for o in orders if datetime.fromisoformat(o["placed_at"].replace("Z", "+00:00")) <= cutoff]
    channels = sorted({c["channel"] for c in counts})
    statuses = sorted({c["status"] for c in counts})
    grid = {(c["channel"], c["status"]): c["orders"] for c in counts}
    return {"orders": orders, "channels": channels, "statuses": statuses, "grid": grid, "backlog": backlog,
            "filters": filters, "all_statuses": STATUSES}


@router.get("/orders", response_class=HTMLResponse)
async def orders_page(request: Request) -> HTMLResponse:
    filters = _filters(request)
    return page(request, "orders.html", **await _orders_data(request, filters))


@router.get("/orders/live", response_class=HTMLResponse)
async def orders_live(request: Request) -> HTMLResponse:
    filters = _filters(request)
    return page(request, "orders_live.html", **await _orders_data(request, filters))


@router.get("/orders/go", response_class=HTMLResponse)
async def order_go(request: Request) -> HTMLResponse:
    return await order_page(request, request.query_params.get("order_id", "").strip())


# --- one order -------------------------------------------------------------------------------------

async def _order_data(request: Request, order_id: str) -> dict[str, Any]:
    order = await call(request, "GET", "order_intake", f"/v1/orders/{order_id}")
    try:
        allocation = await call(request, "GET", "allocation", f"/v1/allocations/{order_id}")
    except ServiceRefused as exc:
        if exc.status != 404:
            raise
        allocation = {"allocations": [], "history": [], "backorders": []}  # allocation has not seen it yet
    shipment_ids = list(dict.fromkeys(
        a["shipment_id"] for a in allocation["allocations"] + allocation["history"] if a.get("shipment_id")))
    shipments = []
    for sid in shipment_ids:
        try:
            shipments.append(await call(request, "GET", "fulfillment", f"/v1/shipments/{sid}"))
        except ServiceRefused:
            shipments.append({"shipment_id": sid, "status": "(not known to fulfillment yet)", "lines": []})
    return {"order": order, "allocation": allocation, "shipments": shipments, "line_states": LINE_STATES}


@router.get("/orders/{order_id}", response_class=HTMLResponse)
async def order_page(request: Request, order_id: str) -> HTMLResponse:
    data = await _order_data(request, order_id)
    locations = await call(request, "GET", "inventory", "/v1/locations")
    return page(request, "order.html", **data, locations=locations, outcomes={})


@router.get("/orders/{order_id}/live", response_class=HTMLResponse)
async def order_live(request: Request, order_id: str) -> HTMLResponse:
    return page(request, "order_live.html", **await _order_data(request, order_id))


# --- actions: each answers with its own form, showing the service's problems beside the fields ---

async def _action(request: Request, order_id: str, action: str, outcome: Outcome) -> HTMLResponse:
    data = await _order_data(request, order_id)
    locations = await call(request, "GET", "inventory", "/v1/locations")
    response = page(request, "order_action.html", **data, locations=locations, action=action,
                    outcome=outcome)
    if action == "pack" and not outcome.failed:
        # The ship form lists packed shipments: send it again, out of band, with the new one.
        ship_form = TEMPLATES.get_template("order_action.html").render(
            **data, request=request, locations=locations, action="ship", outcome=None, oob=True)
        response.body = bytes(response.body) + ship_form.encode()
        response.headers["content-length"] = str(len(response.body))
    if not outcome.failed:
        response.headers["HX-Trigger"] = "order-changed"  # the live panel refreshes at once
    return response


@router.post("/orders/{order_id}/cancel", response_class=HTMLResponse)
async def cancel(request: Request, order_id: str) -> HTMLResponse:
    form = await request.form()
    line_ids = [str(v) for v in form.getlist("line_ids")]
    whole = form.get("scope") == "order"
    body: dict[str, Any] = {"reason": str(form.get("reason") or "customer request")}
    if not whole:
        body["line_ids"] = line_ids
    try:
        await call(request, "POST", "order_intake", f"/v1/orders/{order_id}/cancel", json=body)
    except ServiceRefused as exc:
        return await _action(request, order_id, "cancel", refused(exc, form, ["line_ids", "reason"]))
    what = "the whole order" if whole else "line(s) " + ", ".join(line_ids)
    return await _action(request, order_id, "cancel", Outcome(message=f"Cancellation of {what} requested."))


@router.post("/orders/{order_id}/change", response_class=HTMLResponse)
async def change_quantity(request: Request, order_id: str) -> HTMLResponse:
    form = await request.form()
    line_id = str(form.get("line_id") or "")
    try:
        order = await call(request, "GET", "order_intake", f"/v1/orders/{order_id}")
        line = next((ln for ln in order["lines"] if ln["line_id"] == line_id), None)
        change = {"line_id": line_id, "qty": as_int(form.get("qty")),
                  "sku": line["sku"] if line else "", "unit_price": line["unit_price"] if line else "0"}
        await call(request, "PATCH", "order_intake", f"/v1/orders/{order_id}", json={"lines": [change]})
    except ServiceRefused as exc:
        return await _action(request, order_id, "change", refused(exc, form, ["line_id", "qty"]))
    return await _action(request, order_id, "change",
                         Outcome(message=f"Line {line_id}: new quantity {form.get('qty')} requested."))


@router.post("/orders/{order_id}/deallocate", response_class=HTMLResponse)
async def deallocate(request: Request, order_id: str) -> HTMLResponse:
    form = await request.form()
    line_ids = [str(v) for v in form.getlist("line_ids")]
    try:
        await call(request, "POST", "allocation", f"/v1/orders/{order_id}/deallocate", json={"line_ids": line_ids})
    except ServiceRefused as exc:
        return await _action(request, order_id, "deallocate", refused(exc, form, ["line_ids"]))
    return await _action(request, order_id, "deallocate", Outcome(
        message=f"Allocations of line(s) {', '.join(line_ids)} removed; the line(s) are on hold."))


@router.post("/orders/{order_id}/hold", response_class=HTMLResponse)
async def hold(request: Request, order_id: str) -> HTMLResponse:
    form = await request.form()
    reason = texts(form, "reason")["reason"]
    try:
        await call(request, "POST", "order_intake", f"/v1/orders/{order_id}/hold", json={"reason": reason})
    except ServiceRefused as exc:
        return await _action(request, order_id, "hold", refused(exc, form, ["reason"]))
    return await _action(request, order_id, "hold", Outcome(
        message=f"Order held ({reason}): nothing more is allocated or packed until the hold is released."))


@router.post("/orders/{order_id}/release-hold", response_class=HTMLResponse)
async def release_hold(request: Request, order_id: str) -> HTMLResponse:
    form = await request.form()
    line_ids = [str(v) for v in form.getlist("line_ids")]
    try:
        order = await call(request, "GET", "order_intake", f"/v1/orders/{order_id}")
        if order.get("hold"):  # held at intake (by a rule, or by staff after it was announced)
            answer = await call(request, "POST", "order_intake", f"/v1/orders/{order_id}/release-hold")
            if order["hold"].get("announced"):
                return await _action(request, order_id, "release", Outcome(
                    message="Hold released: allocation fills the order again at its place in the queue."))
            return await _action(request, order_id, "release", Outcome(
                message=f"Released from review: announced to allocation ({answer['announced_events']} event(s))."))
        await call(request, "POST", "allocation", f"/v1/orders/{order_id}/release-hold",
                   json={"line_ids": line_ids or None})
    except ServiceRefused as exc:
        return await _action(request, order_id, "release", refused(exc, form, ["line_ids"]))
    return await _action(request, order_id, "release", Outcome(message="Hold released; the lines are back in the queue."))


@router.post("/orders/{order_id}/reallocate", response_class=HTMLResponse)
async def reallocate(request: Request, order_id: str) -> HTMLResponse:
    form = await request.form()
    try:
        await call(request, "POST", "allocation", f"/v1/orders/{order_id}/reallocate",
                   json={"location_id": str(form.get("location_id") or "")})
    except ServiceRefused as exc:
        return await _action(request, order_id, "reallocate", refused(exc, form, ["location_id"]))
    return await _action(request, order_id, "reallocate",
                         Outcome(message=f"Re-allocated preferring {form.get('location_id')}."))


@router.post("/orders/{order_id}/move", response_class=HTMLResponse)
async def move(request: Request, order_id: str) -> HTMLResponse:
    form = await request.form()
    body = {"from_order_id": order_id, "to_order_id": str(form.get("to_order_id") or "").strip(),
            "sku": str(form.get("sku") or ""), "qty": as_int(form.get("qty")),
            "location_id": str(form.get("location_id") or "") or None}
    try:
        await call(request, "POST", "allocation", "/v1/transfers", json=body)
    except ServiceRefused as exc:
        return await _action(request, order_id, "move", refused(exc, form, ["to_order_id", "sku", "qty", "location_id"],
                                                                {"from_order_id": "to_order_id"}))
    return await _action(request, order_id, "move",
                         Outcome(message=f"Moved {body['qty']} {body['sku']} to order {body['to_order_id']}."))


@router.post("/orders/{order_id}/pack", response_class=HTMLResponse)
async def pack(request: Request, order_id: str) -> HTMLResponse:
    form = await request.form()
    line_ids = [str(v) for v in form.getlist("line_ids")]
    serials = {}
    for key in form:
        if key.startswith("serials_") and str(form.get(key) or "").strip():
            serials[key.removeprefix("serials_")] = [s.strip() for s in str(form.get(key)).replace("\n", ",").split(",") if s.strip()]
    body: dict[str, Any] = {"serials": serials}
    if line_ids:
        body["line_ids"] = line_ids
    try:
        shipment = await call(request, "POST", "fulfillment", f"/v1/orders/{order_id}/pack", json=body)
    except ServiceRefused as exc:
        inputs = ["line_ids"] + [f"serials_{k}" for k in serials]
        aliases = {f"serials.{k}": f"serials_{k}" for k in serials}
        return await _action(request, order_id, "pack", refused(exc, form, inputs, aliases))
    units = sum(int(ln.get("qty", 0)) for ln in shipment.get("lines", []))
    return await _action(request, order_id, "pack", Outcome(
        message=f"Shipment {shipment.get('shipment_id')} {shipment.get('status')}: {units} unit(s).", result=shipment))


@router.post("/orders/{order_id}/ship", response_class=HTMLResponse)
async def ship(request: Request, order_id: str) -> HTMLResponse:
    form = await request.form()
    shipment_id = str(form.get("shipment_id") or "")
    try:
        if not shipment_id:
            raise ServiceRefused(422, [])
        await call(request, "POST", "fulfillment", f"/v1/shipments/{shipment_id}/ship",
                   json={"carrier": str(form.get("carrier") or ""), "tracking_number": str(form.get("tracking_number") or "")})
    except ServiceRefused as exc:
        outcome = refused(exc, form, ["shipment_id", "carrier", "tracking_number"])
        if not exc.problems:
            outcome.errors = {"shipment_id": ["shipment_id: choose a packed shipment"]}
        return await _action(request, order_id, "ship", outcome)
    return await _action(request, order_id, "ship", Outcome(message=f"Shipment {shipment_id} shipped with {form.get('carrier')}."))


@router.post("/orders/{order_id}/return", response_class=HTMLResponse)
async def record_return(request: Request, order_id: str) -> HTMLResponse:
    form = await request.form()
    line = {k: str(form.get(k) or "") for k in ("line_id", "condition", "location_id", "bin", "lot")}
    body = {"order_id": order_id, "lines": [line | {"qty": as_int(form.get("qty"))}]}
    try:
        result = await call(request, "POST", "fulfillment", "/v1/returns", json=body)
    except ServiceRefused as exc:
        return await _action(request, order_id, "return", refused(
            exc, form, ["line_id", "qty", "condition", "location_id", "bin", "lot"]))
    refund = result.get("refund_total") if isinstance(result, dict) else None
    return await _action(request, order_id, "return", Outcome(
        message=f"Return recorded; refund due: {refund}.", result=result))
