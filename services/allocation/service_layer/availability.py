"""AvailabilityChanged, coalesced: transactions only mark SKUs dirty; this publisher, every
window (1 s by default, OMS_AVAILABILITY_INTERVAL_MS), reads the dirty SKUs, computes
available-to-promise and writes one event per SKU to the outbox, clearing the flags in the same
transaction of those nobody holds or changed meanwhile (``publish_dirty``). A burst of changes to
one SKU inside a window is one event."""

from __future__ import annotations

import asyncio
import logging
import sys
import uuid
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.contracts import Topic
from libs.contracts.envelope import Envelope, envelope_of, new_event_ids
from libs.messaging import OutboxMessage, write_outbox
from services.allocation.adapters.queries import free_units_by_location
from services.allocation.adapters.tables import SCHEMA
from services.allocation.domain.availability import available_by_location, available_to_promise
from services.allocation.domain.policy import DEFAULT_CHANNEL, Policy, policy_from_json
from services.allocation.service_layer.presales import NO_INBOUND, inbound_availability

log = logging.getLogger(__name__)
SOURCE = "allocation"
BUILTIN_POLICY = Policy()  # one object: building a Policy per SKU was ~4 % of allocation's time at full speed


def availability_of(sku: str, free_at: dict[str, int], policies: dict[str, Policy], now: datetime,
                    suppliers: frozenset[str] = frozenset(),
                    serves: Mapping[str, tuple[str, ...] | None] | None = None) -> dict[str, Any]:
    """AvailabilityChanged payload for one SKU (plain JSON) from what is free per location
    (``domain.availability.free_by_location``): available-to-promise per location (the default
    policy's safety stock held back) and per channel (its own safety stock and buffer too).

    ``positions`` is left empty: it carried reserved quantities per position for inventory's
    mirror, which is gone (stock takes ask ``GET /v1/reports/reserved``). Each entry cost a
    loop here and bytes on every event of the busiest topic.

    ``suppliers``: the dropship locations; a channel whose policy may not send this SKU there
    (``Policy.dropship_applies``) is not promised their stock.

    ``serves``: the channels each location serves (``Location.channels``; None: every channel).
    A channel is promised only the stock of locations it may take from, as allocation would
    allocate it; the default entry (``*``: any channel without a policy of its own) only the
    stock of locations that serve every channel, and every channel a location is kept for gets
    its own entry (under the default policy when it has none), so its connector reads its figure.

    One SKU; the publisher works the rules out once per window with ``FeedRules``."""
    return FeedRules(policies, suppliers, serves).of(sku, free_at, now.isoformat())


class FeedRules:
    """What ``availability_of`` needs besides one SKU's free units, worked out once for a window's
    SKUs: the channels and their policies, the locations each channel may not use, and the units
    each policy holds back per location for a SKU no safety-stock rule names (the same for every
    such SKU; a SKU a rule names takes the policy's own ``safety`` lookup). Computing these per
    SKU was two thirds of the publisher's time."""

    def __init__(self, policies: dict[str, Policy], suppliers: frozenset[str] = frozenset(),
                 serves: Mapping[str, tuple[str, ...] | None] | None = None) -> None:
        serves = serves or {}
        default = policies.get(DEFAULT_CHANNEL) or BUILTIN_POLICY
        named = {ch for chs in serves.values() if chs for ch in chs}  # channels some location is kept for
        if named - policies.keys():  # such a channel without a policy of its own: the default's
            policies = {**policies, **{ch: default for ch in sorted(named - policies.keys())}}
        self.suppliers = suppliers
        self.default = _Rule(DEFAULT_CHANNEL, default, serves, suppliers, channel_buffer=False)
        self.channels = [_Rule(ch, pol, serves, suppliers) for ch, pol in policies.items()]
        self.default_entry = DEFAULT_CHANNEL not in policies  # "*" added after the policies' channels

    def of(self, sku: str, free_at: dict[str, int], as_of: str) -> dict[str, Any]:
        """The AvailabilityChanged payload of ``sku`` (see ``availability_of``)."""
        per_location = self.default.per_location(sku, free_at)
        with_suppliers = bool(self.suppliers) and not self.suppliers.isdisjoint(free_at)
        channels = {rule.channel: rule.promised(sku, free_at, with_suppliers) for rule in self.channels}
        if self.default_entry:
            blocked = self.default.blocked
            channels[DEFAULT_CHANNEL] = sum(n for loc, n in per_location.items() if loc not in blocked)
        return {
            "sku": sku,
            "total": sum(per_location.values()),
            "locations": [{"location_id": loc, "available": n} for loc, n in sorted(per_location.items())],
            "channels": channels,
            "positions": [],
            "as_of": as_of,
        }


