"""Channel rules' say on where an order's stock comes from (``OrderPlaced.locations``, decided
by order intake's channel rules), as the planner applies it:

- ``restrict_to``: only these locations are candidates (on top of the usual eligibility:
  active, ships to the destination, serves the channel); none left means the order waits as
  backorder, with the rule named in its reason.
- ``prefer``: these rank before every other candidate, in the given order (a location chosen
  by hand for a re-allocation still comes first of all).
- ``priorities``: the location's priority for this order instead of its own, wherever the
  channel's policy ranks by priority (per-channel location priorities).

The order keeps the choice as the JSON text it arrived in (``Order.location_choice``); it is
parsed once per order object. Pure: no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from services.allocation.domain.model import Location


@dataclass(frozen=True)
class OrderLocations:
    restrict_to: frozenset[str] | None = None
    restricted_by: str = ""
    prefer: tuple[str, ...] = ()
    preferred_by: str = ""
    priorities: tuple[tuple[str, int], ...] = ()
    priorities_by: str = ""

    @classmethod
    def from_json(cls, raw: str | None) -> OrderLocations | None:
        """The choice stored with an order (None: no rule chose locations)."""
        if not raw:
            return None
        doc = json.loads(raw)
        restrict = doc.get("restrict_to")
        return cls(
            restrict_to=None if restrict is None else frozenset(restrict),
            restricted_by=doc.get("restricted_by", ""),
            prefer=tuple(doc.get("prefer") or ()),
            preferred_by=doc.get("preferred_by", ""),
            priorities=tuple(sorted((doc.get("priorities") or {}).items())),
            priorities_by=doc.get("priorities_by", ""),
        )

    def priority(self, location_id: str) -> int | None:
        for lid, p in self.priorities:
            if lid == location_id:
                return p
        return None


def allowed_locations(choice: OrderLocations | None, locations: list[Location]) -> list[Location]:
    """The candidates a restricting rule leaves (all of them when there is none)."""
    if choice is None or choice.restrict_to is None:
        return locations
    return [loc for loc in locations if loc.location_id in choice.restrict_to]


def preference_rank(choice: OrderLocations | None, location_id: str) -> int:
    """0, 1, ... for preferred locations in their order; after them every other location."""
    if choice is None or not choice.prefer:
        return 0
    return choice.prefer.index(location_id) if location_id in choice.prefer else len(choice.prefer)


def effective_priority(choice: OrderLocations | None, loc: Location) -> int:
    """The location's priority for this order: the rule's, else the location's own."""
    own = choice.priority(loc.location_id) if choice is not None else None
    return loc.priority if own is None else own


def explain(choice: OrderLocations | None, location_id: str) -> str:
    """What the channel rules did to this location's rank, in words ('' when nothing)."""
    if choice is None:
        return ""
    said = []
    if choice.restrict_to is not None:
        said.append(f"allowed by {choice.restricted_by}")
    if location_id in choice.prefer:
        said.append(f"preferred #{choice.prefer.index(location_id) + 1} by {choice.preferred_by}")
    if choice.priority(location_id) is not None:
        said.append(f"priority {choice.priority(location_id)} set by {choice.priorities_by}")
    return "; ".join(said)


def why_none_allowed(choice: OrderLocations | None) -> str | None:
    """The backorder reason when a restricting rule leaves the order no candidate."""
    if choice is None or choice.restrict_to is None:
        return None
    names = ", ".join(sorted(choice.restrict_to)) or "no location"
    return (f"no eligible location: {choice.restricted_by} restricts it to {names}, and none of them is active,"
            " ships to the destination and serves the channel")
