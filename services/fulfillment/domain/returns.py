"""Returns of shipped units: how many may come back, and the refund due."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from libs.contracts.events import ReturnLine
from services.fulfillment.domain.packing import Problem


class ReturnRefused(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.problem}" for p in problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class ReturnableLine:
    """An order line's price and how many of its units shipped and came back so far."""

    line_id: str
    sku: str
    unit_price: Decimal
    shipped: int
    returned: int

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


def refund_for(unit_price: Decimal, qty: int) -> Decimal:
    return unit_price * qty


def check_return(requested: list[ReturnRequestLine], lines: dict[str, ReturnableLine]) -> list[ReturnLine]:
    """The return's lines with their refund, or ``ReturnRefused`` listing every problem.

    A line may not get back more units than shipped minus already returned (summed over the
    request, so a line named twice cannot slip past the limit).
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
