"""Use cases of channel rules and holds at intake.

Rules live in ``channel_rules`` and are read at every placement, so a change over HTTP takes
effect on the next order without a restart. What the rules did to an order is kept in
``order_rules`` and shown in the order view and its timeline.

A held order is stored but not announced: its OrderPlaced, and any cancellation or change
made while it is held, wait in ``held_messages`` and go to the outbox, in order, when staff
release it. Nothing is allocated meanwhile because allocation has not heard of the order.
Cancelling a whole held order publishes nothing at all: downstream never knew it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.contracts import Topic, new_envelope
from libs.contracts.envelope import Envelope, encode_event
from libs.contracts.events import OrderHeld, OrderHoldReleased
from libs.contracts.orders import ChannelOrder, Problem
from libs.messaging import OutboxMessage, write_outbox
from services.order_intake.adapters.queries import Hold, channels_seen, delete_holds
from services.order_intake.adapters.tables import SCHEMA
from services.order_intake.domain.rules import Decision, Rule, RuleIn, evaluate
from services.order_intake.service_layer.locations import (
    KnownLocations,
    LocationsUnavailable,
    check_locations,
)

HELD = "held"


# --- evaluation at placement (called from place_orders) ----------------------------------------


async def load_rules(conn: AsyncConnection) -> list[Rule]:
    rows = await conn.execute(text("SELECT rule_id, spec FROM channel_rules"))
    return [Rule(r.rule_id, RuleIn.model_validate(r.spec)) for r in rows]


async def decide(conn: AsyncConnection, orders: dict[tuple[str, str], ChannelOrder]) -> dict[tuple[str, str], Decision]:
    """The rules' decision for each order some rule matched (one query per batch)."""
    if not orders:
        return {}
    rules = await load_rules(conn)
    if not rules:
        return {}
    decisions = {key: evaluate(rules, order) for key, order in orders.items()}
    return {key: d for key, d in decisions.items() if d.changes_anything}


def adjusted(order: ChannelOrder, decision: Decision) -> ChannelOrder:
    """The order as placed after the rules: priority and ship-complete as they decided."""
    update: dict[str, Any] = {}
    if decision.priority is not None:
        update["priority"] = decision.priority
    if decision.ship_complete:
        update["ship_complete"] = True
    return order.model_copy(update=update) if update else order


async def record_decisions(
    conn: AsyncConnection, ruled: Sequence[tuple[str, Decision, OutboxMessage]]
) -> list[OutboxMessage]:
    """Store what the rules did; hold the orders a rule holds. Returns the OrderPlaced messages
    to publish now (those of orders not held)."""
    from services.order_intake.service_layer.placing import SOURCE, add_timeline  # placing calls us

    if not ruled:
        return []
    await conn.execute(
        text("INSERT INTO order_rules (order_id, effects, tags) SELECT o, e, t FROM unnest(CAST(:o AS text[]),"
             " CAST(:e AS jsonb[])) AS x(o, e), LATERAL (SELECT ARRAY(SELECT jsonb_array_elements_text(x.e -> 'tags'))"
             " AS t) tags"),
        {"o": [order_id for order_id, _, _ in ruled],
         "e": [orjson.dumps({"rules": [vars(e) for e in d.effects], "tags": d.tags,
                             "locations": d.locations.model_dump() if d.locations else None}).decode()
               for _, d, _ in ruled]},
    )
    announce = [message for _, d, message in ruled if not d.hold]
    held = [(order_id, d, message) for order_id, d, message in ruled if d.hold]
    timeline = [(order_id, "ChannelRule", SOURCE, f"rule {e.name!r} ({e.rule_id}): {'; '.join(e.did)}")
                for order_id, d, _ in ruled for e in d.effects]
    if held:
        reasons = [", ".join(repr(e.name) for e in d.effects if "held for review" in e.did) for _, d, _ in held]
        await _hold(conn, [Hold(order_id, f"held for review by rule {why}", "rule") for (order_id, _, _), why in zip(held, reasons, strict=True)])
        await _keep(conn, [(order_id, message) for order_id, _, message in held])
    await add_timeline(conn, timeline)
    return announce


