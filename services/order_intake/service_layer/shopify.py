"""Use cases of the Shopify connector: a verified order webhook becomes a placed, modified or
cancelled OMS order; the availability feed becomes Shopify inventory levels on a topic.

Every order webhook carries the whole order, and Shopify neither orders nor deduplicates its
deliveries, so each one is applied as "make the OMS order match this state", serialised per shop
order by a row lock on ``connector_orders`` and skipped when it is not newer (``updated_at``)
than the state applied last. A create that arrives after an update, a repeated delivery and
an ``orders/updated`` that only changed payment status therefore change nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.contracts import Topic, new_envelope
from libs.contracts.envelope import Envelope, EventMessage
from libs.contracts.events import AvailabilityChanged, ShopifyInventoryLevel
from libs.contracts.orders import Problem, validate_channel_order
from libs.messaging import OutboxMessage, claim_new_events, write_outbox
from services.order_intake.adapters.tables import SCHEMA
from services.order_intake.domain import shopify
from services.order_intake.service_layer.placing import SOURCE, Incoming, place_orders
from services.order_intake.service_layer.tracking import ChangeRefused, cancel_order, modify_order


class WebhookRefused(ValueError):
    """The payload cannot become an OMS order; nothing was stored (the caller rolls back)."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.problem}" for p in problems))
        self.problems = problems


@dataclass
class WebhookOutcome:
    order_id: str | None
    did: list[str] = field(default_factory=list)  # "placed", "modified", "cancelled"; empty: nothing new


async def apply_order_webhook(conn: AsyncConnection, channel: str, topic: str, payload: object) -> WebhookOutcome:
    """Make the OMS order match the Shopify order in ``payload`` (in the caller's transaction).
    Raises WebhookRefused naming Shopify's fields; the caller must then roll back."""
    order, problems = shopify.parse_order(payload)
    if order is None:
        raise WebhookRefused(problems)
    external_id = str(order.id)
    await conn.execute(
        text("INSERT INTO connector_orders (channel, external_id) VALUES (:c, :e) ON CONFLICT DO NOTHING"),
        {"c": channel, "e": external_id},
    )
    state = (await conn.execute(
        text("SELECT source_updated_at, cancelled, lines FROM connector_orders WHERE channel = :c AND external_id = :e"
             " FOR UPDATE"),
        {"c": channel, "e": external_id},
    )).one()
    order_id = (await conn.execute(
        text("SELECT order_id FROM orders WHERE channel = :c AND external_id = :e"), {"c": channel, "e": external_id},
    )).scalar()
    wants_cancel = topic == "orders/cancelled" or order.cancelled_at is not None
    fresh = shopify.is_newer(order.updated_at, state.source_updated_at)
    if order_id is not None and not fresh and not (wants_cancel and not state.cancelled):
        return WebhookOutcome(order_id)  # a repeat, or older than what was applied

    outcome = WebhookOutcome(order_id)
    lines: dict[str, shopify.StoredLine]
    if order_id is None:
        outcome.order_id, lines = await _place(conn, channel, order)
        outcome.did.append("placed")
    else:
        lines = await _lines_applied(conn, order_id, state.lines)
        changes = shopify.line_changes(lines, order) if fresh and not state.cancelled else []
        if changes:
            try:
                await modify_order(conn, order_id, changes, None)
            except ChangeRefused as exc:
                raise WebhookRefused([_line_problem(order, changes, p) for p in exc.problems]) from None
            lines |= {c.line_id: shopify.StoredLine(c.line_id, c.sku, c.qty, c.unit_price) for c in changes}
            outcome.did.append("modified")
    if wants_cancel and not state.cancelled:
        assert outcome.order_id is not None
        reason = f"cancelled in Shopify ({order.cancel_reason or 'no reason given'})"
        await cancel_order(conn, outcome.order_id, None, reason)
        outcome.did.append("cancelled")
    await conn.execute(
        text("UPDATE connector_orders SET source_updated_at = GREATEST(source_updated_at, CAST(:u AS timestamptz)),"
             " cancelled = cancelled OR :x, lines = CAST(:l AS jsonb) WHERE channel = :c AND external_id = :e"),
        {"u": order.updated_at, "x": wants_cancel, "c": channel, "e": external_id,
         "l": json.dumps({k: [v.sku, v.qty, str(v.unit_price)] for k, v in lines.items()})},
    )
    return outcome


