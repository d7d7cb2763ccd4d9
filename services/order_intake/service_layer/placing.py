"""Use case: accept orders from channels (Kafka batch or one HTTP request).

Idempotent on (channel, external_id): a resend with the same content returns the existing
order_id and publishes nothing; the same key with different content is a conflict.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.contracts import Topic, new_envelope
from libs.contracts.envelope import Envelope, envelope_of, new_event_ids
from libs.contracts.events import ChannelOrderRejected, LocationChoice, OrderPlaced
from libs.contracts.orders import ChannelOrder, Problem, validate_channel_order
from libs.messaging import OutboxMessage, claim_new_events, write_outbox
from services.order_intake.adapters.rows import Fragment, json_rows, utc
from services.order_intake.adapters.tables import SCHEMA
from services.order_intake.domain.orders import content_hash, new_order_ids, same_content
from services.order_intake.service_layer import rules

SOURCE = "order-intake"


@dataclass
class Incoming:
    """One order as received: the decoded JSON document and where it came from."""

    document: Any
    key: str  # Kafka key or "{channel}:{external_id}" for HTTP
    correlation_id: str | None = None
    # Set when the value could not be parsed at all: the parser's own words reach the connector.
    parse_problem: Problem | None = None
    # (topic, partition, offset) of the Kafka record; None for HTTP. A rejection claims its
    # ``record_ref`` in the inbox.
    record: tuple[str, int, int] | None = None


@dataclass
class Outcome:
    status: str  # "created" | "existing" | "rejected" | "conflict"
    order_id: str | None = None
    problems: list[Problem] = field(default_factory=list)


async def place_orders(
    conn: AsyncConnection, incoming: list[Incoming], *, publish_rejections: bool
) -> list[Outcome]:
    """Validate, store and announce a batch of orders in the caller's transaction."""
    # A Kafka key or header is bytes the connector chose; PostgreSQL cannot store NUL in text.
    incoming = [Incoming(i.document, _storable(i.key), i.correlation_id and _storable(i.correlation_id),
                         i.parse_problem, i.record) for i in incoming]
    outcomes: list[Outcome | None] = [None] * len(incoming)
    valid: dict[tuple[str, str], tuple[int, ChannelOrder, str]] = {}
    repeats: list[tuple[int, tuple[str, str], str]] = []  # the same key again in this batch
    for i, item in enumerate(incoming):
        if item.parse_problem is not None:
            outcomes[i] = Outcome("rejected", problems=[item.parse_problem])
            continue
        order, problems = validate_channel_order(item.document)
        if order is None:
            outcomes[i] = Outcome("rejected", problems=problems)
            continue
        key = (order.channel, order.external_id)
        digest = content_hash(order)
        if key in valid:  # the same key twice in one batch: the first one wins, answered below
            repeats.append((i, key, digest))
            continue
        valid[key] = (i, order, digest)

    # Channel rules (priority, ship-complete, hold, tags); the fingerprint stays the order as sent.
    decisions = await rules.decide(conn, {key: v[1] for key, v in valid.items()})
    for key, decision in decisions.items():
        i, order, digest = valid[key]
        valid[key] = (i, rules.adjusted(order, decision), digest)

    created: dict[tuple[str, str], str] = {}
    placed: dict[tuple[str, str], dict[str, Any]] = {}  # OrderPlaced's payload, by the id proposed
    if valid:
        proposed = dict(zip(valid, new_order_ids(len(valid)), strict=True))
        placed = {k: placed_data(proposed[k], order, decisions[k].locations if k in decisions else None)
                  for k, (_, order, _) in valid.items()}
        # One statement: the orders new to us, their status rows, lines and first timeline entry
        # (a key stored before keeps its order: no line or entry of this one is written).
        rows = await conn.execute(_INSERT_ORDERS, {
            "rows": json_rows([
                (proposed[k], k[0], k[1], digest, utc(order.placed_at), order.currency,
                 Fragment(order.customer.model_dump_json()), Fragment(order.ship_to.model_dump_json()), order.priority,
                 order.ship_complete, order.pickup_location_id)
                for k, (_, order, digest) in valid.items()]),
            "lines": json_rows([(proposed[k], ln["line_id"], ln["sku"], ln["qty"], ln["unit_price"])
                                for k in valid for ln in placed[k]["lines"]]),
            "timeline": json_rows([
                (proposed[k], "OrderPlaced", SOURCE,
                 f"placed by {order.channel} as {order.external_id}, {len(order.lines)} line(s)")
                for k, (_, order, _) in valid.items()]),
        })
        created = {(channel, external_id): order_id for channel, external_id, order_id in rows}
        existing_keys = [k for k in valid if k not in created]
        if existing_keys:
            found = await conn.execute(
                text(
                    "SELECT o.channel, o.external_id, o.order_id, o.content_hash FROM orders o"
                    " JOIN unnest(CAST(:channels AS text[]), CAST(:externals AS text[])) AS k(channel, external_id)"
                    " USING (channel, external_id)"
                ),
                {"channels": [k[0] for k in existing_keys], "externals": [k[1] for k in existing_keys]},
            )
            for r in found:
                i, order, digest = valid[(r.channel, r.external_id)]
                outcomes[i] = _resend_or_conflict(same_content(r.content_hash, order, digest), order_id=r.order_id)

    events: list[OutboxMessage] = []
    ruled: list[tuple[str, rules.Decision, OutboxMessage]] = []
    event_ids = new_event_ids(len(created))
    for (key, order_id), event_id in zip(created.items(), event_ids, strict=True):
        i = valid[key][0]
        outcomes[i] = Outcome("created", order_id=order_id)
        correlation = incoming[i].correlation_id or order_id
        message = OutboxMessage(Topic.ORDERS, order_id, _placed_envelope(placed[key], correlation, event_id))
        if key in decisions:
            ruled.append((order_id, decisions[key], message))
        else:
            events.append(message)
    events += await rules.record_decisions(conn, ruled)  # held orders' OrderPlaced waits for release

    for i, key, digest in repeats:
        first = valid[key][0]
        outcomes[i] = _resend_or_conflict(valid[key][2] == digest, order_id=outcomes[first].order_id)  # type: ignore[union-attr]

    if publish_rejections:
        # A redelivered record whose order was stored finds it (``existing``: nothing published),
        # so accepted orders need no inbox row; a rejection is published once per record.
        refused = [i for i, outcome in enumerate(outcomes) if outcome is not None and outcome.status in ("rejected", "conflict")]
        refs = {i: record_ref(*record) for i in refused if (record := incoming[i].record) is not None}
        fresh = await claim_new_events(conn, list(refs.values()))
        for i in refused:
            outcome = outcomes[i]
            assert outcome is not None
            if i not in refs or refs[i] in fresh:
                item = incoming[i]
                doc = item.document if isinstance(item.document, dict) else {}
                event = ChannelOrderRejected(
                    key=item.key,
                    channel=_str_or_none(doc.get("channel")),
                    external_id=_str_or_none(doc.get("external_id")),
                    reasons=outcome.problems,
                )
                events.append(OutboxMessage(
                    Topic.CHANNEL_ORDERS_REJECTED, item.key,
                    new_envelope(event, source=SOURCE, correlation_id=item.correlation_id or item.key),
                ))
    await write_outbox(conn, SCHEMA, events)
    assert all(o is not None for o in outcomes)
    return outcomes  # type: ignore[return-value]


