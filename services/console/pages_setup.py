"""Set-up for admins: locations (create, activate / deactivate, priority) and the allocation
policy per channel."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from services.console.client import ServiceRefused
from services.console.web import Outcome, as_int, call, page, refused

router = APIRouter()

LOCATION_INPUTS = ["location_id", "name", "kind", "country", "lat", "lon", "priority", "ships_to", "channels", "pickup"]


def _number(value: Any) -> Any:
    text = str(value or "").strip()
    try:
        return float(text) if text else None
    except ValueError:
        return text


def _list(value: Any) -> list[str]:
    return [v.strip() for v in str(value or "").split(",") if v.strip()]


async def _locations_page(request: Request, outcome: Outcome, row_outcomes: dict[str, Outcome] | None = None) -> HTMLResponse:
    locations = await call(request, "GET", "inventory", "/v1/locations")
    return page(request, "locations.html", locations=locations, outcome=outcome, row_outcomes=row_outcomes or {})


@router.get("/locations", response_class=HTMLResponse)
async def locations_page(request: Request) -> HTMLResponse:
    return await _locations_page(request, Outcome())


@router.post("/locations", response_class=HTMLResponse)
async def create_location(request: Request) -> HTMLResponse:
    form = await request.form()
    body = {
        "location_id": str(form.get("location_id") or "").strip(), "name": str(form.get("name") or "").strip(),
        "kind": str(form.get("kind") or "warehouse"), "country": str(form.get("country") or "").strip(),
        "lat": _number(form.get("lat")), "lon": _number(form.get("lon")), "priority": as_int(form.get("priority")) or 0,
        "ships_to": _list(form.get("ships_to")), "channels": _list(form.get("channels")) or None,
        "pickup": bool(form.get("pickup")), "active": True,
    }
    try:
        await call(request, "POST", "inventory", "/v1/locations", json=body)
    except ServiceRefused as exc:
        return await _locations_page(request, refused(exc, form, LOCATION_INPUTS, {"ships_to.0": "ships_to"}))
    return await _locations_page(request, Outcome(message=f"Location {body['location_id']} saved."))


@router.post("/locations/{location_id}", response_class=HTMLResponse)
async def change_location(request: Request, location_id: str) -> HTMLResponse:
    form = await request.form()
    changes: dict[str, Any] = {}
    if "active" in form:
        changes["active"] = form.get("active") == "true"
    if "priority" in form:
        changes["priority"] = as_int(form.get("priority"))
    try:
        await call(request, "PATCH", "inventory", f"/v1/locations/{location_id}", json=changes)
    except ServiceRefused as exc:
        return await _locations_page(request, Outcome(), {location_id: refused(exc, form, ["active", "priority"])})
    said = ", ".join(f"{k} {v}" for k, v in changes.items())
    return await _locations_page(request, Outcome(message=f"Location {location_id}: {said}."))


# --- allocation policy ----------------------------------------------------------------------------------

@router.get("/policy", response_class=HTMLResponse)
async def policy_page(request: Request) -> HTMLResponse:
    channel = request.query_params.get("channel", "").strip() or "*"
    policy = await call(request, "GET", "allocation", "/v1/policy", params={"channel": channel})
    return page(request, "policy.html", channel=channel, policy=policy, outcome=Outcome())


@router.post("/policy", response_class=HTMLResponse)
async def save_policy(request: Request) -> HTMLResponse:
    form = await request.form()
    channel = str(form.get("channel") or "*").strip() or "*"
    current = await call(request, "GET", "allocation", "/v1/policy", params={"channel": channel})
    max_locations = as_int(form.get("max_locations_per_order"))
    document = {
        "channel": channel,
        "rank_by": _list(form.get("rank_by")),
        "fewest_splits": bool(form.get("fewest_splits")),
        "max_locations_per_order": max_locations,
        "buffer": as_int(form.get("buffer")) or 0,
        "safety_stock": current.get("safety_stock", []),
    }
    try:
        policy = await call(request, "PUT", "allocation", "/v1/policy", json=document)
        outcome = Outcome(message=f"Policy of channel {channel} saved (version {policy.get('version')}).")
    except ServiceRefused as exc:
        outcome = refused(exc, form, ["channel", "rank_by", "fewest_splits", "max_locations_per_order", "buffer"])
        policy = current | {k: v for k, v in document.items() if k != "safety_stock"}
    policy = await call(request, "GET", "allocation", "/v1/policy", params={"channel": channel}) if not outcome.failed else policy
    return page(request, "policy.html", channel=channel, policy=policy, outcome=outcome)
