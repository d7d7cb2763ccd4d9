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


# --- channel rules (order intake) -----------------------------------------------------------------

RULE_INPUTS = ["name", "position", "channels", "countries", "currency", "total_at_least", "total_below", "skus",
               "customer_tags", "hold", "priority", "ship_complete", "tags", "stop"]


def _rule_input(service_field: str) -> str:
    """``conditions.channels.1`` -> ``channels``: the form input a rule problem belongs beside."""
    parts = [p for p in service_field.split(".") if p not in ("conditions", "actions") and not p.isdigit()]
    return parts[0] if parts else service_field


def _rule_body(form: Any) -> dict[str, Any]:
    def text(name: str) -> str:
        return str(form.get(name) or "").strip()

    conditions: dict[str, Any] = {k: _list(form.get(k)) for k in ("channels", "countries", "skus", "customer_tags")
                                  if _list(form.get(k))}
    conditions |= {k: text(k) for k in ("currency", "total_at_least", "total_below") if text(k)}
    actions: dict[str, Any] = {"hold": bool(form.get("hold")), "ship_complete": bool(form.get("ship_complete")),
                               "tags": _list(form.get("tags"))}
    if text("priority"):
        actions["priority"] = as_int(form.get("priority"))
    return {"name": text("name"), "position": as_int(form.get("position")) if text("position") else 100,
            "stop": bool(form.get("stop")), "conditions": conditions, "actions": actions}


async def _rules_page(request: Request, outcome: Outcome) -> HTMLResponse:
    rules = await call(request, "GET", "order_intake", "/v1/rules")
    return page(request, "rules.html", rules=rules, outcome=outcome)


@router.get("/rules", response_class=HTMLResponse)
async def rules_page(request: Request) -> HTMLResponse:
    return await _rules_page(request, Outcome())


@router.post("/rules", response_class=HTMLResponse)
async def add_rule(request: Request) -> HTMLResponse:
    form = await request.form()
    try:
        rule = await call(request, "POST", "order_intake", "/v1/rules", json=_rule_body(form))
    except ServiceRefused as exc:
        aliases = {p.field: _rule_input(p.field) for p in exc.problems}
        return await _rules_page(request, refused(exc, form, RULE_INPUTS, aliases))
    return await _rules_page(request, Outcome(message=f"Rule {rule['name']!r} added ({rule['rule_id']})."))


@router.post("/rules/{rule_id}/delete", response_class=HTMLResponse)
async def remove_rule(request: Request, rule_id: str) -> HTMLResponse:
    try:
        await call(request, "DELETE", "order_intake", f"/v1/rules/{rule_id}")
    except ServiceRefused as exc:
        return await _rules_page(request, Outcome(errors={"_form": [f"{p.field}: {p.problem}" for p in exc.problems]}))
    return await _rules_page(request, Outcome(message=f"Rule {rule_id} deleted."))
