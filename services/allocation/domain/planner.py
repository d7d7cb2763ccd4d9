"""Where an order's stock comes from (SPEC 3.1 steps 1 to 3); decides, changes nothing.

- ``LocationPlanner.candidates``: the eligible locations, best first by the policy's ranking,
  each with the reason it ranks there.
- ``LocationPlanner.plan``: how much each location gives each line: one location that fills
  the whole order if there is one, else the fewest locations (up to
  ``MAX_COMBINATION_LOCATIONS`` among the best ``MAX_COMBINATION_CANDIDATES``), else greedy by
  rank; never more locations per order than the policy's cap.
- ``pick_lots``: inside one location, which positions give the units: FEFO, then FIFO, then bin.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

from services.allocation.domain.availability import available_to_promise
from services.allocation.domain.location_rules import (
    OrderLocations,
    allowed_locations,
    effective_priority,
    explain,
    preference_rank,
)
from services.allocation.domain.model import Location, Order, OrderLine, StockPosition, haversine_km, pick_key
from services.allocation.domain.policy import MAX_COMBINATION_CANDIDATES, MAX_COMBINATION_LOCATIONS, Policy

Ranked = list[tuple[Location, str]]  # location, why it ranks there


class Piece(NamedTuple):
    """Units one location gives one line, and why that location."""

    line: OrderLine
    location: Location
    qty: int
    why: str


@dataclass
class Plan:
    pieces: list[Piece]
    remaining: dict[OrderLine, int]  # what no location gives
    candidates: list[Location]
    cap_hit: bool  # a location was passed over because of max_locations_per_order


class LocationPlanner:
    """Ranks locations for an order and splits its needs over them; ranking is cached per
    destination and policy until ``forget`` (a location or a policy changed)."""

    def __init__(self, locations: dict[str, Location]) -> None:
        self.locations = locations  # the book's own dict: a location change is seen here
        self._cache: dict[tuple[object, ...], Ranked] = {}

    def forget(self) -> None:
        self._cache.clear()

    def candidates(self, order: Order, policy: Policy, prefer: str | None = None) -> Ranked:
        """Eligible locations, best first, each with why it ranks there (cached per destination)."""
        key = (order.channel, order.country, order.lat, order.lon, order.pickup_location_id, id(policy), prefer,
               order.location_choice)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self._rank(order, policy, prefer)
        return found

    def pickup_refusal(self, order: Order) -> str | None:
        """Why the order's pickup location cannot serve it, or None when it can (SPEC 3.1.1: a
        pickup order may use its pickup location only, and only one that offers pickup)."""
        lid = order.pickup_location_id
        loc = self.locations.get(lid or "")
        if loc is None:
            return f"pickup location {lid} is unknown"
        if not loc.active:
            return f"pickup location {lid} is inactive"
        if not loc.pickup:
            return f"pickup location {lid} does not offer pickup"
        if not loc.serves_channel(order.channel):
            return f"pickup location {lid} does not serve channel {order.channel}"
        return None

    def _rank(self, order: Order, policy: Policy, prefer: str | None) -> Ranked:
        if order.pickup_location_id:
            if self.pickup_refusal(order) is not None:
                return []
            loc = self.locations[order.pickup_location_id]
            return [(loc, f"pickup location {loc.location_id} (buy online, pick up in store)")]
        locs = [
            loc for loc in self.locations.values()
            if loc.active and loc.serves_channel(order.channel) and loc.ships_to_country(order.country)
        ]
        ruled = OrderLocations.from_json(order.location_choice)  # channel rules' locations (location_rules.py)
        locs = allowed_locations(ruled, locs)

        def distance(loc: Location) -> float:
            if order.lat is None or order.lon is None or loc.lat is None or loc.lon is None:
                return float("inf")
            return haversine_km(order.lat, order.lon, loc.lat, loc.lon)

        dist = {loc.location_id: distance(loc) for loc in locs}

        def key(loc: Location) -> tuple[object, ...]:
            parts: list[object] = [0 if loc.location_id == prefer else 1, preference_rank(ruled, loc.location_id)]
            for r in policy.rank_by:
                parts.append(-effective_priority(ruled, loc) if r == "priority" else dist[loc.location_id])
            parts.append(loc.location_id)
            return tuple(parts)

        ranked = sorted(locs, key=key)
        out = []
        for i, loc in enumerate(ranked, 1):
            facts = []
            for r in policy.rank_by:
                if r == "priority":
                    facts.append(f"priority {effective_priority(ruled, loc)}")
                else:
                    d = dist[loc.location_id]
                    facts.append("distance unknown" if d == float("inf") else f"{d:.0f} km away")
            why = f"ranked #{i} by {', '.join(policy.rank_by) or 'location id'}" + (f" ({', '.join(facts)})" if facts else "")
            if loc.location_id == prefer:
                why = f"preferred location chosen by hand; {why}"
            if ruled is not None:
                why = f"{why}; channel rules: {explain(ruled, loc.location_id)}"
            out.append((loc, why))
        return out

    def plan(self, order: Order, needs: dict[OrderLine, int], policy: Policy,
             free_of: Callable[[str], dict[str, int]], prefer: str | None = None) -> Plan:
        """Which locations give how much to each line; ``free_of(sku)``: free units per location."""
        ranked = self.candidates(order, policy, prefer)
        cands = [loc for loc, _ in ranked]
        remaining = {line: q for line, q in needs.items() if q > 0}
        if not cands or not remaining:
            return Plan([], remaining, cands, False)
        why = {loc.location_id: w for loc, w in ranked}
        avail = {}
        for sku in {line.sku for line in needs}:
            free_at = free_of(sku)  # one pass over the SKU's positions, not one per candidate: the hot path
            for loc in cands:
                lid = loc.location_id
                free = free_at.get(lid)  # none free: nothing to promise, whatever is held back
                avail[(lid, sku)] = available_to_promise(free, policy, sku, lid) if free else 0
        used = {a.location_id for a in order.live_allocations()}  # they count towards the cap
        need_by_sku: dict[str, int] = {}
        for line, q in remaining.items():
            need_by_sku[line.sku] = need_by_sku.get(line.sku, 0) + q
        chosen, split_rule = self._choose(cands, avail, need_by_sku, used, policy, prefer)
        cap = policy.max_locations_per_order
        pieces: list[Piece] = []
        cap_hit = False
        for loc in chosen:
            if not remaining:
                break
            if loc.location_id not in used and cap is not None and len(used) >= cap:
                cap_hit = True
                continue
            took = False
            for line in list(remaining):
                a = avail[(loc.location_id, line.sku)]
                t = min(remaining[line], a)
                if t <= 0:
                    continue
                avail[(loc.location_id, line.sku)] = a - t
                remaining[line] -= t
                if remaining[line] == 0:
                    del remaining[line]
                pieces.append(Piece(line, loc, t, f"{split_rule}; {why[loc.location_id]}"))
                took = True
            if took:
                used.add(loc.location_id)
        return Plan(pieces, remaining, cands, cap_hit)

    @staticmethod
    def _choose(cands: list[Location], avail: dict[tuple[str, str], int], need_by_sku: dict[str, int],
                used: set[str], policy: Policy, prefer: str | None) -> tuple[list[Location], str]:
        """The locations to take from, in order, and the rule that chose them (fewest splits)."""
        if prefer is not None:
            return cands, "preferred location first, then greedy by rank"
        if not policy.fewest_splits:
            return cands, "greedy by rank"
        cap = policy.max_locations_per_order
        # What each candidate can give, one column per SKU needed: the combination search sums
        # these columns (the hot path: most orders of a busy day need it when stock runs thin).
        skus, needs = list(need_by_sku), list(need_by_sku.values())
        gives = {loc.location_id: [avail[(loc.location_id, s)] for s in skus] for loc in cands}

        def covers(locs: tuple[Location, ...]) -> bool:  # need <= what the locations give together, per SKU
            if not locs:  # zip() of no columns would be empty, and all() of nothing true
                return not needs
            together = map(sum, zip(*[gives[loc.location_id] for loc in locs], strict=False))  # columns: one length
            return all(map(int.__le__, needs, together))

        def within_cap(locs: tuple[Location, ...]) -> bool:
            return cap is None or len(used | {loc.location_id for loc in locs}) <= cap

        for loc in cands:
            if within_cap((loc,)) and covers((loc,)):
                return [loc], "fewest splits: one location fills all of it"
        # Only locations that have something to give can be part of a combination, and no
        # combination can cover what all candidates together cannot.
        useful = [loc for loc in cands if any(gives[loc.location_id])]
        if covers(tuple(useful)):
            top = useful[:MAX_COMBINATION_CANDIDATES]
            for k in range(2, MAX_COMBINATION_LOCATIONS + 1):
                for combo in itertools.combinations(top, k):
                    if within_cap(combo) and covers(combo):
                        return list(combo), f"fewest splits: {k} locations fill all of it"
        return cands, "greedy by rank (no small combination of locations fills all of it)"


def pick_lots(positions: Iterable[StockPosition], qty: int) -> list[tuple[StockPosition, int, str]]:
    """Up to ``qty`` units from the given (usable) positions of one location, FEFO, then FIFO,
    then bin: (position, units, the lot rule that put it there)."""
    picks = []
    left = qty
    for p in sorted((p for p in positions if p.free > 0), key=pick_key):
        if left == 0:
            break
        t = min(left, p.free)
        if p.expires_at is not None:
            lot_rule = f"FEFO: earliest expiry {p.expires_at.date().isoformat()}"
        elif p.received_at is not None:
            lot_rule = f"FIFO: received {p.received_at.date().isoformat()}"
        else:
            lot_rule = "no expiry or receipt date: bin order"
        picks.append((p, t, lot_rule))
        left -= t
    return picks