def placed_data(order_id: str, order: ChannelOrder, locations: LocationChoice | None) -> dict[str, Any]:
    """The payload of the order's OrderPlaced, exactly as ``OrderPlaced(...).model_dump(mode="json")``
    writes it (tests/unit/test_order_placed_payload.py holds them equal): the validated channel
    order's own JSON dump (its fields are OrderPlaced's, in the same order) behind the order id.

    One dump in pydantic's core per order instead of constructing an OrderPlaced and an
    OrderLine per line without validation (``model_construct`` runs in Python: ~4 calls per
    order, more CPU than validating the channel order) and dumping that."""
    data = {"order_id": order_id, **order.model_dump(mode="json")}
    if locations is not None:  # absent (not null) on the wire when no rule set one
        data["locations"] = locations.model_dump(mode="json")
    return data




def _placed_envelope(data: dict[str, Any], correlation_id: str, event_id: uuid.UUID) -> Envelope:
    """``new_envelope`` of an OrderPlaced whose payload is ``data`` already."""
    return envelope_of(_ORDER_PLACED, data, schema_version=_PLACED_VERSION, source=SOURCE, correlation_id=correlation_id,
                       event_id=event_id)


_ORDER_PLACED, _PLACED_VERSION = OrderPlaced.__name__, OrderPlaced.schema_version()


