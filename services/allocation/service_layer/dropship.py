"""Allocation results name the allocations a dropship supplier ships (``dropship: true``), so
fulfillment sends those a dropship request instead of putting them on a pick list."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from libs.contracts import Topic
from libs.messaging import OutboxMessage
from services.allocation.domain.dropship import is_dropship
from services.allocation.domain.model import Location


def mark_dropship(messages: Iterator[OutboxMessage], locations: Mapping[str, Location]) -> Iterator[OutboxMessage]:
    """The results as they are, with ``dropship: true`` on allocations at a dropship location
    (left out elsewhere: absent reads as false, and the hot path stays as it was)."""
    suppliers = {lid for lid, loc in locations.items() if is_dropship(loc)}
    for m in messages:
        if suppliers and m.topic == Topic.ALLOCATIONS:
            for a in m.envelope.data["allocations"]:
                if a["location_id"] in suppliers:
                    a["dropship"] = True
        yield m
