"""Allocation policy: how locations are ranked and how much stock is held back.

One policy per channel, with ``"*"`` as the default for channels without their own. Stored as
JSON; ``parse_policy`` validates a document and reports every problem at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from services.allocation.domain.inbound import PresellCap, caps_from_json, caps_to_json, parse_presell_caps

RANK_KEYS = ("priority", "distance")
DEFAULT_CHANNEL = "*"
MAX_COMBINATION_LOCATIONS = 3  # fewest-splits search: combinations of at most this many locations
MAX_COMBINATION_CANDIDATES = 6  # ... drawn from this many best-ranked candidates (C(6,2)+C(6,3) = 35)
# When lines may go to a dropship location (a supplier that ships for the seller):
# fallback: only what no own location can give; always: suppliers first; never: not at all.
DROPSHIP_MODES = ("fallback", "always", "never")


@dataclass(frozen=True)
class SafetyStock:
    """Units at a location kept back from allocation; ``"*"`` matches any SKU or location."""

    sku: str
    location_id: str
    qty: int


@dataclass(frozen=True)
class Policy:
    channel: str = DEFAULT_CHANNEL
    rank_by: tuple[str, ...] = ("priority", "distance")
    fewest_splits: bool = True
    max_locations_per_order: int | None = None
    safety_stock: tuple[SafetyStock, ...] = ()
    buffer: int = 0  # units per location held back from this channel (storefront safety buffer)
    version: int = 0
    dropship_mode: str = "fallback"
    dropship_skus: tuple[str, ...] | None = None  # the SKUs dropship applies to; None: every SKU
    presell: tuple[PresellCap, ...] = ()  # per-SKU caps on units promised from inbound supply (domain/inbound.py)
    _safety_index: dict[tuple[str, str], int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for s in self.safety_stock:
            self._safety_index[(s.sku, s.location_id)] = s.qty

    def safety(self, sku: str, location_id: str) -> int:
        """Most specific rule wins: (sku, location), (sku, *), (*, location), (*, *)."""
        if not self._safety_index:
            return 0
        idx = self._safety_index
        for key in ((sku, location_id), (sku, "*"), ("*", location_id), ("*", "*")):
            if key in idx:
                return idx[key]
        return 0

    def dropship_applies(self, sku: str) -> bool:
        """May ``sku`` go to a dropship location under this policy at all?"""
        return self.dropship_mode != "never" and (self.dropship_skus is None or sku in self.dropship_skus)

    def to_json(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "rank_by": list(self.rank_by),
            "fewest_splits": self.fewest_splits,
            "max_locations_per_order": self.max_locations_per_order,
            "safety_stock": [{"sku": s.sku, "location_id": s.location_id, "qty": s.qty} for s in self.safety_stock],
            "buffer": self.buffer,
            "version": self.version,
            "dropship_mode": self.dropship_mode,
            "dropship_skus": None if self.dropship_skus is None else list(self.dropship_skus),
            "presell": caps_to_json(self.presell),
        }


@dataclass(frozen=True)
class PolicyProblem:
    field: str
    problem: str


def parse_policy(
    doc: Any, known_locations: Iterable[str], *, version: int = 0
) -> tuple[Policy | None, list[PolicyProblem]]:
    """Validate a policy document; return it or every problem found (nothing partial)."""
    problems: list[PolicyProblem] = []
    if not isinstance(doc, dict):
        return None, [PolicyProblem("(body)", "must be a JSON object")]
    known = set(known_locations)
    allowed = {"channel", "rank_by", "fewest_splits", "max_locations_per_order", "safety_stock", "buffer", "version",
               "dropship_mode", "dropship_skus", "presell"}
    for key in doc:
        if key not in allowed:
            problems.append(PolicyProblem(str(key), f"unknown field; allowed: {', '.join(sorted(allowed - {'version'}))}"))

    channel = doc.get("channel", DEFAULT_CHANNEL)
    if not isinstance(channel, str) or not channel.strip():
        problems.append(PolicyProblem("channel", "must be a non-empty string ('*' for the default policy)"))
        channel = DEFAULT_CHANNEL

    rank_by = doc.get("rank_by", ["priority", "distance"])
    if not isinstance(rank_by, list) or not all(isinstance(r, str) for r in rank_by):
        problems.append(PolicyProblem("rank_by", f"must be a list drawn from {list(RANK_KEYS)}"))
        rank_by = []
    else:
        for i, r in enumerate(rank_by):
            if r not in RANK_KEYS:
                problems.append(PolicyProblem(f"rank_by.{i}", f"unknown ranking {r!r}; use {list(RANK_KEYS)}"))
        if len(set(rank_by)) != len(rank_by):
            problems.append(PolicyProblem("rank_by", "lists a ranking twice"))

    fewest = doc.get("fewest_splits", True)
    if not isinstance(fewest, bool):
        problems.append(PolicyProblem("fewest_splits", "must be true or false"))

    cap = doc.get("max_locations_per_order")
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        problems.append(PolicyProblem("max_locations_per_order", "must be a whole number >= 1, or null for no cap"))

    buffer = doc.get("buffer", 0)
    if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 0:
        problems.append(PolicyProblem("buffer", "must be a whole number >= 0"))

    safety: list[SafetyStock] = []
    raw_safety = doc.get("safety_stock", [])
    if not isinstance(raw_safety, list):
        problems.append(PolicyProblem("safety_stock", "must be a list of {sku, location_id, qty}"))
        raw_safety = []
    seen: set[tuple[str, str]] = set()
    for i, item in enumerate(raw_safety):
        where = f"safety_stock.{i}"
        if not isinstance(item, dict):
            problems.append(PolicyProblem(where, "must be an object {sku, location_id, qty}"))
            continue
        sku = item.get("sku", "*")
        loc = item.get("location_id", "*")
        qty = item.get("qty")
        ok = True
        if not isinstance(sku, str) or not sku:
            problems.append(PolicyProblem(f"{where}.sku", "must be a SKU or '*'"))
            ok = False
        if not isinstance(loc, str) or not loc:
            problems.append(PolicyProblem(f"{where}.location_id", "must be a location id or '*'"))
            ok = False
        elif loc != "*" and loc not in known:
            problems.append(PolicyProblem(f"{where}.location_id", f"unknown location {loc!r}"))
            ok = False
        if isinstance(qty, bool) or not isinstance(qty, int) or qty < 0:
            problems.append(PolicyProblem(f"{where}.qty", "must be a whole number >= 0"))
            ok = False
        for extra in set(item) - {"sku", "location_id", "qty"}:
            problems.append(PolicyProblem(f"{where}.{extra}", "unknown field"))
            ok = False
        if ok and isinstance(qty, int):  # (ok already implies it; this tells the type checker)
            if (sku, loc) in seen:
                problems.append(PolicyProblem(where, f"duplicate rule for sku {sku!r} at {loc!r}"))
            seen.add((sku, loc))
            safety.append(SafetyStock(sku, loc, qty))
    dropship_mode, dropship_skus = _parse_dropship(doc, problems)
    presell, presell_problems = parse_presell_caps(doc.get("presell"))
    problems.extend(PolicyProblem(f, p) for f, p in presell_problems)
    if problems:
        return None, problems
    return Policy(
        channel=channel.strip(),
        rank_by=tuple(rank_by),
        fewest_splits=fewest,
        max_locations_per_order=cap,
        safety_stock=tuple(safety),
        buffer=buffer,
        version=version,
        dropship_mode=dropship_mode,
        dropship_skus=dropship_skus,
        presell=presell,
    ), []


def policy_from_json(doc: dict[str, Any]) -> Policy:
    """A stored (already validated) policy."""
    return Policy(
        channel=doc.get("channel", DEFAULT_CHANNEL),
        rank_by=tuple(doc.get("rank_by", ("priority", "distance"))),
        fewest_splits=bool(doc.get("fewest_splits", True)),
        max_locations_per_order=doc.get("max_locations_per_order"),
        safety_stock=tuple(
            SafetyStock(s.get("sku", "*"), s.get("location_id", "*"), int(s["qty"])) for s in doc.get("safety_stock", [])
        ),
        buffer=int(doc.get("buffer", 0)),
        version=int(doc.get("version", 0)),
        dropship_mode=str(doc.get("dropship_mode", "fallback")),
        dropship_skus=None if doc.get("dropship_skus") is None else tuple(doc["dropship_skus"]),
        presell=caps_from_json(doc.get("presell")),
    )


def _parse_dropship(doc: dict[str, Any], problems: list[PolicyProblem]) -> tuple[str, tuple[str, ...] | None]:
    """``dropship_mode`` (one of DROPSHIP_MODES, default fallback) and ``dropship_skus`` (a list
    of SKUs, or null for every SKU); problems are added to ``problems``."""
    mode = doc.get("dropship_mode", "fallback")
    if mode not in DROPSHIP_MODES:
        problems.append(PolicyProblem("dropship_mode", f"must be one of {list(DROPSHIP_MODES)}"))
        mode = "fallback"
    skus = doc.get("dropship_skus")
    if skus is None:
        return mode, None
    if not isinstance(skus, list) or not all(isinstance(s, str) and s for s in skus):
        problems.append(PolicyProblem("dropship_skus", "must be a list of SKUs, or null for every SKU"))
        return mode, None
    return mode, tuple(skus)
