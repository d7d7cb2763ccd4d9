"""Pre-selling against inbound supply (SPEC 3.9): which backordered lines are promised units of
which open purchase order, and what a line's backorder reason says about it.

A pre-sold unit is a backordered unit with a promise: it stays counted in the line's
``backordered`` (so ``allocated + backordered + packed + shipped + cancelled = qty`` holds
unchanged), keeps the line's place in the fair queue, reserves no shelf stock and cannot be
packed. The promise is recomputed from scratch for a SKU whenever something about it may have
changed (``plan_presales``), so it never outlives what justified it:

- the SKU's backordered lines are walked in fair-queue order; each takes units of the open
  purchase orders (earliest expected first) it could be allocated at (location active, serves
  its channel, ships to its country; its pickup location only), as many as it waits for;
- a line of a channel whose policy gives the SKU a pre-sell cap is *promised* those units, up to
  what the channel's cap still allows (the cap counts the channel's promised units of the SKU);
- a line that may not pre-sell (no cap, or beyond it) still takes its units of the supply
  without a promise: the fair queue gives it the receipt before the newer lines, so promising
  those units to a newer line would be a promise the queue breaks.

So promises never exceed a purchase order's quantity or a channel's cap, and a receipt of the
full quantity fills every promised line (in queue order, through the ordinary fill) unless shelf
stock or eligibility changed meanwhile. A purchase order that is cancelled, received (short or
not) or late (expected before today and not received) promises nothing any more: its lines'
reasons say why they wait in the queue again (``reason_after``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from services.allocation.domain.model import Location

ANY_SKU = "*"


@dataclass(frozen=True)
class PresellCap:
    """A channel may have at most ``cap`` units of ``sku`` (``"*"``: any SKU) promised from inbound supply."""

    sku: str
    cap: int


def presell_cap(caps: Iterable[PresellCap], sku: str) -> int:
    """The cap for ``sku``: its own rule, else the ``"*"`` rule, else 0 (the channel does not pre-sell it)."""
    found = {c.sku: c.cap for c in caps}
    return found.get(sku, found.get(ANY_SKU, 0))


def parse_presell_caps(raw: Any) -> tuple[tuple[PresellCap, ...], list[tuple[str, str]]]:
    """The policy's ``presell`` list: [{sku, cap}], ``sku`` a SKU or ``"*"``, ``cap`` >= 0.
    Returns the caps, or every (field, problem) found."""
    if raw is None:
        return (), []
    if not isinstance(raw, list):
        return (), [("presell", "must be a list of {sku, cap}")]
    caps: list[PresellCap] = []
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        where = f"presell.{i}"
        if not isinstance(item, dict):
            problems.append((where, "must be an object {sku, cap}"))
            continue
        sku, cap = item.get("sku", ANY_SKU), item.get("cap")
        ok = True
        if not isinstance(sku, str) or not sku.strip():
            problems.append((f"{where}.sku", "must be a SKU or '*'"))
            ok = False
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 0:
            problems.append((f"{where}.cap", "must be a whole number >= 0 (units that may be pre-sold)"))
            ok = False
        for extra in sorted(set(item) - {"sku", "cap"}):
            problems.append((f"{where}.{extra}", "unknown field"))
            ok = False
        if ok and isinstance(sku, str) and isinstance(cap, int):
            if sku in seen:
                problems.append((where, f"duplicate cap for sku {sku!r}"))
            seen.add(sku)
            caps.append(PresellCap(sku, cap))
    return (tuple(caps), problems) if not problems else ((), problems)


def caps_to_json(caps: Iterable[PresellCap]) -> list[dict[str, Any]]:
    return [{"sku": c.sku, "cap": c.cap} for c in caps]


def caps_from_json(raw: Any) -> tuple[PresellCap, ...]:
    return tuple(PresellCap(str(c.get("sku", ANY_SKU)), int(c["cap"])) for c in raw or ())


@dataclass(frozen=True)
class InboundSupply:
    """A purchase order as allocation mirrors it (from PurchaseOrderChanged)."""

    purchase_order_id: str
    sku: str
    location_id: str
    qty: int
    expected_date: date
    status: str = "open"  # open | cancelled | received
    received_qty: int = 0

    def promisable(self, today: date) -> bool:
        """Open and not late: a purchase order expected before today is late and promises nothing."""
        return self.status == "open" and self.expected_date >= today


@dataclass(frozen=True)
class WaitingLine:
    """A backordered, not held order line, as pre-selling needs it."""

    order_id: str
    line_id: str
    sku: str
    backordered: int
    channel: str
    country: str
    queue_key: tuple[object, ...]
    pickup_location_id: str | None = None


@dataclass(frozen=True, order=True)
class Presale:
    """``qty`` units of a line promised from one purchase order, expected on ``promised_date``."""

    order_id: str
    line_id: str
    purchase_order_id: str
    sku: str
    qty: int
    promised_date: date


@dataclass
class _Left:
    supply: InboundSupply
    units: int


@dataclass
class PresalePlan:
    presales: list[Presale] = field(default_factory=list)
    # Units of each purchase order nobody in the queue takes yet (0 for one that promises nothing):
    # what the availability feed offers as inbound.
    left: dict[str, int] = field(default_factory=dict)


def group_by_line(presales: Iterable[Presale]) -> dict[tuple[str, str], list[Presale]]:
    out: dict[tuple[str, str], list[Presale]] = {}
    for p in presales:
        out.setdefault((p.order_id, p.line_id), []).append(p)
    return out


def _eligible(loc: Location | None, line: WaitingLine) -> bool:
    if loc is None or not loc.active or not loc.serves_channel(line.channel):
        return False
    if line.pickup_location_id:
        return loc.location_id == line.pickup_location_id
    return loc.ships_to_country(line.country)


def plan_presales(lines: Iterable[WaitingLine], supplies: Iterable[InboundSupply], locations: Mapping[str, Location],
                  caps_of: Callable[[str], tuple[PresellCap, ...]], today: date) -> PresalePlan:
    """The promises for the lines of one or more SKUs (see the module docstring). ``caps_of``
    gives a channel's pre-sell caps (its policy's, else the default policy's)."""
    supplies = list(supplies)
    left_by_sku: dict[str, list[_Left]] = {}
    for s in sorted(supplies, key=lambda s: (s.expected_date, s.purchase_order_id)):
        if s.promisable(today) and s.qty > 0:
            left_by_sku.setdefault(s.sku, []).append(_Left(s, s.qty))
    cap_left: dict[tuple[str, str], int] = {}
    plan = PresalePlan()
    lefts = [left for by_sku in left_by_sku.values() for left in by_sku]
    for line in sorted(lines, key=lambda ln: ln.queue_key):
        want = line.backordered
        key = (line.channel, line.sku)
        if key not in cap_left:
            cap_left[key] = presell_cap(caps_of(line.channel), line.sku)
        for left in left_by_sku.get(line.sku, ()):
            if want <= 0:
                break
            if left.units <= 0 or not _eligible(locations.get(left.supply.location_id), line):
                continue
            take = min(want, left.units)
            left.units -= take
            want -= take
            promised = min(take, cap_left[key])
            if promised > 0:
                cap_left[key] -= promised
                plan.presales.append(Presale(line.order_id, line.line_id, left.supply.purchase_order_id, line.sku,
                                             promised, left.supply.expected_date))
    plan.left = {s.purchase_order_id: 0 for s in supplies} | {x.supply.purchase_order_id: x.units for x in lefts}
    return plan


