"""Which locations exist, asked of inventory (which owns them) when a channel rule names some.

Intake keeps no copy of the locations: rules that name locations are written rarely, and a
rule naming an unknown one must be refused when it is written, not found out at allocation.
"""

from __future__ import annotations

from typing import Protocol

from libs.contracts.problems import Problem
from services.order_intake.domain.rules import RuleIn


class LocationsUnavailable(RuntimeError):
    """Inventory could not be asked: a rule naming locations cannot be checked, so it is not stored."""


class KnownLocations(Protocol):
    async def ids(self) -> set[str]:
        """Every location id inventory knows (active or not); LocationsUnavailable when it cannot be asked."""
        ...


async def check_locations(spec: RuleIn, locations: KnownLocations) -> list[Problem]:
    """A problem for every location the rule's actions name that inventory does not know (no
    question asked when the rule names none)."""
    named = spec.actions.location_fields()
    if not named:
        return []
    known = await locations.ids()
    return [Problem(field=where, problem=f"unknown location {lid!r}: inventory has no such location")
            for where, lid in named if lid not in known]
