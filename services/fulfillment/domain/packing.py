"""Packing and shipping rules: what a pack request may ask for, and what a shipment holds.

Allocation decides what actually gets packed (it is the only authority for allocations);
these rules refuse requests that cannot be right whatever allocation decides, so operators get
a precise answer at once.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass

from libs.contracts.events import AllocationLine, LineState, ShipmentLine
from libs.contracts.problems import Problem


class PackRefused(Exception):
    """The pack request cannot be accepted. ``kind`` is ``invalid`` (bad input, HTTP 422) or
    ``conflict`` (the order's state does not allow it, HTTP 409)."""

    def __init__(self, kind: str, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.problem}" for p in problems))
        self.kind = kind
        self.problems = problems


@dataclass(frozen=True, slots=True)
class OrderedLine:
    """An order line as placed (from OrderPlaced)."""

    line_id: str
    sku: str
    qty: int


@dataclass(frozen=True, slots=True)
class PackPlan:
    """What the request asks allocation to pack: per line, the units allocated now."""

    units: dict[str, int]

    @property
    def line_ids(self) -> list[str]:
        return sorted(self.units)


def new_shipment_id() -> str:
    return f"shp_{uuid.uuid4().hex}"


def check_pack(
    *,
    lines: list[OrderedLine],
    ship_complete: bool,
    line_states: list[LineState],
    allocations: list[AllocationLine],
    line_ids: list[str] | None,
    serials: dict[str, list[str]],
    serialized_skus: set[str],
) -> PackPlan:
    """Validate a pack request against the order and its latest allocation snapshot.

    Raises ``PackRefused``: unknown lines (invalid); nothing allocated to pack (conflict); a
    ship-complete order that is not wholly allocated or not packed whole (conflict); serial
    numbers missing, repeated or of the wrong count for a line being packed (invalid).
    """
    by_id = {ln.line_id: ln for ln in lines}
    if line_ids is not None:
        problems = [
            Problem(f"line_ids.{i}", f"the order has no line {lid!r}")
            for i, lid in enumerate(line_ids)
            if lid not in by_id
        ]
        if not line_ids:
            problems.append(
                Problem("line_ids", "must name at least one line, or be omitted to pack every line")
            )
        if problems:
            raise PackRefused("invalid", problems)
    wanted = set(by_id) if line_ids is None else set(line_ids)

    allocated: dict[str, int] = defaultdict(int)
    for alloc in allocations:
        if alloc.status == "allocated" and alloc.qty > 0:
            allocated[alloc.line_id] += alloc.qty

    if ship_complete:
        backordered = {s.line_id: s.backordered for s in line_states if s.backordered > 0}
        if backordered:
            raise PackRefused(
                "conflict",
                [
                    Problem(
                        "order",
                        "ship_complete order can only be packed whole: "
                        + ", ".join(f"{lid} has {q} backordered" for lid, q in sorted(backordered.items())),
                    )
                ],
            )
        left_out = sorted(lid for lid, q in allocated.items() if q > 0 and lid not in wanted)
        if left_out and any(allocated[lid] for lid in wanted):
            raise PackRefused(
                "conflict",
                [
                    Problem(
                        "line_ids",
                        "ship_complete order can only be packed whole: also include " + ", ".join(left_out),
                    )
                ],
            )

    units = {lid: allocated[lid] for lid in wanted if allocated.get(lid, 0) > 0}
    if not units:
        what = "the order" if line_ids is None else "the named lines"
        raise PackRefused("conflict", [Problem("order", f"nothing is allocated to pack on {what}")])

    problems = check_serials(units, {lid: by_id[lid].sku for lid in by_id}, serials, serialized_skus)
    if problems:
        raise PackRefused("invalid", problems)
    return PackPlan(units)


def check_serials(
    units: dict[str, int], skus: dict[str, str], serials: dict[str, list[str]], serialized_skus: set[str]
) -> list[Problem]:
    """Serialized SKUs need exactly one distinct serial per unit packed; serials given for other
    lines must follow the same rule; a serial may appear only once in the whole request."""
    problems: list[Problem] = []
    for lid in sorted(serials):
        if lid not in units:
            problems.append(
                Problem(
                    f"serials.{lid}", f"line {lid!r} is not being packed (nothing allocated or not named)"
                )
            )
    seen: dict[str, str] = {}
    for lid in sorted(units):
        given = serials.get(lid)
        needed = units[lid]
        if given is None:
            if skus.get(lid) in serialized_skus:
                problems.append(
                    Problem(
                        f"serials.{lid}",
                        f"{skus[lid]} is serialized: give {needed} serial number(s), one per unit packed",
                    )
                )
            continue
        blank = [i for i, s in enumerate(given) if not s.strip()]
        if blank:
            problems.append(Problem(f"serials.{lid}", f"serial number(s) at position {blank} are empty"))
        if len(set(given)) != len(given):
            dupes = sorted({s for s in given if given.count(s) > 1})
            problems.append(Problem(f"serials.{lid}", f"serial numbers repeated: {', '.join(dupes)}"))
        if len(given) != needed:
            problems.append(
                Problem(
                    f"serials.{lid}",
                    f"needs exactly {needed} serial number(s), one per unit packed; got {len(given)}",
                )
            )
        for s in dict.fromkeys(given):
            if s in seen and seen[s] != lid:
                problems.append(
                    Problem(f"serials.{lid}", f"serial number {s!r} is also given for line {seen[s]!r}")
                )
            seen.setdefault(s, lid)
    return problems


def packed_lines(
    allocations: list[AllocationLine], shipment_id: str, serials: dict[str, list[str]]
) -> list[ShipmentLine]:
    """The shipment's lines: the snapshot's packed allocations tagged with ``shipment_id``.

    A line's serial numbers are dealt out over its allocations in allocation order, one per unit.
    """
    mine = sorted(
        (a for a in allocations if a.shipment_id == shipment_id and a.status == "packed"),
        key=lambda a: (a.line_id, a.allocation_id),
    )
    taken: dict[str, int] = defaultdict(int)
    out = []
    for a in mine:
        pool = serials.get(a.line_id, [])
        start = taken[a.line_id]
        taken[a.line_id] += a.qty
        out.append(
            ShipmentLine(
                allocation_id=a.allocation_id,
                line_id=a.line_id,
                sku=a.sku,
                location_id=a.location_id,
                bin=a.bin,
                lot=a.lot,
                qty=a.qty,
                serials=pool[start : start + a.qty],
            )
        )
    return out


class ShipRefused(Exception):
    """Shipping is not possible in the shipment's state (HTTP 409) or the input is bad (422)."""

    def __init__(self, kind: str, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.problem}" for p in problems))
        self.kind = kind
        self.problems = problems


def check_ship(
    *,
    status: str,
    carrier: str,
    tracking_number: str,
    shipped_carrier: str | None,
    shipped_tracking: str | None,
) -> bool:
    """Decide a ship request. True: ship now; False: already shipped the same way (no new event).

    Only packed shipments ship; shipping again with the same carrier and tracking is idempotent.
    """
    problems = []
    if not carrier.strip():
        problems.append(Problem("carrier", "must not be empty"))
    if not tracking_number.strip():
        problems.append(Problem("tracking_number", "must not be empty"))
    if problems:
        raise ShipRefused("invalid", problems)
    if status == "shipped":
        if shipped_carrier == carrier and shipped_tracking == tracking_number:
            return False
        raise ShipRefused(
            "conflict", [Problem("shipment", f"already shipped with {shipped_carrier} {shipped_tracking}")]
        )
    if status != "packed":
        raise ShipRefused("conflict", [Problem("shipment", f"is {status}; only packed shipments can ship")])
    return True
