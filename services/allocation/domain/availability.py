"""Available-to-promise: the one formula by which allocation takes stock, the storefront feed
(AvailabilityChanged) promises it and the stock report shows it.

    free at a location   = sum over its usable positions of max(0, on_hand - reserved)
    usable position      = sellable, at a known active location, lot not past its expiry
    available-to-promise = max(0, free - safety stock - the channel's buffer)

Where SQL must add it up over many rows (the availability feed, the stock report), it uses
``FREE_UNITS`` of ``adapters/queries.py``, which ``tests/integration/test_allocation_queries.py``
pins to ``free_by_location`` here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from services.allocation.domain.model import Location, StockPosition
from services.allocation.domain.policy import Policy


def usable(p: StockPosition, locations: Mapping[str, Location], now: datetime) -> bool:
    """Stock a line may take: sellable, at an active location, and not past its expiry at ``now``."""
    loc = locations.get(p.location_id)
    return p.sellable and loc is not None and loc.active and not p.expired(now)


def free_by_location(positions: Iterable[StockPosition], locations: Mapping[str, Location], now: datetime) -> dict[str, int]:
    """Free units (usable on hand less reserved, never below zero per position) per location."""
    free_at: dict[str, int] = {}
    for p in positions:
        if usable(p, locations, now):
            free_at[p.location_id] = free_at.get(p.location_id, 0) + p.free
    return free_at


def available_to_promise(free: int, policy: Policy, sku: str, location_id: str, *, channel_buffer: bool = True) -> int:
    """Units of ``sku`` a channel under ``policy`` may take (or be promised) at a location that has
    ``free`` units: less the safety stock and, unless ``channel_buffer`` is False (the feed's
    per-location figure, which no channel's buffer applies to), the channel's buffer."""
    held_back = policy.safety(sku, location_id) + (policy.buffer if channel_buffer else 0)
    return max(0, free - held_back)


def available_by_location(sku: str, free_at: dict[str, int], policy: Policy) -> dict[str, int]:
    """What SPEC 3 calls a SKU's available (on_hand - reserved - safety_stock) per location, for
    no channel in particular: ``policy`` is the default one, and no channel's buffer applies. The
    availability feed's per-location figures and total, and the stock report, are this."""
    return {loc: available_to_promise(free, policy, sku, loc, channel_buffer=False) for loc, free in free_at.items()}