async def _hold(conn: AsyncConnection, holds: list[Hold]) -> None:
    await conn.execute(
        text("INSERT INTO order_holds (order_id, reason, held_by) SELECT * FROM unnest(CAST(:o AS text[]),"
             " CAST(:r AS text[]), CAST(:b AS text[]))"),
        {"o": [h.order_id for h in holds], "r": [h.reason for h in holds], "b": [h.held_by for h in holds]},
    )
    await conn.execute(text("UPDATE order_status SET status = :s, updated_at = now() WHERE order_id = ANY(:o)"),
                       {"s": HELD, "o": [h.order_id for h in holds]})


async def _keep(conn: AsyncConnection, messages: list[tuple[str, OutboxMessage]]) -> None:
    await conn.execute(
        text("INSERT INTO held_messages (order_id, topic, key, value) SELECT * FROM unnest(CAST(:o AS text[]),"
             " CAST(:t AS text[]), CAST(:k AS text[]), CAST(:v AS bytea[]))"),
        {"o": [o for o, _ in messages], "t": [m.topic for _, m in messages], "k": [m.key for _, m in messages],
         "v": [encode_event(m.envelope) for _, m in messages]},
    )


# --- while held: changes wait, a whole cancellation ends it -------------------------------------


async def is_held(conn: AsyncConnection, order_id: str) -> bool:
    """Whether the order is held at intake, not yet announced (its events are kept back)."""
    return bool((await conn.execute(text("SELECT 1 FROM order_holds WHERE order_id = :o AND NOT announced"),
                                    {"o": order_id})).first())


async def publish_or_keep(conn: AsyncConnection, order_id: str, messages: list[OutboxMessage]) -> bool:
    """Publish ``messages`` about ``order_id``, or keep them with its hold (returns True then)."""
    if await is_held(conn, order_id):
        await _keep(conn, [(order_id, m) for m in messages])
        return True
    await write_outbox(conn, SCHEMA, messages)
    return False


async def cancel_held_order(conn: AsyncConnection, order_id: str, reason: str) -> bool:
    """Cancel a whole held order without a word downstream (it never heard of it). False when
    the order is not held."""
    from services.order_intake.service_layer.placing import SOURCE, add_timeline

    if not await is_held(conn, order_id):
        return False
    await conn.execute(text("DELETE FROM held_messages WHERE order_id = :o"), {"o": order_id})
    await delete_holds(conn, order_id)
    await conn.execute(text("UPDATE order_lines SET cancelled = qty, allocated = 0, backordered = 0"
                            " WHERE order_id = :o"), {"o": order_id})
    await conn.execute(text("UPDATE order_status SET status = 'cancelled', updated_at = now() WHERE order_id = :o"),
                       {"o": order_id})
    await add_timeline(conn, [(order_id, "OrderCancelled", SOURCE,
                               f"cancelled while held: {reason}; never announced, so nothing was allocated")])
    return True


# --- staff: hold by hand, release ---------------------------------------------------------------


class Refused(ValueError):
    """A hold, release or rule change that cannot be done: the HTTP status and every problem."""

    def __init__(self, status: int, problems: list[Problem]) -> None:
        super().__init__("; ".join(p.problem for p in problems))
        self.status = status
        self.problems = problems


async def _locked_order(conn: AsyncConnection, order_id: str) -> Any:
    from services.order_intake.service_layer.tracking import OrderNotFound

    row = (await conn.execute(text("SELECT order_id, status FROM order_status WHERE order_id = :o FOR UPDATE"),
                              {"o": order_id})).first()
    if row is None:
        raise OrderNotFound(order_id)
    return row