_BLOCKED = sys.maxsize  # held back "everything": a location a channel may not use adds nothing to its sum


class _Rule:
    """One channel's policy as the feed applies it: ``available_to_promise`` per location, summed
    over the locations the channel may use (``_may_use`` of the per-SKU definition: a location kept
    for some channels, and this one is not among them or is the default entry, is blocked)."""

    def __init__(self, channel: str, policy: Policy, serves: Mapping[str, tuple[str, ...] | None],
                 suppliers: frozenset[str], *, channel_buffer: bool = True) -> None:
        self.channel = channel
        self.policy = policy
        self.buffer = policy.buffer if channel_buffer else 0
        self.blocked = frozenset(loc for loc, chs in serves.items()
                                 if chs is not None and (channel == DEFAULT_CHANNEL or channel not in chs))
        self.named = frozenset(s.sku for s in policy.safety_stock if s.sku != "*")  # SKUs a safety rule names
        # Per location, units held back from a SKU no safety rule names (("*", loc) then ("*", "*"):
        # what Policy.safety finds for any such SKU) plus the buffer; _BLOCKED where the channel
        # may not take: any location / the blocked ones / these and the suppliers (a SKU the policy
        # may not dropship). Filled as locations turn up.
        self._tables: tuple[tuple[frozenset[str], dict[str, int]], ...] = (
            (frozenset(), {}), (self.blocked, {}), (self.blocked | suppliers, {}))

    def _fill(self, which: int, location_id: str) -> int:
        blocked, table = self._tables[which]
        held = table[location_id] = (_BLOCKED if location_id in blocked
                                     else self.policy.safety("*", location_id) + self.buffer)
        return held

    def _sum(self, which: int, free_at: dict[str, int]) -> int:
        table = self._tables[which][1]
        total = 0
        for loc, free in free_at.items():
            held = table.get(loc)
            if held is None:
                held = self._fill(which, loc)
            if free > held:
                total += free - held
        return total

    def per_location(self, sku: str, free_at: dict[str, int]) -> dict[str, int]:
        if sku in self.named:
            return available_by_location(sku, free_at, self.policy)
        table = self._tables[0][1]
        out = {}
        for loc, free in free_at.items():
            held = table.get(loc)
            if held is None:
                held = self._fill(0, loc)
            out[loc] = free - held if free > held else 0
        return out

    def promised(self, sku: str, free_at: dict[str, int], with_suppliers: bool) -> int:
        which = 2 if with_suppliers and not self.policy.dropship_applies(sku) else 1
        if sku in self.named:
            pol, blocked = self.policy, self._tables[which][0]
            return sum(available_to_promise(free, pol, sku, loc) for loc, free in free_at.items() if loc not in blocked)
        return self._sum(which, free_at)


def _envelope(event_id: uuid.UUID, occurred_at: datetime, correlation_id: str, data: dict[str, Any]) -> Envelope:
    """An AvailabilityChanged envelope of our own values (``envelope_of``: no validation, no
    per-field walk); ``test_allocation_feed_rules`` pins the result to a validated ``Envelope``."""
    return envelope_of("AvailabilityChanged", data, source=SOURCE, correlation_id=correlation_id, event_id=event_id,
                       occurred_at=occurred_at)


