"""What allocation reserves at inventory's positions, asked for when a stock take needs it.

Allocation owns reservations. Inventory used to keep a mirror of them fed by every
AvailabilityChanged (about three handlings per order, 15 % of all CPU on the order path, for
a figure read only by stock takes). Now a stock take asks allocation at the moment it plans
(export, preview, submit): one HTTP call per stock-take step instead of a feed per order.

Guarantee: a count never sets a position below what allocation reserved there when the submit
read it. Allocation may reserve more at that position between the read and the commit (a few
milliseconds); the counted StockAdjusted then reaches it as a shrink below reserved, which it
handles like any shrink (SPEC 3.2: newest allocations released, re-allocated elsewhere or
backordered at their place in the queue): no oversell survives the event.
"""

from __future__ import annotations

from typing import Protocol

# (sku, bin, lot) within one location; (location_id, bin, lot) within one SKU
PositionAtLocation = tuple[str, str, str]
PositionOfSku = tuple[str, str, str]


class ReservationsUnavailable(RuntimeError):
    """Allocation could not be asked: a stock take cannot protect reservations blindly."""


class Reservations(Protocol):
    async def at_location(self, location_id: str) -> dict[PositionAtLocation, int]:
        """Reserved units per (sku, bin, lot) at the location; positions with none are absent."""
        ...

    async def of_sku(self, sku: str) -> dict[PositionOfSku, int]:
        """Reserved units per (location_id, bin, lot) of the SKU; positions with none are absent."""
        ...
