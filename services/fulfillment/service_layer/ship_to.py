"""Where a dropship request's ship-to address comes from: order intake owns the order and its
address (fulfillment keeps no copy of orders, see ``prices``); asked once per dropship request."""

from __future__ import annotations

from typing import Protocol

from libs.contracts.orders import Address


class ShipToUnavailable(ConnectionError):
    """Order intake could not be asked. A ConnectionError: the consumer treats it as the
    infrastructure's failure and redelivers the batch later (nothing is dead-lettered)."""


class ShipTo(Protocol):
    async def of_order(self, order_id: str) -> Address | None:
        """The order's ship-to address; None when order intake knows no such order."""
        ...