def inbound_for_channel(left_by_location: Mapping[str, int], locations: Mapping[str, Location],
                        caps: Iterable[PresellCap], sku: str, channel: str, promised: int) -> int:
    """Inbound units of ``sku`` a channel may still pre-sell: what is left of the open purchase
    orders at locations serving it, at most its cap less what it has promised already. (The
    availability feed; per location the feed shows ``left_by_location`` itself.)"""
    cap_left = max(0, presell_cap(caps, sku) - promised)
    reachable = sum(n for loc_id, n in left_by_location.items()
                    if (loc := locations.get(loc_id)) is not None and loc.active and loc.serves_channel(channel))
    return min(cap_left, reachable)


def presold_reason(presales: list[Presale], supplies: Mapping[str, InboundSupply]) -> str:
    """A pre-sold line's backorder reason: what is promised, from where, for when."""
    parts = []
    for p in sorted(presales, key=lambda p: (p.promised_date, p.purchase_order_id)):
        s = supplies.get(p.purchase_order_id)
        at = f" at {s.location_id}" if s else ""
        parts.append(f"{p.qty} against purchase order {p.purchase_order_id}{at}, promised {p.promised_date.isoformat()}")
    return ("pre-sold: " + "; ".join(parts)
            + " (waits in the backorder queue; cannot be packed until the receipt is booked)")


def reason_after(lost: list[Presale], supplies: Mapping[str, InboundSupply], today: date) -> str:
    """Why a line that was pre-sold and still waits is no longer promised: the purchase order was
    cancelled, received short, or is late; else the promise went to a line before it in the queue
    (or the channel's cap or the order's quantity went down)."""
    why = []
    for p in sorted(lost, key=lambda p: p.purchase_order_id):
        s = supplies.get(p.purchase_order_id)
        if s is None:
            why.append(f"purchase order {p.purchase_order_id} unknown")
        elif s.status == "cancelled":
            why.append(f"purchase order {s.purchase_order_id} cancelled")
        elif s.status == "received":
            short = f"short: {s.received_qty} of {s.qty}" if s.received_qty < s.qty else f"{s.received_qty} units"
            why.append(f"purchase order {s.purchase_order_id} received ({short}), not enough for this line in queue order")
        elif s.expected_date < today:
            why.append(f"purchase order {s.purchase_order_id} late (expected {s.expected_date.isoformat()})")
        else:
            why.append(f"purchase order {s.purchase_order_id}'s units went to lines before it (or the cap changed)")
    return "no longer pre-sold: " + "; ".join(why) + ": waiting in the backorder queue"
