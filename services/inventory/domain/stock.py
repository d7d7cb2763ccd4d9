"""Pure rules of stock positions: what a change does to a position, and which changes are refused.

A position is (sku, location, bin, lot). Its ``on_hand`` changes only through ledger entries;
every entry raises the position's ``seq`` by one, so consumers can order and de-duplicate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from libs.contracts.problems import Problem

ADJUSTMENT_REASON_CODES = ("damage", "found", "correction", "theft", "other")
# Reason codes that only make sense in one direction.
_DECREASE_ONLY = {"damage", "theft"}
_INCREASE_ONLY = {"found"}

QUARANTINE_BIN = "QUARANTINE"
SYSTEM_ACTOR = "inventory"


@dataclass(frozen=True, slots=True, order=True)
class PositionKey:
    sku: str
    location_id: str
    bin: str
    lot: str = ""


@dataclass(slots=True)
class StockPosition:
    key: PositionKey
    on_hand: int = 0
    seq: int = 0
    reserved: int = 0
    sellable: bool = True
    received_at: datetime | None = None
    expires_at: datetime | None = None

    @property
    def available(self) -> int:
        """What is free to promise here (non-sellable stock is never available)."""
        return max(self.on_hand - self.reserved, 0) if self.sellable else 0


@dataclass(frozen=True, slots=True)
class StockChange:
    """One requested change of one position (a ledger row if accepted)."""

    key: PositionKey
    delta: int
    reason: str  # receipt | adjustment | transfer_in | transfer_out | shipment | return | quarantine | count
    reference: str | None = None
    actor: str | None = None
    reason_code: str | None = None  # adjustments: damage | found | correction | theft | other
    order_id: str | None = None
    allocation_id: int | None = None
    release_shortfall: bool = False
    received_at: datetime | None = None  # for a receipt: when the goods arrived
    expires_at: datetime | None = None
    # Goods that physically left (a shipment) are booked even when the records show too little:
    # a correction adjustment first books the missing units, so the ledger still adds up.
    cover_shortfall: bool = False
    purchase_order_id: str | None = None  # a receipt booked against a purchase order


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    change: StockChange
    on_hand_after: int
    seq: int
    index: int = 0  # the requested change it comes from


@dataclass(frozen=True, slots=True)
class Refusal:
    index: int  # which change of the request
    problem: str


def apply_changes(
    positions: dict[PositionKey, StockPosition], changes: Sequence[StockChange]
) -> tuple[list[LedgerEntry], list[Refusal]]:
    """Apply ``changes`` in order to ``positions`` (mutated in place).

    Returns the ledger entries, or the refusals if any change would take a position below zero
    or names a position that does not exist; with refusals the caller must write nothing.
    A change with ``cover_shortfall`` is never refused for want of stock: a correction entry
    books the missing units first (the caller must have created its position).
    """
    entries: list[LedgerEntry] = []
    refusals: list[Refusal] = []
    for i, change in enumerate(changes):
        position = positions.get(change.key)
        if change.delta == 0:
            refusals.append(Refusal(i, "a stock change must not be zero"))
            continue
        if position is None:
            refusals.append(Refusal(i, "no stock at this position"))
            continue
        after = position.on_hand + change.delta
        if after < 0 and change.cover_shortfall:
            correction = StockChange(
                change.key,
                -after,
                "adjustment",
                change.reference,
                SYSTEM_ACTOR,
                reason_code="correction",
                order_id=change.order_id,
            )
            position.on_hand, position.seq = position.on_hand - after, position.seq + 1
            entries.append(LedgerEntry(correction, position.on_hand, position.seq, i))
            after = 0
        if after < 0:
            refusals.append(
                Refusal(
                    i,
                    f"only {position.on_hand} on hand at {_where(change.key)}; cannot remove {-change.delta}",
                )
            )
            continue
        position.on_hand = after
        position.seq += 1
        if position.expires_at is None and change.expires_at is not None:
            position.expires_at = change.expires_at
        if position.received_at is None and change.received_at is not None:
            position.received_at = change.received_at
        entries.append(LedgerEntry(change, after, position.seq, i))
    return entries, refusals


def check_adjustment(delta: int, reason_code: str) -> list[Problem]:
    """An adjustment needs a non-zero delta, a known reason code, and a direction that fits it."""
    problems = []
    if delta == 0:
        problems.append(Problem("delta", "must not be zero"))
    if reason_code not in ADJUSTMENT_REASON_CODES:
        problems.append(Problem("reason_code", f"must be one of {', '.join(ADJUSTMENT_REASON_CODES)}"))
    elif reason_code in _DECREASE_ONLY and delta > 0:
        problems.append(Problem("delta", f"a {reason_code} adjustment removes stock: delta must be negative"))
    elif reason_code in _INCREASE_ONLY and delta < 0:
        problems.append(Problem("delta", f"a {reason_code} adjustment adds stock: delta must be positive"))
    return problems


def check_receipt_dates(
    received_at: datetime | None, expires_at: datetime | None, now: datetime, *, field: str
) -> list[Problem]:
    """A lot must not be expired on arrival: its expiry lies after its receipt date (``now``
    when none is given). ``field`` is the receipt line the problem is reported against."""
    received = received_at or now
    if expires_at is not None and expires_at <= received:
        return [
            Problem(
                f"{field}.expires_at",
                f"{expires_at.isoformat()} is not after the receipt date {received.isoformat()}:"
                " the lot would arrive expired",
            )
        ]
    return []


def check_transfer(from_key: PositionKey, to_key: PositionKey, qty: int) -> list[Problem]:
    """A transfer moves a positive quantity to a different place."""
    problems = []
    if qty <= 0:
        problems.append(Problem("qty", "must be greater than 0"))
    if from_key == to_key:
        problems.append(Problem("to_bin", "source and destination are the same position"))
    return problems


def bin_is_quarantine(bin_code: str) -> bool:
    return bin_code == QUARANTINE_BIN


@dataclass(frozen=True, slots=True)
class Transfer:
    sku: str
    from_location_id: str
    from_bin: str
    lot: str
    to_location_id: str
    to_bin: str
    qty: int
    reference: str | None = None
    actor: str | None = None

    @property
    def source(self) -> PositionKey:
        return PositionKey(self.sku, self.from_location_id, self.from_bin, self.lot)

    @property
    def target(self) -> PositionKey:
        return PositionKey(self.sku, self.to_location_id, self.to_bin, self.lot)

    def changes(
        self, received_at: datetime | None = None, expires_at: datetime | None = None
    ) -> list[StockChange]:
        """Out of the source, then into the destination; the lot keeps its dates (FEFO/FIFO)."""
        return [
            StockChange(self.source, -self.qty, "transfer_out", self.reference, self.actor),
            StockChange(
                self.target,
                self.qty,
                "transfer_in",
                self.reference,
                self.actor,
                received_at=received_at,
                expires_at=expires_at,
            ),
        ]


def _where(key: PositionKey) -> str:
    lot = f" lot {key.lot}" if key.lot else ""
    return f"{key.location_id}/{key.bin}{lot}"
