"""Returns of shipped units: how many may come back, and the refund due."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from libs.contracts.events import ReturnLine
from libs.contracts.problems import Problem


class ReturnRefused(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.problem}" for p in problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class ReturnableLine:
    """An order line's price, how many of its units shipped and came back so far, and the
    locations its units shipped from (a return goes back to one of them)."""

    line_id: str
    sku: str
    unit_price: Decimal
    shipped: int
    returned: int
    shipped_from: frozenset[str] = frozenset()

    @property
    def returnable(self) -> int:
        return self.shipped - self.returned


@dataclass(frozen=True, slots=True)
class ReturnRequestLine:
    line_id: str
    qty: int
    condition: str  # sellable | damaged
    location_id: str
    bin: str
    lot: str = ""


def new_return_id() -> str:
    return f"ret_{uuid.uuid4().hex}"


MONEY_PLACES = Decimal("0.0001")  # the scale refunds are stored with (numeric(18,4))


def refund_for(unit_price: Decimal, qty: int) -> Decimal:
    """The refund of ``qty`` units, at the scale it is stored with, so the ReturnReceived event
    says exactly what the return's row holds whatever scale the price was given in."""
    return (unit_price * qty).quantize(MONEY_PLACES)


def check_return(requested: list[ReturnRequestLine], lines: dict[str, ReturnableLine]) -> list[ReturnLine]:
    """The return's lines with their refund, or ``ReturnRefused`` listing every problem.

    A line may not get back more units than shipped minus already returned (summed over the
    request, so a line named twice cannot slip past the limit). Units go back to a location
    the line shipped from: one inventory knows and that stocks the SKU (a location fulfillment
    never shipped from may not exist at all, and inventory could not book the stock).
    """
    problems: list[Problem] = []
    if not requested:
        problems.append(Problem("lines", "must list at least one returned line"))
    asked: dict[str, int] = defaultdict(int)
    for i, item in enumerate(requested):
        if item.qty <= 0:
            problems.append(Problem(f"lines.{i}.qty", "must be greater than 0"))
        if item.condition not in ("sellable", "damaged"):
            problems.append(Problem(f"lines.{i}.condition", "must be 'sellable' or 'damaged'"))
        if item.line_id not in lines:
            problems.append(Problem(f"lines.{i}.line_id", f"the order has no line {item.line_id!r}"))
            continue
        asked[item.line_id] += max(item.qty, 0)
        line = lines[item.line_id]
        if line.shipped_from and item.location_id not in line.shipped_from:
            problems.append(
                Problem(
                    f"lines.{i}.location_id",
                    f"line {item.line_id!r} shipped from {', '.join(sorted(line.shipped_from))}, not from "
                    f"{item.location_id!r}; a return goes back to a location the line shipped from",
                )
            )
        if asked[item.line_id] > line.returnable:
            problems.append(
                Problem(
                    f"lines.{i}.qty",
                    f"line {item.line_id!r}: {line.shipped} shipped, {line.returned} already returned; "
                    f"at most {line.returnable} can be returned, asked {asked[item.line_id]}",
                )
            )
    if problems:
        raise ReturnRefused(problems)
    return [
        ReturnLine(
            line_id=item.line_id,
            sku=lines[item.line_id].sku,
            qty=item.qty,
            condition=item.condition,  # type: ignore[arg-type]
            location_id=item.location_id,
            bin=item.bin,
            lot=item.lot,
            refund=refund_for(lines[item.line_id].unit_price, item.qty),
        )
        for item in requested
    ]