def _resend_or_conflict(same: bool, *, order_id: str | None) -> Outcome:
    if same:
        return Outcome("existing", order_id=order_id)
    return Outcome(
        "conflict",
        order_id=order_id,
        problems=[Problem(field="external_id", problem="already used by this channel for an order with different content")],
    )


def _str_or_none(value: Any) -> str | None:
    return _storable(value) if isinstance(value, str) else None


def _storable(value: str) -> str:
    return value.replace("\x00", "\ufffd")


async def add_timeline(conn: AsyncConnection, rows: list[tuple[str, str, str, str]], at: Any = None) -> None:
    """Append (order_id, event_type, source, summary) rows to the orders' timelines."""
    if not rows:
        return
    await conn.execute(_INSERT_TIMELINE, {"at": at, "rows": json_rows(rows)})


def timeline_insert(rows: str, *, at: str = "now()") -> str:
    """The one statement that appends timeline entries: the JSON rows in the bind parameter
    ``rows``, each (order_id, event_type, source, summary) as ``add_timeline`` takes them, at
    ``at`` (SQL); a statement that writes them with others embeds it."""
    return ("INSERT INTO timeline (order_id, at, event_type, source, summary)"
            f" SELECT e->>0, {at}, e->>1, e->>2, e->>3 FROM jsonb_array_elements(CAST(:{rows} AS jsonb)) AS e")


# Each new order with its status row (migration 0009), its lines and its first timeline entry,
# in one statement (a round trip per table was most of a small batch's cost: docs/benchmark.md,
# eleventh wave). Lines and entries come keyed by the order id proposed; only those of the orders
# created here are written. The lines' foreign key is checked at the statement's end.
_INSERT_ORDERS = text(
    "WITH created AS (INSERT INTO orders (order_id, channel, external_id, content_hash, placed_at, currency, customer,"
    " ship_to, priority, ship_complete, pickup_location_id)"
    " SELECT e->>0, e->>1, e->>2, e->>3, CAST(e->>4 AS timestamptz), e->>5, e->6, e->7, CAST(e->>8 AS int),"
    " CAST(e->>9 AS bool), e->>10 FROM jsonb_array_elements(CAST(:rows AS jsonb)) AS e"
    " ON CONFLICT (channel, external_id) DO NOTHING RETURNING channel, external_id, order_id, received_at),"
    " with_status AS (INSERT INTO order_status (order_id, channel, received_at)"
    " SELECT order_id, channel, received_at FROM created),"
    " with_lines AS (INSERT INTO order_lines (order_id, line_id, sku, qty, unit_price, backordered)"
    " SELECT e->>0, e->>1, e->>2, CAST(e->>3 AS int), CAST(e->>4 AS numeric), 0"
    " FROM jsonb_array_elements(CAST(:lines AS jsonb)) AS e JOIN created c ON c.order_id = e->>0),"
    f" with_timeline AS ({timeline_insert('timeline')} JOIN created c ON c.order_id = e->>0)"
    " SELECT channel, external_id, order_id FROM created"
)
_INSERT_TIMELINE = text(timeline_insert("rows", at="COALESCE(CAST(:at AS timestamptz), now())"))


def parse_json(raw: bytes) -> tuple[Any, Problem | None]:
    try:
        return orjson.loads(raw), None
    except orjson.JSONDecodeError as exc:
        return None, Problem(field="(body)", problem=f"not valid JSON: {exc}")


def record_ref(topic: str, partition: int, offset: int) -> uuid.UUID:
    """A stable id for a Kafka record, so a redelivered channel order is seen as processed."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"kafka://{topic}/{partition}/{offset}")