async def _lines_applied(conn: AsyncConnection, order_id: str, saved: Any) -> dict[str, shopify.StoredLine]:
    """The lines as the connector last set them; for an order placed before the connector knew
    it (over the API with the same channel and id), the order's own lines."""
    if saved is not None:
        return {k: shopify.StoredLine(k, sku, qty, Decimal(price)) for k, (sku, qty, price) in saved.items()}
    return {
        r.line_id: shopify.StoredLine(r.line_id, r.sku, r.qty, Decimal(r.unit_price))
        for r in await conn.execute(
            text("SELECT line_id, sku, qty, unit_price FROM order_lines WHERE order_id = :o"), {"o": order_id})
    }


async def _place(conn: AsyncConnection, channel: str, order: shopify.ShopifyOrder) -> tuple[str, dict[str, shopify.StoredLine]]:
    mapped, problems = shopify.channel_order(order, channel)
    if mapped is None:
        raise WebhookRefused(problems)
    _, contract_problems = validate_channel_order(mapped.document)
    if contract_problems:
        raise WebhookRefused([Problem(field=shopify.shopify_field(mapped, p.field), problem=p.problem)
                              for p in contract_problems])
    key = f"{channel}:{order.id}"
    [placed] = await place_orders(conn, [Incoming(mapped.document, key)], publish_rejections=False)
    if placed.status not in ("created", "existing") or placed.order_id is None:
        raise WebhookRefused(placed.problems)
    lines = {ln["line_id"]: shopify.StoredLine(ln["line_id"], ln["sku"], ln["qty"], Decimal(ln["unit_price"]))
             for ln in mapped.document["lines"]}
    return placed.order_id, lines


def _line_problem(order: shopify.ShopifyOrder, changes: list, problem: Problem) -> Problem:  # type: ignore[type-arg]
    """``lines.0.qty`` of a change -> ``line_items.N.current_quantity`` of the payload."""
    parts = problem.field.split(".")
    if parts[0] == "lines" and len(parts) > 1 and parts[1].isdigit() and int(parts[1]) < len(changes):
        line_id = changes[int(parts[1])].line_id
        for i, item in enumerate(order.line_items):
            if str(item.id) == line_id:
                return Problem(field=f"line_items.{i}.current_quantity", problem=problem.problem)
    return Problem(field="line_items", problem=problem.problem)


# --- the other way: availability -> inventory levels -------------------------------------------


@dataclass(frozen=True)
class ShopConfig:
    """One shop as configured: its OMS channel and its id mappings."""

    shop: str
    channel: str
    mapping: shopify.ShopMapping


async def publish_inventory_levels(
    conn: AsyncConnection, shops: Sequence[ShopConfig], messages: Sequence[EventMessage]
) -> int:
    """Write a ShopifyInventoryLevel per mapped (shop, SKU, location) for the newest
    AvailabilityChanged of each SKU in the batch; return how many. Replays publish nothing
    (inbox)."""
    fresh = await claim_new_events(conn, [m.envelope.event_id for m in messages])
    newest: dict[str, tuple[AvailabilityChanged, Envelope]] = {}
    for m in messages:
        env, event = m.envelope, m.event
        if env.event_id not in fresh or not isinstance(event, AvailabilityChanged):
            continue
        if event.sku not in newest or event.as_of >= newest[event.sku][0].as_of:
            newest[event.sku] = (event, env)
    out: list[OutboxMessage] = []
    for event, cause in newest.values():
        for shop in shops:
            for level in shopify.inventory_levels(shop.shop, shop.mapping, shop.channel, event):
                data = ShopifyInventoryLevel(
                    shop=level.shop, sku=level.sku, inventory_item_id=level.inventory_item_id,
                    location_id=level.location_id, oms_location_id=level.oms_location_id,
                    available=level.available, as_of=event.as_of,
                )
                out.append(OutboxMessage(
                    Topic.SHOPIFY_INVENTORY_LEVELS, f"{level.shop}:{level.inventory_item_id}",
                    new_envelope(data, source=SOURCE, correlation_id=cause.correlation_id, causation_id=cause.event_id),
                ))
    await write_outbox(conn, SCHEMA, out)
    return len(out)