async def publish_dirty(conn: AsyncConnection, limit: int = 2000) -> int:
    """One window: publish AvailabilityChanged for up to ``limit`` dirty SKUs; return how many
    it published (a SKU held or changed meanwhile waits for the next pass)."""
    # Read the dirty SKUs without locking them: order batches never wait for this pass (before,
    # it held up to ``limit`` SKU locks while it worked; migration 0007). Their flags are cleared
    # at the end, in this transaction with their events (a rollback leaves them dirty), and only
    # where no transaction holds the row and the change counter is still the one read here: a
    # change committed meanwhile, or still running, keeps its SKU dirty for the next window, so
    # no change goes unpublished. A SKU whose queue is being filled chunk by chunk
    # (service_layer/refill.py) waits: its free units are the older backorders', and the last
    # chunk leaves it dirty.
    dirty = (await conn.execute(text(
        "SELECT sku, availability_changes FROM skus WHERE availability_dirty AND NOT filling ORDER BY sku LIMIT :n"),
        {"n": limit})).all()
    if not dirty:
        return 0
    skus = [sku for sku, _ in dirty]
    now = datetime.now(UTC)
    free = await free_units_by_location(conn, skus, now)
    policies = {r.channel: policy_from_json(r.document)
                for r in await conn.execute(text("SELECT channel, document FROM policies"))}
    locations = (await conn.execute(text("SELECT location_id, kind, channels FROM locations"))).all()
    suppliers = frozenset(r.location_id for r in locations if r.kind == "dropship")
    serves = {r.location_id: None if r.channels is None else tuple(r.channels) for r in locations}
    inbound = await inbound_availability(conn, skus, policies, now.date())  # pre-selling (presales.py)
    rules, as_of = FeedRules(policies, suppliers, serves), now.isoformat()
    ids = new_event_ids(len(skus))
    messages = []
    for sku, event_id in zip(skus, ids, strict=True):
        data = rules.of(sku, free[sku], as_of)
        data.update(inbound.get(sku, NO_INBOUND))
        messages.append(OutboxMessage(Topic.AVAILABILITY, sku, _envelope(event_id, now, f"sku:{sku}", data)))
    # Only now the row locks, held until the commit: the events are worked out already.
    seen: dict[str, int] = {sku: changes for sku, changes in dirty}
    held = await conn.execute(_LOCK_UNLESS_HELD, {"s": skus})
    taken = {sku for sku, changes in held if changes == seen[sku]}
    await conn.execute(_CLEAR, {"s": sorted(taken)})
    messages = [m for m in messages if m.key in taken]
    await write_outbox(conn, SCHEMA, messages)
    return len(messages)


# The SKUs read that are still dirty and that no transaction holds; their flags are cleared where
# the change counter is still the one read (compared here). Two statements on the primary key:
# the one statement joined to unnest() it replaces took 20 ms a call in most runs but 234 ms on
# average in one (up to 1.7 s, with order batches waiting on its locks), a plan that hangs on the
# planner's guess of how many rows unnest() gives (docs/benchmark.md, tenth wave).
_LOCK_UNLESS_HELD = text(
    "SELECT sku, availability_changes FROM skus WHERE sku = ANY(:s) AND availability_dirty AND NOT filling"
    " ORDER BY sku FOR UPDATE SKIP LOCKED")
_CLEAR = text("UPDATE skus SET availability_dirty = false WHERE sku = ANY(:s)")


async def publish_pending(transaction: Callable[[], AbstractAsyncContextManager[AsyncConnection]]) -> None:
    """Every dirty SKU's AvailabilityChanged now, without waiting for the window (a draining
    instance leaves none behind; the flags are durable, so any instance would publish them later)."""
    while True:
        async with transaction() as conn:
            if await publish_dirty(conn) == 0:
                return


async def run_publisher(transaction: Callable[[], AbstractAsyncContextManager[AsyncConnection]], interval: float = 1.0) -> None:
    """Background loop of the service: never dies on a database hiccup."""
    while True:
        try:
            async with transaction() as conn:
                n = await publish_dirty(conn)
            if n >= 2000:
                continue  # a backlog: no pause until it is drained
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - log and keep publishing
            log.exception("availability publisher failed; retrying")
        await asyncio.sleep(interval)