async def hold_order(conn: AsyncConnection, order_id: str, reason: str, by: str) -> None:
    """Hold any order by hand. One not yet announced (a rule held it) stays unannounced; the
    reason is added to its hold. One allocation already knows is held there: OrderHeld is
    published (nothing more is allocated to it; allocated units stay reserved but cannot be
    packed) and changes go on to allocation as usual. A cancelled or shipped order is refused
    (409); a held one gets the reason added."""
    from services.order_intake.service_layer.placing import SOURCE, add_timeline

    row = await _locked_order(conn, order_id)
    held = (await conn.execute(text("SELECT announced FROM order_holds WHERE order_id = :o"), {"o": order_id})).first()
    if held is not None:
        await conn.execute(text("UPDATE order_holds SET reason = reason || '; ' || :r WHERE order_id = :o"),
                           {"r": f"{reason} ({by})", "o": order_id})
        await add_timeline(conn, [(order_id, "OrderHeld", SOURCE, f"hold confirmed by {by}: {reason}")])
        return
    if row.status in ("cancelled", "shipped"):
        raise Refused(409, [Problem(field="order_id", problem=f"the order is {row.status}: nothing left to hold")])
    await conn.execute(text("INSERT INTO order_holds (order_id, reason, held_by, announced) VALUES (:o, :r, :b, true)"),
                       {"o": order_id, "r": reason, "b": by})
    event = OrderHeld(order_id=order_id, reason=reason, held_by=by)
    await _publish(conn, order_id, event, "OrderHeld",
                   f"held by {by}: {reason}; sent to allocation: nothing more is allocated, allocated"
                   " units stay reserved and cannot be packed until released")


async def release_hold(conn: AsyncConnection, order_id: str, by: str) -> int:
    """Announce a held order: its OrderPlaced and the changes made while it was held go to the
    outbox in order. Returns how many events; Refused (409) when it is not held."""
    from services.order_intake.service_layer.placing import SOURCE, add_timeline

    await _locked_order(conn, order_id)
    if await _release_announced_hold(conn, order_id, by):
        return 1
    if not await is_held(conn, order_id):
        raise Refused(409, [Problem(field="order_id", problem="the order is not held at intake")])
    rows = (await conn.execute(text("DELETE FROM held_messages WHERE order_id = :o RETURNING id, topic, key, value"),
                               {"o": order_id})).all()
    messages = [OutboxMessage(r.topic, r.key, Envelope.model_validate_json(r.value)) for r in sorted(rows, key=lambda r: r.id)]
    await write_outbox(conn, SCHEMA, messages)
    await delete_holds(conn, order_id)
    await conn.execute(text("UPDATE order_status SET status = 'pending', updated_at = now() WHERE order_id = :o"),
                       {"o": order_id})
    await add_timeline(conn, [(order_id, "HoldReleased", SOURCE,
                               f"released by {by}: announced to allocation ({len(messages)} event(s))")])
    return len(messages)


async def _release_announced_hold(conn: AsyncConnection, order_id: str, by: str) -> bool:
    """Release a hold staff put on an announced order: OrderHoldReleased goes to allocation.
    False when the order has no such hold."""
    if await delete_holds(conn, order_id, announced_only=True) == 0:
        return False
    event = OrderHoldReleased(order_id=order_id, released_by=by)
    await _publish(conn, order_id, event, "HoldReleased", f"released by {by}: allocation fills it again")
    return True


async def _publish(conn: AsyncConnection, order_id: str, event: OrderHeld | OrderHoldReleased, kind: str,
                   note: str) -> None:
    """Send a hold or its release to allocation (the orders topic) and note it on the timeline."""
    from services.order_intake.service_layer.placing import SOURCE, add_timeline

    await write_outbox(conn, SCHEMA, [OutboxMessage(Topic.ORDERS, order_id,
                                                    new_envelope(event, source=SOURCE, correlation_id=order_id))])
    await add_timeline(conn, [(order_id, kind, SOURCE, note)])


async def end_announced_hold(conn: AsyncConnection, order_id: str) -> None:
    """A whole cancellation ends a hold of an announced order (nothing is left to hold)."""
    await delete_holds(conn, order_id, announced_only=True)


# --- the order view ------------------------------------------------------------------------------


