"""What the customer paid per order line, asked of order intake when a return is recorded.

Order intake owns orders and their prices. Fulfillment used to keep a copy of every order's
lines fed by every OrderPlaced (one handling and three rows per order on the busiest path)
for a figure read only by returns. Now a return asks order intake at that moment: one HTTP
call per return instead of a feed per order. SKUs, quantities and ship_complete come with
allocation's snapshots, which fulfillment keeps anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol


class PricesUnavailable(RuntimeError):
    """Order intake could not be asked: no refund can be computed, nothing is recorded."""


@dataclass(frozen=True, slots=True)
class OrderPrices:
    currency: str
    unit_prices: dict[str, Decimal]  # line_id -> unit price the line was sold at


class Prices(Protocol):
    async def of_order(self, order_id: str) -> OrderPrices | None:
        """The order's currency and unit price per line; None when order intake knows no such order."""
        ...
