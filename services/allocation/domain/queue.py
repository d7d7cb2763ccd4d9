"""The fair backorder queue (SPEC 3.1.5): open backorders of a SKU are filled strictly in
``queue_key`` order, and a SKU whose availability may have risen is *owed* a fill, which runs
before anyone else may take stock of it.

The queue knows the order and what part of it is loaded; the book does the filling (it owns the
orders and the stock)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from services.allocation.domain.model import OrderLine, PositionKey


class SliceTooSmall(Exception):
    """The batch needs data outside the loaded slice; load it and replay the batch."""

    def __init__(
        self,
        *,
        skus: Iterable[str] = (),
        queues: Iterable[str] = (),
        orders: Iterable[str] = (),
        positions: Iterable[PositionKey] = (),
        locations: Iterable[str] = (),
    ) -> None:
        self.skus = set(skus)
        self.queues = set(queues)
        self.orders = set(orders)
        self.positions = set(positions)
        self.locations = set(locations)
        super().__init__(
            f"need skus={sorted(self.skus)} queues={sorted(self.queues)} orders={sorted(self.orders)}"
            f" positions={len(self.positions)} locations={sorted(self.locations)}"
        )


@dataclass
class QueueSlice:
    """What part of a SKU's open backorder queue is loaded."""

    complete: bool  # every open backorder of the SKU is in the book
    boundary: tuple[object, ...] | None = None  # queue key of the last loaded entry when not complete

    def beyond(self, line: OrderLine) -> bool:
        """``line`` comes after the loaded part of the queue: lines not loaded may come before it."""
        return not self.complete and self.boundary is not None and line.queue_key() > self.boundary


@dataclass
class FairQueue:
    """Loaded queue slices per SKU, the SKUs owed a fill, and the SKUs whose long queue is being
    filled chunk by chunk (``filling``: loaded as ``filling_before``, written back when changed)."""

    slices: dict[str, QueueSlice]
    owed: set[str] = field(default_factory=set)
    filling: set[str] = field(default_factory=set)
    filling_before: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        self.filling_before = frozenset(self.filling)

    def filling_changes(self) -> dict[str, bool]:
        """SKU -> whether its queue is being filled, for the SKUs where that changed."""
        return {s: s in self.filling for s in self.filling ^ self.filling_before}

    def owe(self, sku: str) -> None:
        self.owed.add(sku)

    def owe_all(self, skus: Iterable[str]) -> None:
        self.owed |= set(skus)

    def next_owed(self, among: set[str] | None = None) -> str | None:
        """The next SKU to fill (smallest first, so a batch fills in a repeatable order)."""
        owed = self.owed if among is None else self.owed & among
        return min(owed) if owed else None

    def slice(self, sku: str) -> QueueSlice:
        q = self.slices.get(sku)
        if q is None:
            raise SliceTooSmall(queues={sku})
        return q

    def in_order(self, lines: Iterable[OrderLine]) -> list[OrderLine]:
        """The open, not held backorders among ``lines``, first in the queue first."""
        return sorted((ln for ln in lines if ln.in_queue), key=OrderLine.queue_key)