async def rules_view(conn: AsyncConnection, order_id: str) -> dict[str, Any]:
    """``hold`` (or None), ``rules`` (which rule did what) and ``tags`` of an order."""
    hold = (await conn.execute(text("SELECT reason, held_by, held_at, announced FROM order_holds WHERE order_id = :o"),
                               {"o": order_id})).mappings().first()
    ruled = (await conn.execute(text("SELECT effects, tags FROM order_rules WHERE order_id = :o"),
                                {"o": order_id})).first()
    return {
        "hold": dict(hold) if hold else None,
        "rules": ruled.effects["rules"] if ruled else [],
        "tags": list(ruled.tags) if ruled else [],
        "locations": ruled.effects.get("locations") if ruled else None,
    }


# --- managing rules ----------------------------------------------------------------------------


class RuleNotFound(LookupError):
    pass


def new_rule_id() -> str:
    return f"rule_{uuid.uuid4().hex[:12]}"


async def known_channels(conn: AsyncConnection, configured: frozenset[str]) -> set[str]:
    """Channels a rule may name: those with a key or a connector configured, and those that placed orders."""
    return await channels_seen(conn) | configured


def check_channels(spec: RuleIn, known: set[str]) -> list[Problem]:
    return [Problem(field=f"conditions.channels.{i}",
                    problem=f"unknown channel {ch!r}: no channel key or connector is configured for it and it placed no order")
            for i, ch in enumerate(spec.conditions.channels or []) if ch not in known]


def rule_view(rule_id: str, spec: Any, created_at: Any = None, updated_at: Any = None) -> dict[str, Any]:
    document = spec if isinstance(spec, dict) else spec.model_dump(mode="json")
    return {"rule_id": rule_id, **document, "created_at": created_at, "updated_at": updated_at}


async def list_rules(conn: AsyncConnection) -> list[dict[str, Any]]:
    rows = await conn.execute(text("SELECT rule_id, spec, created_at, updated_at FROM channel_rules"))
    views = [rule_view(r.rule_id, r.spec, r.created_at, r.updated_at) for r in rows]
    return sorted(views, key=lambda v: (v["position"], v["rule_id"]))


async def get_rule(conn: AsyncConnection, rule_id: str) -> dict[str, Any]:
    row = (await conn.execute(text("SELECT rule_id, spec, created_at, updated_at FROM channel_rules WHERE rule_id = :r"),
                              {"r": rule_id})).first()
    if row is None:
        raise RuleNotFound(rule_id)
    return rule_view(row.rule_id, row.spec, row.created_at, row.updated_at)


async def save_rule(conn: AsyncConnection, rule_id: str | None, spec: RuleIn, configured_channels: frozenset[str],
                    locations: KnownLocations | None = None) -> dict[str, Any]:
    """Create (``rule_id`` None) or replace a rule; Refused (422) naming an unknown channel or
    location (``locations``: inventory's, asked only when the rule names some;
    LocationsUnavailable when it cannot be asked)."""
    problems = check_channels(spec, await known_channels(conn, configured_channels))
    if locations is not None:
        problems += await check_locations(spec, locations)
    elif spec.actions.names_locations:
        raise LocationsUnavailable("no source of location ids configured")
    if problems:
        raise Refused(422, problems)
    document = spec.model_dump_json()
    if rule_id is None:
        rule_id = new_rule_id()
        await conn.execute(text("INSERT INTO channel_rules (rule_id, spec) VALUES (:r, CAST(:s AS jsonb))"),
                           {"r": rule_id, "s": document})
    else:
        done = await conn.execute(text("UPDATE channel_rules SET spec = CAST(:s AS jsonb), updated_at = now()"
                                       " WHERE rule_id = :r"), {"r": rule_id, "s": document})
        if done.rowcount == 0:
            raise RuleNotFound(rule_id)
    return await get_rule(conn, rule_id)


async def delete_rule(conn: AsyncConnection, rule_id: str) -> None:
    done = await conn.execute(text("DELETE FROM channel_rules WHERE rule_id = :r"), {"r": rule_id})
    if done.rowcount == 0:
        raise RuleNotFound(rule_id)
