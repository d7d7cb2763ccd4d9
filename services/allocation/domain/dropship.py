"""Dropship locations: a supplier that ships for the seller (SPEC 3.9), its stated stock mirrored
as an ordinary stock position at a location of kind ``dropship``.

- ``plan_with_dropship``: the policy's ``dropship_mode`` decides when lines may go there:
  ``fallback`` (default) plans own locations first and gives a supplier only what they cannot;
  ``always`` asks the suppliers first and own locations for the rest; ``never`` leaves them out.
  ``dropship_skus`` limits dropship to those SKUs. A supplier never gives more than its stated
  stock less what is already requested from it (its position's ``free``, as for any location).
- ``dropship_commands``: the request locks its units; a refusal releases them.
"""

from __future__ import annotations

from collections.abc import Callable

from services.allocation.domain.model import Location, Order, OrderLine
from services.allocation.domain.planner import LocationPlanner, Piece, Plan
from services.allocation.domain.policy import Policy

DROPSHIP = "dropship"  # the location kind
REFUSED = "dropship_refused"  # the StockAdjusted reason of a refusal


def is_dropship(loc: Location | None) -> bool:
    return loc is not None and loc.kind == DROPSHIP


def plan_with_dropship(planner: LocationPlanner, order: Order, needs: dict[OrderLine, int], policy: Policy,
                       free_of: Callable[[str], dict[str, int]], prefer: str | None = None) -> Plan:
    """``LocationPlanner.plan`` in two stages, own locations and dropship suppliers, in the order
    the policy's ``dropship_mode`` says; without dropship locations it is exactly ``plan``."""
    suppliers = {lid for lid, loc in planner.locations.items() if is_dropship(loc)}
    if not suppliers:
        return planner.plan(order, needs, policy, free_of, prefer)

    def own(sku: str) -> dict[str, int]:
        return {lid: n for lid, n in free_of(sku).items() if lid not in suppliers}

    def supplier(sku: str) -> dict[str, int]:
        if not policy.dropship_applies(sku):
            return {}
        return {lid: n for lid, n in free_of(sku).items() if lid in suppliers}

    if policy.dropship_mode == "never":
        return planner.plan(order, needs, policy, own, prefer)
    first, then = (supplier, own) if policy.dropship_mode == "always" else (own, supplier)
    p1 = planner.plan(order, needs, policy, first, prefer)
    if not p1.remaining:
        return _labelled(p1, suppliers, policy)
    # The stages look at different locations, so no unit is planned twice.
    p2 = planner.plan(order, dict(p1.remaining), policy, then, prefer)
    pieces, remaining, cap_hit = list(p1.pieces), dict(p2.remaining), p1.cap_hit or p2.cap_hit
    cap = policy.max_locations_per_order
    used = {a.location_id for a in order.live_allocations()} | {pc.location.location_id for pc in p1.pieces}
    for pc in p2.pieces:
        lid = pc.location.location_id
        if cap is not None and lid not in used and len(used) >= cap:
            remaining[pc.line] = remaining.get(pc.line, 0) + pc.qty  # the cap holds across both stages
            cap_hit = True
            continue
        used.add(lid)
        pieces.append(pc)
    return _labelled(Plan(pieces, remaining, p1.candidates, cap_hit), suppliers, policy)


def _labelled(plan: Plan, suppliers: set[str], policy: Policy) -> Plan:
    """Say why a piece went to a supplier (the allocation's ``reason``)."""
    why = {
        "always": "dropship first (policy dropship_mode always)",
        "fallback": "dropship: no own location can fill it (policy dropship_mode fallback)",
    }.get(policy.dropship_mode, "dropship")
    plan.pieces = [
        Piece(pc.line, pc.location, pc.qty, f"{why}; {pc.why}") if pc.location.location_id in suppliers else pc
        for pc in plan.pieces
    ]
    return plan
